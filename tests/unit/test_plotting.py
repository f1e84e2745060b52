"""Legend labels of ``pgrad plot``: every run must be told apart from the others."""

from __future__ import annotations

from pathlib import Path

from pgrad.plotting import run_labels


def test_labels_are_folder_names_when_those_differ(tmp_path: Path):
    assert run_labels([tmp_path / "ppo-cartpole", tmp_path / "a2c-cartpole"]) == ["ppo-cartpole", "a2c-cartpole"]


def test_runs_with_the_same_folder_name_get_their_parents_too(tmp_path: Path):
    # benchmarks/suite.py writes OUT/<algo>/<env>: two algorithms on one env share the env's name
    runs = [tmp_path / "suite" / "ppo" / "Hopper-v5", tmp_path / "suite" / "a2c" / "Hopper-v5", tmp_path / "other"]
    assert run_labels(runs) == ["ppo/Hopper-v5", "a2c/Hopper-v5", "other"]


def test_the_same_folder_twice_keeps_a_label(tmp_path: Path):
    run = tmp_path / "run"
    labels = run_labels([run, run])
    assert labels[0] == labels[1] and labels[0].endswith("run")
