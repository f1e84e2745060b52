"""Resume, periodic checkpoints, early stopping: a stopped and resumed run equals the unstopped one.

"Equal" is exact: torch.equal on every weight and optimiser tensor, and the same metrics.csv and
episodes.csv apart from the wall-clock columns.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pgrad.checkpointing
from pgrad.algos import ALGORITHM_ARGUMENTS, ALGORITHMS
from pgrad.cli import main

CASES = {
    "ppo": ("ppo", "CartPole-v1", 1536, 2, {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2}),
    "ppo-pendulum-next-step": (
        "ppo",
        "Pendulum-v1",
        1024,
        2,
        {
            "n_envs": 2,
            "n_steps": 128,
            "batch_size": 64,
            "n_epochs": 2,
            "normalize_reward": True,
            "autoreset_mode": "next_step",
        },
    ),
    "ppo-async": (
        "ppo",
        "CartPole-v1",
        1536,
        2,
        {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2, "vectorization": "async"},
    ),
    "a2c-next-step": ("a2c", "CartPole-v1", 1200, 50, {"n_envs": 2, "autoreset_mode": "next_step"}),
    "reinforce-baseline": ("reinforce-baseline", "pgrad/ContinuousCartPole-v0", 1500, 5, {"n_envs": 3}),
    "ars": (
        "ars",
        "pgrad/ContinuousCartPole-v0",
        6000,
        3,
        {"n_directions": 4, "n_top": 2, "n_workers": 0, "horizon": 200},
    ),
    # Dict observations are saved key by key; images through the encoder; REINFORCE keeps the
    # unfinished episodes (with their truncated final observations) between rollouts
    "ppo-dict-observation": (
        "ppo",
        "pgrad/MatchDigits-v0",
        512,
        2,
        {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2, "hidden_sizes": (16,)},
    ),
    "ppo-image-next-step": (
        "ppo",
        "pgrad/FindTheLight-v0",
        512,
        2,
        {"n_envs": 2, "n_steps": 64, "batch_size": 64, "cnn_features": 16, "autoreset_mode": "next_step"},
    ),
    "reinforce-baseline-image": (
        "reinforce-baseline",
        "pgrad/FindTheLight-v0",
        400,
        5,
        {"n_envs": 3, "cnn_features": 16},
    ),
    # the target critic's weights travel in the checkpoint
    "a2c-target-critic": ("a2c", "CartPole-v1", 800, 60, {"n_envs": 2, "target_critic": "polyak", "layer_norm": True}),
    # the LSTM state of the running episodes is part of what a checkpoint holds
    "ppo-lstm": (
        "ppo-lstm",
        "pgrad/CartPoleNoVel-v1",
        1024,
        2,
        {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2, "seq_len": 16},
    ),
}


def _agent(algo, env, overrides):
    return ALGORITHMS[algo](env, seed=3, preset="none", **ALGORITHM_ARGUMENTS.get(algo, {}), **overrides)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in csv.DictReader(handle)]


def _assert_same_run(a, b, run_a: Path, run_b: Path) -> None:
    assert (a.total_steps, a.updates) == (b.total_steps, b.updates)
    state_a, state_b = a.policy.state_dict(), b.policy.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    for name, optimizer in a.optimizers().items():
        saved_a, saved_b = optimizer.state_dict()["state"], b.optimizers()[name].state_dict()["state"]
        assert saved_a.keys() == saved_b.keys()
        for index, sa in saved_a.items():
            sb = saved_b[index]
            assert all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)
    assert _rows(run_a / "metrics.csv") == _rows(run_b / "metrics.csv")
    assert (run_a / "episodes.csv").read_text() == (run_b / "episodes.csv").read_text()


def _stop_and_resume(tmp_path, algo, env, steps, stop_after, overrides):
    full = _agent(algo, env, overrides)
    full.learn(steps, run_dir=tmp_path / "full", quiet=True)
    part = _agent(algo, env, overrides)
    part.learn(steps, run_dir=tmp_path / "part", quiet=True, callback=lambda agent, row: agent.updates < stop_after)
    assert part.total_steps < full.total_steps
    part.close()
    resumed = _agent(algo, env, overrides)
    resumed.load_checkpoint_state(tmp_path / "part" / "checkpoint", run_dir=tmp_path / "part")
    resumed.learn(steps, run_dir=tmp_path / "part", quiet=True, resume=True)
    return full, resumed


@pytest.mark.parametrize("case", list(CASES))
def test_stopped_and_resumed_run_equals_the_unstopped_one(case, tmp_path):
    algo, env, steps, stop_after, overrides = CASES[case]
    full, resumed = _stop_and_resume(tmp_path, algo, env, steps, stop_after, overrides)
    _assert_same_run(full, resumed, tmp_path / "full", tmp_path / "part")


def test_without_the_env_replay_the_resumed_run_differs(tmp_path, monkeypatch):
    """The control for the test above: the envs' state matters, and the comparison sees it."""
    monkeypatch.setattr(pgrad.checkpointing, "restore_envs_state", lambda envs, state, tensors, collector: [])
    algo, env, steps, stop_after, overrides = CASES["ppo"]
    full, resumed = _stop_and_resume(tmp_path, algo, env, steps, stop_after, overrides)
    state_a, state_b = full.policy.state_dict(), resumed.policy.state_dict()
    assert not all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_rows_logged_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    """A crash after the last checkpoint: the CSVs hold more rows than the checkpoint; resume trims them."""
    algo, env, steps, _, overrides = CASES["ppo"]
    full = _agent(algo, env, overrides)
    full.learn(steps, run_dir=tmp_path / "full", quiet=True)

    def crash(agent, row):
        if agent.updates == 3:
            raise RuntimeError("simulated crash")

    part = _agent(algo, env, overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        part.learn(
            steps,
            run_dir=tmp_path / "part",
            quiet=True,
            checkpoint_every=512,
            checkpoint_seconds=float("inf"),
            callback=crash,
        )
    part.close()
    assert json.loads((tmp_path / "part" / "checkpoint" / "state.json").read_text())["total_steps"] == 512
    assert len(_rows(tmp_path / "part" / "metrics.csv")) == 3
    resumed = _agent(algo, env, overrides)
    resumed.load_checkpoint_state(tmp_path / "part" / "checkpoint", run_dir=tmp_path / "part")
    resumed.learn(steps, run_dir=tmp_path / "part", quiet=True, resume=True)
    _assert_same_run(full, resumed, tmp_path / "full", tmp_path / "part")


def test_checkpoint_every_k_steps(tmp_path, monkeypatch):
    agent = _agent("a2c", "CartPole-v1", {"n_envs": 2, "n_steps": 10})
    written = []
    save = agent.save_checkpoint
    monkeypatch.setattr(agent, "save_checkpoint", lambda folder: (written.append(agent.total_steps), save(folder)))
    agent.learn(400, run_dir=tmp_path, quiet=True, checkpoint_every=100, checkpoint_seconds=float("inf"))
    assert written == [100, 200, 300, 400, 400]  # each multiple crossed, then the end of learn()


def test_early_stopping_on_a_plateau(tmp_path, capsys):
    run = tmp_path / "run"
    # min_delta is unreachable, so the first evaluation is the best and the next `patience` ones are not improvements
    argv = [
        "train",
        "a2c",
        "CartPole-v1",
        "--steps",
        "5000",
        "--out",
        str(run),
        "--quiet",
        "--preset",
        "none",
        "--eval-every",
        "500",
        "--patience",
        "2",
        "--min-delta",
        "1e9",
        "--periodic-eval-episodes",
        "2",
        "--eval-episodes",
        "2",
    ]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1500 and "early stop at step 1500" in summary["early_stopping"]["stopped"]
    assert summary["early_stopping"]["best_step"] == 500
    assert [int(r["step"]) for r in _rows(run / "evaluations.csv")] == [500, 1000, 1500]
    assert (run / "best" / "policy.json").is_file()
    # the final checkpoint remembers the stop: resuming does not train on
    assert json.loads((run / "checkpoint" / "state.json").read_text())["early_stopping"]["stopped_reason"]


def test_evaluations_do_not_change_what_is_learnt(tmp_path):
    from pgrad.early_stopping import EarlyStopping

    plain = _agent("ppo", "CartPole-v1", CASES["ppo"][4])
    plain.learn(1024, quiet=True)
    watched = _agent("ppo", "CartPole-v1", CASES["ppo"][4])
    watched.learn(1024, quiet=True, early_stopping=EarlyStopping(eval_every=256, episodes=2))
    assert len(watched.early_stopping.history) == 4
    assert all(
        torch.equal(a, b) for a, b in zip(plain.policy.state_dict().values(), watched.policy.state_dict().values())
    )


TRAIN = [
    "train",
    "ppo",
    "CartPole-v1",
    "--steps",
    "16000",
    "--preset",
    "none",
    "--eval-episodes",
    "2",
    "--quiet",
    "--checkpoint-every",
    "2000",
    "--set",
    "n_envs=2",
    "--set",
    "n_steps=128",
    "--set",
    "n_epochs=2",
]


def _checkpoint_steps(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["total_steps"]
    except (OSError, ValueError, KeyError):
        return 0


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "pgrad.cli"]
    part = tmp_path / "part"
    process = subprocess.Popen([*command, *TRAIN, "--out", str(part)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _checkpoint_steps(part) < 2000 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by signal" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    stopped_at = _checkpoint_steps(part)
    assert 2000 <= stopped_at < 16000 and not (part / "policy.json").exists()

    assert main([*TRAIN, "--resume", str(part)]) == 0
    assert main([*TRAIN, "--out", str(tmp_path / "full")]) == 0
    a, b = load_file(tmp_path / "full" / "policy.safetensors"), load_file(part / "policy.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _rows(tmp_path / "full" / "metrics.csv") == _rows(part / "metrics.csv")
    assert (tmp_path / "full" / "episodes.csv").read_text() == (part / "episodes.csv").read_text()


SMALL = ["--steps", "600", "--preset", "none", "--eval-episodes", "1", "--quiet", "--set", "n_envs=2"]


@pytest.fixture(scope="module")
def a2c_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "a2c"
    # stopped by the budget of a first call: a checkpoint mid-way is what --resume continues from
    assert main(["train", "a2c", "CartPole-v1", *SMALL, "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "ppo", "CartPole-v1", *SMALL, "--set", "n_steps=16", "--set", "batch_size=16"],
            "is from algorithm 'a2c', not 'ppo'",
        ),
        (["train", "a2c", "Pendulum-v1", *SMALL], "its checkpoint is for observation space"),
        (["train", "a2c", "CartPole-v1", *SMALL, "--set", "lr=1e-3"], "lr: 0.0007 -> 0.001"),
        (["train", "a2c", "CartPole-v1", *SMALL[:1], "900", *SMALL[2:]], "steps: 600 -> 900"),
        (["train", "a2c", "CartPole-v1", *SMALL, "--set", "hidden_sizes=32"], "cannot change on resume"),
        (["train", "a2c", "CartPole-v1", *SMALL, "--seed", "1"], "seed: 0 -> 1"),
    ],
)
def test_resume_refuses_another_experiment(a2c_run, argv, message, capsys):
    assert main([*argv, "--resume", str(a2c_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    assert main(["train", "a2c", "CartPole-v1", *SMALL, "--resume", str(tmp_path)]) == 2
    assert "is not a pgrad run folder" in capsys.readouterr().err
    assert main(["train", "a2c", "CartPole-v1", *SMALL, "--resume", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_allow_changes_continues_with_the_new_settings(tmp_path, capsys):
    run = tmp_path / "run"
    part = ["train", "a2c", "CartPole-v1", "--steps", "2000", "--preset", "none", "--quiet", "--eval-episodes", "1"]
    status = main([*part, "--out", str(run), "--eval-every", "400", "--patience", "1", "--min-delta", "1e9"])
    assert status == 0 and json.loads((run / "summary.json").read_text())["steps"] == 800
    (run / "summary.json").unlink()  # an unfinished run, as far as --resume is concerned
    assert main([*part, "--resume", str(run), "--set", "lr=1e-3"]) == 2
    assert main([*part, "--resume", str(run), "--set", "lr=1e-3", "--allow-changes"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2000
    assert json.loads((run / "config.json").read_text())["config"]["lr"] == 1e-3


def test_plot_of_runs_without_finished_episodes_is_an_input_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "episodes.csv").write_text("step,return,length\n")
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no finished episodes" in err and len(err.splitlines()) == 1


def _sigterm_once_seeds_0_and_1_have_checkpoints(seeds: list[str], part: Path) -> None:
    """Run ``pgrad train`` TRAIN with ``seeds`` into ``part``; SIGTERM it once seeds 0 and 1 have
    checkpointed 2000 steps."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "pgrad.cli", *TRAIN, *seeds, "--out", str(part)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while (
        min(_checkpoint_steps(part / f"seed_{s}") for s in (0, 1)) < 2000
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "--resume" in err


@pytest.mark.slow
def test_sigterm_to_a_multi_seed_run_does_not_start_the_queued_seeds(tmp_path):
    """More seeds than workers: a SIGTERM stops the running seeds at a checkpoint and cancels the
    queued one (it once started as soon as a worker was free, and trained to the end)."""
    seeds = ["--seeds", "0", "1", "2", "--workers", "2", "--no-batched"]
    part = tmp_path / "part"
    _sigterm_once_seeds_0_and_1_have_checkpoints(seeds, part)
    assert not (part / "seed_2").exists(), "the queued seed started after the signal"
    assert json.loads((part / "summary.json").read_text())["interrupted_seeds"] == [0, 1, 2]
    assert main([*TRAIN, *seeds, "--resume", str(part)]) == 0
    assert json.loads((part / "summary.json").read_text())["completed_seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_multi_seed_run_stopped_by_sigterm_resumes_every_seed(tmp_path):
    """SIGTERM to the parent reaches the seed processes; --resume with the same --seeds finishes them."""
    seeds = ["--seeds", "0", "1", "--workers", "2"]
    part = tmp_path / "part"
    _sigterm_once_seeds_0_and_1_have_checkpoints(seeds, part)
    assert all(0 < _checkpoint_steps(part / f"seed_{s}") < 16000 for s in (0, 1))

    assert main([*TRAIN, *seeds, "--resume", str(part)]) == 0
    assert main([*TRAIN, *seeds, "--out", str(tmp_path / "full")]) == 0
    for seed in (0, 1):
        a = load_file(tmp_path / "full" / f"seed_{seed}" / "policy.safetensors")
        b = load_file(part / f"seed_{seed}" / "policy.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "summary.json").read_text())["completed_seeds"] == [0, 1]
    # a multi-seed run cannot be resumed as a single run
    assert main([*TRAIN, "--resume", str(part)]) == 2
