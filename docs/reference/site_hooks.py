"""Build helpers of the documentation site (mkdocs.yml loads this file twice, in two roles).

As MkDocs hooks (``hooks:``):

- ``README.md`` and ``BENCHMARKS.md`` live at the repository root, outside ``docs/``; they are
  added to the site as generated pages (``readme.md``, ``benchmarks.md``), so the links the docs
  make to them (``../../BENCHMARKS.md`` from ``docs/dev/``) work on the site as they do on a
  forge;
- links of those two pages into ``docs/`` (``docs/spaces.md``, ``docs/suite/*.png``) are
  rewritten relative to the site, and a link to any other file outside ``docs/`` (a script under
  ``benchmarks/``, a test) keeps its text but loses the link, since the site has no such page.

As a griffe extension (``PgradDocstrings``, listed under mkdocstrings' ``extensions``):

- config fields are declared as ``name: type = param(default, "doc", low=..., choices=...)``
  (pgrad/config.py); the field's doc and range become its docstring and its default its value,
  and every config class gets an "Attributes" section listing all its fields, inherited ones
  too (own fields first, as ``pgrad list ALGO`` orders them), so each algorithm's API page has
  one table of every hyperparameter it takes;
- Sphinx roles in docstrings (``:class:`X```, ``:func:`X```, ...) become plain code spans, and
  reST's ``::`` before a literal block (an indented block, which Markdown shows as code) goes.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files

# repository files shown as site pages: repository path -> page source path inside the site
GENERATED = {"README.md": "readme.md", "BENCHMARKS.md": "benchmarks.md"}

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def on_files(files: Files, config: Any) -> Files:
    root = Path(config["config_file_path"]).parent
    for repo_path, src_uri in GENERATED.items():
        files.append(File.generated(config, src_uri, content=(root / repo_path).read_text(encoding="utf-8")))
    return files


def _rewrite(target: str, text: str, image: str, title: str, page_dir: str, generated: bool) -> str | None:
    """The link with ``target`` rewritten for the site, or None to leave it as it is."""
    if _SCHEME.match(target) or target.startswith(("#", "/")):
        return None
    path, hash_, anchor = target.partition("#")
    repo_dir = "" if generated else posixpath.join("docs", page_dir)
    resolved = posixpath.normpath(posixpath.join(repo_dir, path))
    if resolved.startswith("docs/"):
        if not generated:
            return None  # a link between docs pages: MkDocs checks it as it is
        site_path = resolved[len("docs/") :]
    elif resolved in GENERATED:
        site_path = GENERATED[resolved]
    else:
        return text  # a file the site does not hold: keep the words, drop the link
    new = posixpath.relpath(site_path, page_dir or ".") + hash_ + anchor
    return f"{image}[{text}]({new}{title})"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    src_uri = page.file.src_uri
    generated = src_uri in GENERATED.values()
    page_dir = posixpath.dirname(src_uri)

    def link(match: re.Match[str]) -> str:
        image, text, target, title = match.groups()
        new = _rewrite(target, text, image, title, page_dir, generated)
        return match.group(0) if new is None else new

    # rewrite outside fenced code blocks only
    pieces, last = [], 0
    for fence in _FENCE.finditer(markdown):
        pieces.append(_LINK.sub(link, markdown[last : fence.start()]))
        pieces.append(fence.group(0))
        last = fence.end()
    pieces.append(_LINK.sub(link, markdown[last:]))
    return "".join(pieces)


# -- griffe extension ------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
_LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", flags=re.M)  # reST "::" on its own line
_LITERAL_AFTER = re.compile(r"(\S)::[ \t]*$", flags=re.M)  # reST "text::"


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _range_text(keywords: dict[str, Any]) -> str:
    """The accepted values, as pgrad/config.py's ``_range_text`` words them for ``pgrad list``."""
    low, high = keywords.get("low"), keywords.get("high")
    if keywords.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in keywords["choices"])
    if low is None and high is None:
        return ""
    low_open, high_open = keywords.get("low_open", False), keywords.get("high_open", False)
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


class PgradDocstrings(griffe.Extension):
    """Config fields' ``param`` docs as their docstrings and tables; Sphinx roles as code spans."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, list[griffe.Attribute]] = {}  # class path -> its own param fields

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        value = getattr(node, "value", None)
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "param"):
            return
        if len(value.args) < 2 or not isinstance(value.args[1], ast.Constant):
            return
        keywords = {k.arg: _literal(k.value) for k in value.keywords if k.arg}
        accepted = _range_text(keywords)
        doc = value.args[1].value + (f" ({accepted})" if accepted else "")
        if attr.docstring is None:
            attr.docstring = griffe.Docstring(doc[0].upper() + doc[1:] + ".", parent=attr)
        attr.value = ast.unparse(value.args[0])
        self.fields.setdefault(attr.parent.path, []).append(attr)

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _ROLE.sub(r"`\1`", obj.docstring.value)
            obj.docstring.value = _LITERAL_AFTER.sub(r"\1:", _LITERAL_ALONE.sub("", text))

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for path in self.fields:
            if not path.startswith(pkg.path + "."):
                continue
            cls = pkg.modules_collection[path]
            classes = [cls] + [base for base in cls.mro() if base.path in self.fields]
            rows, seen = [], set()
            for owner in classes:
                for attr in self.fields.get(owner.path, []):
                    if attr.name in seen:  # redefined by a subclass (A2C's lr): the subclass's counts
                        continue
                    seen.add(attr.name)
                    doc = attr.docstring.value if attr.docstring else ""
                    rows.append(f"    {attr.name} ({attr.annotation}): {doc} Default: `{attr.value}`.")
            section = "Attributes:\n" + "\n".join(rows)
            if cls.docstring is None:
                cls.docstring = griffe.Docstring(section, parent=cls)
            else:
                cls.docstring.value = cls.docstring.value.rstrip() + "\n\n" + section
