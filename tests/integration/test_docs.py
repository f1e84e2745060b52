"""The documentation site: the guide's code examples run, and the site builds with warnings as errors.

Examples. Every fenced ```` ```python ```` block of ``docs/guide/*.md`` runs: a page's blocks in
order, in one fresh namespace per page, in a temporary working directory (so ``runs/...`` paths
land there). The examples carry their own small budgets (``agent.learn(2_000)``), so a page runs
in seconds. A block that is illustrative only and must not run is fenced ```` ```python-norun ````
(still highlighted as Python on the site) or ```` ```text ````; shell blocks (```` ```bash ````)
are not run. The convention lives in ``tests/doc_examples.py``.

Build. ``mkdocs build --strict`` (what ``make docs`` runs, into a temporary folder) must succeed:
a broken link or anchor, a page left out of the nav, or a docstring griffe cannot parse fails it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.doc_examples import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parents[2]
GUIDE_PAGES = sorted((ROOT / "docs" / "guide").glob("*.md"))


def test_the_guide_has_examples():
    pages = {page.stem for page in GUIDE_PAGES if python_blocks(page.read_text(encoding="utf-8"))}
    assert {"quickstart", "algorithms", "your-own-environment", "experiments"} <= pages


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=[page.stem for page in GUIDE_PAGES])
def test_guide_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python examples")
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks, page)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_docs_build_strictly(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs packages (pip install -e '.[docs]')")
    site = tmp_path / "site"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    # the API page of pgrad.PPO: the module docstring, learn's docstring (inherited from
    # Algorithm) and the table of every hyperparameter, with the docs of config fields
    ppo = _text((site / "reference" / "ppo" / "index.html").read_text(encoding="utf-8"))
    assert "Proximal Policy Optimization with the clipped surrogate objective" in ppo
    assert "Train for total_steps more environment transitions" in ppo
    assert "Surrogate clipping epsilon" in ppo and "Discount factor" in ppo
    # the guide's equations reach the page as MathJax input
    assert 'class="arithmatex"' in (site / "guide" / "algorithms" / "index.html").read_text(encoding="utf-8")
    # README.md and BENCHMARKS.md are pages of the site
    assert (site / "readme" / "index.html").is_file() and (site / "benchmarks" / "index.html").is_file()
    assert seconds < 120, f"the docs build took {seconds:.0f} s"
