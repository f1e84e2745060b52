"""Checkpoints of seed-batched PPO: each seed's is the one its single-seed run writes, and a
stopped and resumed batched run equals the unstopped one exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import pgrad
from pgrad.algos.ppo_batched import SeedBatchedPPO
from pgrad.cli import main

SEEDS = [1, 2, 3]
# Pendulum: continuous actions, reward scaling and 200-step episodes, so checkpoints fall in the
# middle of running episodes (the env replay and the running returns are part of what is saved).
PENDULUM = dict(preset="none", n_envs=2, n_steps=64, batch_size=64, n_epochs=2, normalize_reward=True)
STEPS = 128 * 6


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in csv.DictReader(handle)]


def assert_same_seed_runs(a: SeedBatchedPPO, b: SeedBatchedPPO, run_a: Path, run_b: Path) -> None:
    for seed, agent_a, agent_b in zip(SEEDS, a.agents, b.agents):
        assert (agent_a.total_steps, agent_a.updates) == (agent_b.total_steps, agent_b.updates)
        state_a, state_b = agent_a.policy.state_dict(), agent_b.policy.state_dict()
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), f"seed {seed}: weights differ"
        adam_a, adam_b = agent_a.optimizer.state_dict()["state"], agent_b.optimizer.state_dict()["state"]
        assert adam_a.keys() == adam_b.keys() and adam_a
        assert all(torch.equal(adam_a[i][k], adam_b[i][k]) for i in adam_a for k in adam_a[i]), (
            f"seed {seed}: Adam differs"
        )
        folder_a, folder_b = run_a / f"seed_{seed}", run_b / f"seed_{seed}"
        assert rows(folder_a / "metrics.csv") == rows(folder_b / "metrics.csv")
        assert (folder_a / "episodes.csv").read_text() == (folder_b / "episodes.csv").read_text()


@pytest.mark.parametrize(
    "overrides",
    # target_kl: seeds stop their epochs apart, so their Adam step counts differ in the checkpoints
    [{}, {"n_epochs": 8, "target_kl": 0.005, "lr": 3e-3}],
    ids=["plain", "target-kl"],
)
def test_stopped_and_resumed_batched_run_equals_the_unstopped_one(tmp_path, overrides):
    settings = {**PENDULUM, **overrides}
    full = SeedBatchedPPO("Pendulum-v1", SEEDS, **settings).learn(STEPS, run_dir=tmp_path / "full")
    full.close()
    part = SeedBatchedPPO("Pendulum-v1", SEEDS, **settings)
    part.learn(STEPS, run_dir=tmp_path / "part", callback=lambda batched, row: batched.agents[0].updates < 2)
    assert part.agents[0].total_steps == 256 < full.agents[0].total_steps
    part.close()
    resumed = SeedBatchedPPO("Pendulum-v1", SEEDS, **settings)
    resumed.load_checkpoints(tmp_path / "part")
    resumed.learn(STEPS, run_dir=tmp_path / "part", resume=True)
    resumed.close()
    assert_same_seed_runs(full, resumed, tmp_path / "full", tmp_path / "part")
    if overrides:
        epochs = {row["epochs"] for agent in full.agents for row in agent.logger.metrics}
        assert len(epochs) > 1, epochs  # the seeds did stop their epochs apart
    assert all(len(agent.logger.episodes) > 0 for agent in resumed.agents)


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
@pytest.mark.parametrize("overrides", [{}, {"n_epochs": 8, "target_kl": 0.005, "lr": 3e-3}], ids=["plain", "target-kl"])
def test_a_batched_seed_checkpoint_resumes_as_a_single_seed_run(tmp_path, overrides, monkeypatch, compiled):
    # The checkpoint a batched run writes for seed 2 is an ordinary PPO checkpoint: a single-seed
    # PPO resumed from it continues as the batched run does. In numpy (PGRAD_NUMBA=0 for both) they
    # are equal up to float rounding, which differs between the batched and the plain matrix
    # products (1e-5, as in test_ppo_batched); compiled, each seed runs its lone run's calls and
    # they are equal to the bit. With target_kl it holds the seed's own Adam step count, not the
    # group's.
    if compiled:
        pytest.importorskip("numba")
    monkeypatch.setenv("PGRAD_NUMBA", "1" if compiled else "0")
    settings = {**PENDULUM, **overrides}
    part = SeedBatchedPPO("Pendulum-v1", SEEDS, **settings)
    part.learn(128 * 3, run_dir=tmp_path / "run", callback=lambda batched, row: batched.agents[0].updates < 2)
    part.close()
    batched = SeedBatchedPPO("Pendulum-v1", SEEDS, **settings)
    batched.load_checkpoints(tmp_path / "run")
    single = pgrad.PPO("Pendulum-v1", seed=2, **settings)
    single.load_checkpoint_state(tmp_path / "run" / "seed_2" / "checkpoint")
    batched.learn(128 * 3, resume=True)
    single.learn(128 * 3, resume=True, quiet=True)
    batched.close()
    single.close()
    assert single.total_steps == batched.agents[1].total_steps == 128 * 3
    mine, theirs = batched.agents[1].policy.state_dict(), single.policy.state_dict()
    for key in mine:
        atol = 0 if compiled else 1e-5
        torch.testing.assert_close(mine[key], theirs[key], atol=atol, rtol=0, msg=lambda m: f"{key}: {m}")
    assert not torch.equal(mine["critic.0.weight"], part.agents[1].policy.state_dict()["critic.0.weight"])


def test_cli_resumes_a_stopped_batched_run(tmp_path, capsys):
    common = [
        "train",
        "ppo",
        "Pendulum-v1",
        "--seeds",
        *map(str, SEEDS),
        "--batched",
        "--workers",
        "1",
        "--steps",
        str(STEPS),
        "--quiet",
        "--eval-episodes",
        "2",
        "--preset",
        "none",
    ]
    common += [arg for key, value in PENDULUM.items() if key != "preset" for arg in ("--set", f"{key}={value}")]
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    # a run stopped after 2 iterations, as a signal would leave it: checkpoints, no final files
    part = SeedBatchedPPO("Pendulum-v1", SEEDS, **PENDULUM)
    part.learn(STEPS, run_dir=tmp_path / "part", callback=lambda batched, row: batched.agents[0].updates < 2)
    part.close()
    for seed in SEEDS:
        for name in ("summary.json", "policy.json"):  # summary.json comes after the final evaluation only
            (tmp_path / "part" / f"seed_{seed}" / name).unlink(missing_ok=True)
    assert main([*common, "--resume", str(tmp_path / "part")]) == 0
    for seed in SEEDS:
        full, resumed = (pgrad.load(tmp_path / run / f"seed_{seed}") for run in ("full", "part"))
        assert all(
            torch.equal(a, b) for a, b in zip(full.policy.state_dict().values(), resumed.policy.state_dict().values())
        )
        for name in ("metrics.csv", "episodes.csv"):
            assert rows(tmp_path / "full" / f"seed_{seed}" / name) == rows(tmp_path / "part" / f"seed_{seed}" / name)
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["completed_seeds"] == SEEDS and summary["batched"]
    # a changed hyperparameter is refused, naming it, before anything trains
    capsys.readouterr()
    assert main([*common, "--resume", str(tmp_path / "part"), "--set", "lr=1e-3"]) == 2
    assert "lr" in capsys.readouterr().err


def test_ppo_seeds_are_batched_by_default_where_the_settings_allow(tmp_path, capsys):
    common = [
        "train",
        "ppo",
        "CartPole-v1",
        "--seeds",
        "1",
        "2",
        "--steps",
        "256",
        "--workers",
        "1",
        "--eval-episodes",
        "0",
        "--preset",
        "none",
        "--set",
        "n_envs=4",
        "--set",
        "n_steps=32",
        "--set",
        "batch_size=32",
    ]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert "seeds 1 2 as seed-batched models" in capsys.readouterr().err
    assert json.loads((tmp_path / "default" / "summary.json").read_text()).get("batched") is True
    # opted out, or settings seed batching does not support (async envs): one process per seed
    for name, extra in (("opted-out", ["--no-batched"]), ("async", ["--set", "vectorization=async"])):
        assert main([*common, "--out", str(tmp_path / name), *extra]) == 0
        assert "as seed-batched models" not in capsys.readouterr().err
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert "batched" not in summary and summary["completed_seeds"] == [1, 2]


def test_resume_of_seeds_stopped_at_different_steps_is_not_batched(tmp_path):
    from pgrad.experiments.runner import TrainSpec
    from pgrad.experiments.seed_batched import batched_by_default

    for seed, steps in ((1, 128), (2, 256)):  # as separate processes stopped at different times leave them
        agent = pgrad.PPO("CartPole-v1", seed=seed, preset="none", n_envs=4, n_steps=32, batch_size=32)
        agent.learn(steps, run_dir=tmp_path / "run" / f"seed_{seed}", quiet=True)
        agent.close()
    spec = TrainSpec(algo="ppo", env="CartPole-v1", seed=1, out=str(tmp_path / "run"), resume=True)
    assert not batched_by_default(spec, [1, 2], agent.config, workers=1)
    assert batched_by_default(spec, [1, 2], agent.config, workers=2)  # groups [1] and [2]: each in lockstep with itself
    assert batched_by_default(spec, [2], agent.config) is False  # one seed: nothing to batch
    assert batched_by_default(
        TrainSpec(algo="ppo", env="CartPole-v1", seed=1, out=str(tmp_path / "new")), [1, 2], agent.config
    )


def test_loading_checkpoints_into_an_object_that_trained_on_continues_from_the_checkpoint(tmp_path):
    # The shared collector of an object that has collected holds its own envs' state; loading
    # checkpoints must replace it with the checkpoint's, or the continued run is not the stopped one's.
    full = SeedBatchedPPO("Pendulum-v1", SEEDS, **PENDULUM).learn(STEPS, run_dir=tmp_path / "full")
    full.close()
    part = SeedBatchedPPO("Pendulum-v1", SEEDS, **PENDULUM)
    part.learn(STEPS, run_dir=tmp_path / "part", callback=lambda batched, row: batched.agents[0].updates < 2)
    part.learn(256)  # on past the checkpoint, without writing one
    part.load_checkpoints(tmp_path / "part")
    part.learn(STEPS, run_dir=tmp_path / "part", resume=True)
    part.close()
    assert_same_seed_runs(full, part, tmp_path / "full", tmp_path / "part")
