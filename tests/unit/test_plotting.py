"""`pgrad plot` and `pgrad report` helpers: legend labels that tell runs apart, and logged evaluations."""

from __future__ import annotations

from pathlib import Path

from pgrad.plotting import logged_evaluation_curves, read_logged_evaluations, run_labels


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


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_logged_evaluations_skip_rows_before_the_first_one(tmp_path: Path):
    # ARS writes nan (or nothing) in eval_return_mean until its first evaluation
    _write(
        tmp_path / "metrics.csv",
        "step,episode_return_mean,eval_return_mean\n10,1.0,nan\n20,2.0,\n30,3.0,7.5\n40,4.0,8.5\n",
    )
    steps, values = read_logged_evaluations(tmp_path)
    assert steps.tolist() == [30.0, 40.0] and values.tolist() == [7.5, 8.5]


def test_runs_without_logged_evaluations_give_none(tmp_path: Path):
    _write(tmp_path / "a" / "metrics.csv", "step,episode_return_mean\n10,1.0\n")
    assert len(read_logged_evaluations(tmp_path / "a")[0]) == 0
    assert len(read_logged_evaluations(tmp_path / "no-such-run")[0]) == 0
    # one seed without evaluations: no evaluation curve at all rather than a band over some seeds
    _write(tmp_path / "b" / "metrics.csv", "step,eval_return_mean\n10,5.0\n")
    assert logged_evaluation_curves([tmp_path / "b"])[0][1].tolist() == [5.0]
    assert logged_evaluation_curves([tmp_path / "a", tmp_path / "b"]) == []
