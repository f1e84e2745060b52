"""``pgrad tune``: a small Optuna study, its resume, pruning reports and the preset file it writes."""

from __future__ import annotations

import json
import tomllib

import pytest

from pgrad.cli import main
from pgrad.experiments.tune import SEARCH_SPACES, TuneSpec

optuna = pytest.importorskip("optuna")

TUNE = [
    "tune",
    "ppo",
    "CartPole-v1",
    "--steps",
    "1024",
    "--preset",
    "none",
    "--set",
    "n_envs=2",
    "--evaluations",
    "2",
    "--eval-episodes",
    "2",
    "--quiet",
]


def _study(out):
    return optuna.load_study(study_name="ppo-CartPole-v1", storage=f"sqlite:///{(out / 'study.db').resolve()}")


def test_tune_writes_a_preset_train_accepts_and_resumes_its_study(tmp_path, capsys):
    out = tmp_path / "study"
    assert main([*TUNE, "--trials", "3", "--out", str(out)]) == 0
    assert "best: trial" in capsys.readouterr().err
    trials = _study(out).get_trials()
    assert len(trials) == 3
    # every trial reported its evaluations (after the updates crossing 512 and 1024 steps) to the pruner
    assert all(1 <= len(t.intermediate_values) <= 2 and min(t.intermediate_values) >= 512 for t in trials)
    preset = tomllib.loads((out / "best_preset.toml").read_text())["CartPole-v1"]
    best = _study(out).best_trial
    assert preset["algo"] == "ppo" and preset["steps"] == 1024 and "ppo-CartPole-v1" in preset["source"]
    assert preset["lr"] == best.params["lr"] and preset["n_envs"] == 2
    assert "pgrad tune" in preset["source"] and str(best.number) in preset["source"]

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--preset",
                str(out / "best_preset.toml"),
                "--out",
                str(run),
                "--quiet",
                "--eval-episodes",
                "1",
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["lr"] == best.params["lr"] and config["preset"].endswith("best_preset.toml#CartPole-v1")
    assert json.loads((run / "summary.json").read_text())["steps"] == 1024  # the preset's steps

    # The same command with more trials continues the study: only the missing trial runs.
    assert main([*TUNE, "--trials", "4", "--out", str(out)]) == 0
    assert len(_study(out).get_trials()) == 4


def test_a_trial_left_running_by_a_killed_run_is_run_again(tmp_path):
    from pgrad.experiments.tune import _load_study, tune

    spec = TuneSpec(
        algo="a2c",
        env="CartPole-v1",
        out=str(tmp_path),
        trials=1,
        steps=200,
        preset="none",
        evaluations=1,
        eval_episodes=1,
    )
    study = _load_study(spec)
    stale = study.ask()
    SEARCH_SPACES["a2c"](stale)  # sampled, then the process "died"
    summary = tune(spec, log=lambda line: None)
    states = [t.state for t in study.get_trials()]
    assert states[0] == optuna.trial.TrialState.FAIL and states[1] == optuna.trial.TrialState.COMPLETE
    assert study.get_trials()[1].params == stale.params  # the lost trial's parameters were queued again
    assert summary["best"]["trial"] == 1


@pytest.mark.parametrize("algo", ["a2c", "reinforce", "reinforce-baseline", "actor-critic", "ars"])
def test_every_search_space_builds_a_valid_config(algo, tmp_path):
    from pgrad.experiments.tune import run_trial

    env, overrides = ("pgrad/ContinuousCartPole-v0", {"n_workers": 0}) if algo == "ars" else ("CartPole-v1", {})
    spec = TuneSpec(
        algo=algo,
        env=env,
        out=str(tmp_path),
        trials=1,
        steps=300,
        preset="none",
        evaluations=1,
        eval_episodes=1,
        overrides=overrides,
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    outcome = run_trial(spec, 0, SEARCH_SPACES[algo](trial), lambda step, value: False)
    assert outcome["state"] == "complete", outcome


def test_ars_trials_never_keep_more_directions_than_they_sample(tmp_path):
    from pgrad.experiments.tune import resolved_values

    spec = TuneSpec(
        algo="ars", env="pgrad/ContinuousCartPole-v0", out=str(tmp_path), trials=1, steps=300, preset="none"
    )
    values = resolved_values(spec, {"n_directions": 4, "n_top": 16, "lr": 0.02, "noise_std": 0.03})
    assert values["n_directions"] == 4 and values["n_top"] == 4  # uncapped, ARSConfig refuses n_top > n_directions
    assert resolved_values(spec, {"n_directions": 32, "n_top": 8, "lr": 0.02, "noise_std": 0.03})["n_top"] == 8


def test_preset_file_errors(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('["Pendulum-v1"]\nalgo = "ppo"\nlr = 1e-3\n')
    assert main(["train", "ppo", "CartPole-v1", "--preset", str(path)]) == 2
    assert "has no table [CartPole-v1]; tables: Pendulum-v1" in capsys.readouterr().err
    assert main(["train", "a2c", "Pendulum-v1", "--preset", str(path)]) == 2
    assert "is for algorithm 'ppo', not 'a2c'" in capsys.readouterr().err
    assert main(["train", "ppo", "CartPole-v1", "--preset", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read preset file" in capsys.readouterr().err


def test_tune_bad_input(tmp_path, capsys):
    assert main(["tune", "ppo", "CartPole-v1", "--trials", "0"]) == 2
    assert "--trials 0 must be at least 1" in capsys.readouterr().err
    assert main(["tune", "ppo", "CartPole-v1", "--trials", "1", "--set", "lrr=1"]) == 2
    assert "unknown hyperparameter 'lrr'" in capsys.readouterr().err


def test_backend_ray_without_ray_is_a_clear_input_error(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main(["train", "ppo", "CartPole-v1", "--seeds", "0", "1", "--backend", "ray"]) == 2
    assert "--backend ray needs Ray: pip install 'pgrad[ray]'" in capsys.readouterr().err
    assert main(["tune", "ppo", "CartPole-v1", "--trials", "1", "--backend", "ray"]) == 2
    assert "needs Ray" in capsys.readouterr().err
