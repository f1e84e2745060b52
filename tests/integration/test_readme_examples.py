"""The README's "Using your own environment" examples run as written (one namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def section_code(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_your_own_environment_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("minigrid")
    blocks = section_code("Using your own environment")
    assert len(blocks) == 4  # Dict + MultiDiscrete, images, masking, custom encoder
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert "['target', 'time_left']" in printed[0]
    assert printed[1].strip() in ("1", "2")
    assert (tmp_path / "runs" / "digits" / "policy.json").is_file()
