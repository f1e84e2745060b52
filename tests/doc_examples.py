"""Run the Python examples of Markdown documentation, as written (shared by the documentation tests).

The convention: a fenced block opened with exactly ```` ```python ```` is an example that runs.
Anything else does not: ```` ```python-norun ```` (highlighted as Python on the site, for code
that is illustrative only), ```` ```text ````, ```` ```bash ````, or a fence without a language.
Only fences at the start of a line count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_PYTHON_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.M | re.S)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```` ```python ```` blocks of a Markdown text, in order, each as (first code line, code)."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in _PYTHON_FENCE.finditer(text)]


def run_blocks(blocks: list[tuple[int, str]], filename: str | Path, namespace: dict[str, Any] | None = None) -> dict:
    """Execute ``blocks`` in order in one namespace (a fresh one by default) and return it.

    Each block is compiled as if it sat at its own line of ``filename``, so a traceback points at
    the Markdown file and line of the failing statement.
    """
    namespace = {"__name__": "doc_example"} if namespace is None else namespace
    for first_line, code in blocks:
        exec(compile("\n" * (first_line - 1) + code, str(filename), "exec"), namespace)
    return namespace
