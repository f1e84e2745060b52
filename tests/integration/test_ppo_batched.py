"""Seed-batched PPO (issue 7): each seed learns as it does alone."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch

import pgrad
from pgrad.algos.ppo_batched import SeedBatchedPPO
from pgrad.errors import ConfigError

SEEDS = [1, 2, 3]


@pytest.fixture(autouse=True)
def numpy_rollout_step(monkeypatch):
    """By default these tests run seed batching and the single-seed runs compared with it in
    numpy (PGRAD_NUMBA=0), where the two differ by float rounding (1e-5); the tests marked
    ``compiled`` set PGRAD_NUMBA=1, where each seed runs its lone run's compiled calls and the two
    are equal to the bit (the compiled step against numpy: test_compiled_act.py)."""
    monkeypatch.setenv("PGRAD_NUMBA", "0")


SMALL = dict(preset="none", n_envs=4, n_steps=32, batch_size=32, n_epochs=2)  # 128 steps per iteration


def assert_same_policies(batched: SeedBatchedPPO, singles: list, atol: float) -> None:
    for seed, agent, single in zip(SEEDS, batched.agents, singles):
        mine, theirs = agent.policy.state_dict(), single.policy.state_dict()
        assert mine.keys() == theirs.keys()
        for key in mine:
            torch.testing.assert_close(
                mine[key], theirs[key], atol=atol, rtol=0, msg=lambda m: f"seed {seed}, {key}: {m}"
            )
        assert agent.total_steps == single.total_steps


def separately(env: str, steps: int, **hyperparameters) -> list:
    singles = []
    for seed in SEEDS:
        agent = pgrad.PPO(env, seed=seed, **hyperparameters)
        agent.learn(steps, quiet=True)
        agent.close()
        singles.append(agent)
    return singles


@pytest.mark.parametrize("iterations", [1, 5], ids=["first-update", "short-run"])
def test_cartpole_three_seeds_batched_equal_three_seeds_alone(iterations):
    steps = 128 * iterations
    batched = SeedBatchedPPO("CartPole-v1", SEEDS, **SMALL).learn(steps)
    batched.close()
    singles = separately("CartPole-v1", steps, **SMALL)
    assert_same_policies(batched, singles, atol=1e-5)
    # the update did something, and differently per seed
    assert not torch.equal(batched.agents[0].policy.critic[0].weight, batched.agents[1].policy.critic[0].weight)
    for agent, single in zip(batched.agents, singles):
        assert agent.logger.episodes == single.logger.episodes  # the same episodes, in the same envs
        # and the same metrics, up to float rounding (timings apart)
        mine, theirs = agent.logger.metrics[-1], single.logger.metrics[-1]
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - {"wall_time", "sps"}:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
@pytest.mark.parametrize("overrides", [{}, {"n_epochs": 8, "target_kl": 0.01, "lr": 3e-3}], ids=["plain", "target-kl"])
def test_next_step_autoreset_each_seed_its_own_batch_as_alone(monkeypatch, overrides, compiled):
    # next-step autoreset: the step after an episode ends is no transition, so each seed's batch has
    # its own size; minibatches are padded to one size with the padding masked out of the gradient
    # (compiled: each seed's real rows through its lone run's kernel, equal to the bit)
    if compiled:
        pytest.importorskip("numba")
        monkeypatch.setenv("PGRAD_NUMBA", "1")
    hyperparameters = {**SMALL, "autoreset_mode": "next_step", **overrides}
    steps = 128 * 5
    batched = SeedBatchedPPO("CartPole-v1", SEEDS, **hyperparameters).learn(steps)
    batched.close()
    singles = separately("CartPole-v1", steps, **hyperparameters)
    assert_same_policies(batched, singles, atol=0 if compiled else 1e-5)
    for agent, single in zip(batched.agents, singles):
        assert agent.logger.episodes == single.logger.episodes
        for mine, theirs in zip(agent.logger.metrics, single.logger.metrics, strict=True):
            assert mine["step"] == theirs["step"] and mine["epochs"] == theirs["epochs"]
            for key in mine.keys() - {"wall_time", "sps"}:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6, nan_ok=True), key
    sizes = [[row["step"] for row in agent.logger.metrics] for agent in batched.agents]
    assert len({tuple(s) for s in sizes}) > 1, sizes  # the seeds' batches did differ in size


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_target_kl_stops_each_seeds_epochs_as_its_lone_run_does(monkeypatch, compiled):
    # each seed stops its epochs when its own KL passes target_kl; the others go on, and every seed's
    # Adam keeps its own step count, so each still equals its lone run (compiled: to the bit; the
    # numpy Adam with per-seed factors does the compiled step's operations)
    if compiled:
        pytest.importorskip("numba")
        monkeypatch.setenv("PGRAD_NUMBA", "1")
    hyperparameters = {**SMALL, "n_epochs": 8, "target_kl": 0.01, "lr": 3e-3}  # lone epochs 2-8 per update
    steps = 128 * 5
    batched = SeedBatchedPPO("CartPole-v1", SEEDS, **hyperparameters).learn(steps)
    batched.close()
    singles = separately("CartPole-v1", steps, **hyperparameters)
    assert_same_policies(batched, singles, atol=0 if compiled else 1e-5)
    epochs = [[row["epochs"] for row in agent.logger.metrics] for agent in batched.agents]
    assert epochs == [[row["epochs"] for row in single.logger.metrics] for single in singles]
    by_iteration = list(zip(*epochs))
    assert any(len(set(row)) > 1 for row in by_iteration), epochs  # seeds stopped at different epochs
    assert any(min(row) < 8 for row in by_iteration), epochs


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_each_seed_evaluates_and_stops_early_as_its_lone_run_does(tmp_path, monkeypatch, compiled):
    # --eval-every with --patience: a seed that stops sits out the group's later iterations (its
    # weights, statistics and step count stay), and keeps the checkpoint written when it stopped.
    # Compiled, a stopped seed acts through numpy (its observation statistics frozen) while the
    # others stay on their lone runs' compiled calls: every seed equals its lone run to the bit.
    from pgrad.early_stopping import EarlyStopping

    if compiled:
        pytest.importorskip("numba")
        monkeypatch.setenv("PGRAD_NUMBA", "1")

    def early() -> EarlyStopping:
        return EarlyStopping(eval_every=128, patience=2, episodes=3)

    steps = 128 * 12
    batched = SeedBatchedPPO("CartPole-v1", SEEDS, **SMALL)
    batched.learn(steps, run_dir=tmp_path / "batched", early_stopping=early())
    batched.close()
    singles = []
    for seed in SEEDS:
        single = pgrad.PPO("CartPole-v1", seed=seed, **SMALL)
        single.learn(steps, run_dir=tmp_path / f"single_{seed}", quiet=True, early_stopping=early())
        single.close()
        singles.append(single)
    assert_same_policies(batched, singles, atol=0 if compiled else 1e-5)
    stopped_at = [agent.total_steps for agent in batched.agents]
    assert stopped_at == [single.total_steps for single in singles]
    assert len(set(stopped_at)) > 1 and min(stopped_at) < steps, stopped_at  # they stopped apart, early
    for seed, agent, single in zip(SEEDS, batched.agents, singles):
        assert agent.early_stopping.stopped_reason == single.early_stopping.stopped_reason
        mine, theirs = agent.early_stopping.history, single.early_stopping.history
        assert [row["step"] for row in mine] == [row["step"] for row in theirs]
        assert [row["mean_return"] for row in mine] == pytest.approx([row["mean_return"] for row in theirs])
        assert len(agent.logger.metrics) == len(single.logger.metrics)
        folder = tmp_path / "batched" / f"seed_{seed}"
        assert (folder / "evaluations.csv").is_file() and (folder / "best" / "policy.safetensors").is_file()
        state = json.loads((folder / "checkpoint" / "state.json").read_text())
        assert state["total_steps"] == agent.total_steps and state["early_stopping"]["stopped_reason"]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(normalize_reward=True, ent_coef=0.01, clip_vloss=True),
        dict(action_dist="truncated_normal", state_dependent_std=True, activation="relu"),
    ],
    ids=["gaussian-reward-scaling", "truncated-normal-state-std"],
)
def test_continuous_first_update_equals_each_seed_alone(overrides):
    # Only the first update: continuous rollouts turn float rounding (1e-8) into slowly growing
    # differences, and a single-seed run perturbed by 3e-8 drifts as far (docs/dev/seed_batched.md).
    hyperparameters = {**SMALL, **overrides}
    batched = SeedBatchedPPO("Pendulum-v1", SEEDS, **hyperparameters).learn(128)
    batched.close()
    assert_same_policies(batched, separately("Pendulum-v1", 128, **hyperparameters), atol=1e-5)


@pytest.mark.parametrize(
    "env, iterations, overrides",
    [
        ("CartPole-v1", 4, {}),
        ("Pendulum-v1", 4, dict(normalize_reward=True, ent_coef=0.01, clip_vloss=True)),
        ("Pendulum-v1", 2, dict(n_envs=1, n_steps=128, normalize_obs=False, norm_adv=False)),
    ],
    ids=["cartpole", "pendulum-normalised", "pendulum-one-env-plain"],
)
def test_compiled_seed_batching_equals_each_seed_alone_to_the_bit(monkeypatch, env, iterations, overrides):
    """Where numba is installed, each seed acts and computes its gradient through the compiled calls
    its lone run makes, on its own slices: every seed's weights equal its lone run's to the bit,
    over several updates of a continuous policy too (whose float rounding would otherwise grow)."""
    pytest.importorskip("numba")
    monkeypatch.setenv("PGRAD_NUMBA", "1")
    hyperparameters = {**SMALL, **overrides}
    steps = hyperparameters["n_envs"] * hyperparameters["n_steps"] * iterations
    batched = SeedBatchedPPO(env, SEEDS, **hyperparameters).learn(steps)
    batched.close()
    assert batched.collector.twin.compiled and batched._numpy_gradient.seed_steps is not None
    singles = separately(env, steps, **hyperparameters)
    assert all(single.compiled_act() for single in singles) and all(a.compiled_act() for a in batched.agents)
    assert_same_policies(batched, singles, atol=0)
    for agent, single in zip(batched.agents, singles):
        assert agent.logger.episodes == single.logger.episodes


@pytest.mark.parametrize("overrides", [{}, {"autoreset_mode": "next_step"}], ids=["same-step", "next-step"])
def test_discrete_observations_batch_through_each_seeds_own_collector(overrides):
    # Discrete observations (one-hot inputs) have no numpy twin to act through: each seed collects
    # with its own collector in turn (this used to fail with a ValueError building the shared one)
    hyperparameters = {**SMALL, **overrides}
    batched = SeedBatchedPPO("FrozenLake-v1", SEEDS, **hyperparameters)
    assert batched.fast_path_problem() is not None
    batched.learn(128 * 2)
    batched.close()
    assert batched.collector is None
    assert_same_policies(batched, separately("FrozenLake-v1", 128 * 2, **hyperparameters), atol=1e-5)


def test_run_folder_holds_an_ordinary_run_per_seed(tmp_path):
    batched = SeedBatchedPPO("CartPole-v1", [4, 5], **SMALL).learn(256, run_dir=tmp_path)
    batched.close()
    for seed, agent in zip([4, 5], batched.agents):
        folder = tmp_path / f"seed_{seed}"
        for name in ("config.json", "metrics.csv", "episodes.csv", "policy.json", "policy.safetensors"):
            assert (folder / name).is_file(), name
        # summary.json marks a finished run: pgrad train writes it after the final evaluation
        assert not (folder / "summary.json").exists() and agent.total_steps == 256
        assert json.loads((folder / "config.json").read_text())["seed"] == seed
        loaded = pgrad.load(folder)
        for key, value in agent.policy.state_dict().items():
            torch.testing.assert_close(loaded.policy.state_dict()[key], value, atol=0, rtol=0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(seeds=[]), "non-empty list of distinct"),
        (dict(seeds=[1, 1]), "non-empty list of distinct"),
        (
            dict(seeds=[1, 2], env="Pendulum-v1", target_kl=0.02, action_dist="truncated_normal"),
            "target_kl with seed batching needs the numpy fast path",
        ),
        (dict(seeds=[1, 2], env=gym.make("CartPole-v1")), "not an env instance"),
        (dict(seeds=[1, 2], vectorization="async"), "vectorization must be sync"),
        (
            dict(seeds=[1, 2], env="Pendulum-v1", autoreset_mode="next_step", action_dist="truncated_normal"),
            "autoreset_mode=next_step with seed batching needs the numpy fast path",
        ),
    ],
)
def test_unsupported_settings_are_refused(arguments, message):
    with pytest.raises(ConfigError, match=message):
        SeedBatchedPPO(arguments.pop("env", "CartPole-v1"), **{**SMALL, **arguments})


def test_cli_batched_run_has_the_multi_seed_layout(tmp_path, capsys):
    from pgrad.cli import main

    run = tmp_path / "run"
    argv = [
        "train",
        "ppo",
        "CartPole-v1",
        "--seeds",
        "1",
        "2",
        "--batched",
        "--steps",
        "256",
        "--out",
        str(run),
        "--quiet",
        "--eval-episodes",
        "2",
        "--preset",
        "none",
        *(f"--set={key}={value}" for key, value in SMALL.items() if key != "preset"),
    ]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["completed_seeds"] == [1, 2] and summary["batched"]
    assert summary["eval_mean_return"]["n"] == 2
    for seed in (1, 2):
        assert json.loads((run / f"seed_{seed}" / "summary.json").read_text())["eval_episodes"] == 2
        pgrad.load(run / f"seed_{seed}")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "1"], "needs several --seeds"),
        (["--seeds", "1", "2", "--set", "vectorization=async"], "vectorization must be sync"),
    ],
)
def test_cli_batched_bad_input_exits_2(tmp_path, capsys, extra, message):
    from pgrad.cli import main

    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--batched",
                "--steps",
                "256",
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                *extra,
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err


def test_cli_batched_seed_groups_in_processes_equal_one_group(tmp_path):
    """--workers splits the seeds into groups, one process each; no seed can tell the difference."""
    from pgrad.cli import main
    from pgrad.experiments.seed_batched import seed_groups

    assert seed_groups([1, 2, 3, 4, 5], 2) == [[1, 2, 3], [4, 5]] and seed_groups([7, 8], 5) == [[7], [8]]
    common = [
        "train",
        "ppo",
        "CartPole-v1",
        "--seeds",
        "1",
        "2",
        "3",
        "--batched",
        "--steps",
        "256",
        "--quiet",
        "--eval-episodes",
        "0",
        "--preset",
        "none",
        *(f"--set={k}={v}" for k, v in SMALL.items() if k != "preset"),
    ]
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    assert main([*common, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["batched_groups"] == [[1, 2], [3]]
    for seed in (1, 2, 3):
        two = pgrad.load(tmp_path / "two" / f"seed_{seed}").policy.state_dict()
        one = pgrad.load(tmp_path / "one" / f"seed_{seed}").policy.state_dict()
        for key in one:
            torch.testing.assert_close(two[key], one[key], rtol=1e-6, atol=1e-7, msg=f"seed {seed}: {key}")
        assert (tmp_path / "two" / f"seed_{seed}" / "episodes.csv").read_text() == (
            tmp_path / "one" / f"seed_{seed}" / "episodes.csv"
        ).read_text()


def short_pendulum() -> gym.Env:
    """Pendulum cut at 10 steps: every env of every seed truncates at the same steps."""
    return gym.make("Pendulum-v1", max_episode_steps=10)


def test_truncations_in_every_seed_bootstrap_with_each_seeds_own_values():
    """V(final observation) of truncated episodes: rows of several seeds in one step, each valued
    (and normalised) by its own seed; the first update then equals each seed's lone run."""
    hyperparameters = {**SMALL, "normalize_obs": True, "normalize_reward": True}
    batched = SeedBatchedPPO(short_pendulum, SEEDS, **hyperparameters).learn(128)
    batched.close()
    assert all(len(agent.logger.episodes) == 12 for agent in batched.agents)  # 4 envs x 3 truncations
    assert_same_policies(batched, separately(short_pendulum, 128, **hyperparameters), atol=1e-5)
