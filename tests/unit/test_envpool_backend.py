"""vectorization=envpool (pgrad/envs/envpool_backend.py): EnvPool's autoreset seen through pgrad's
collector next to Gymnasium's, seeding, dtypes and the refusals.

The autoreset cases run CartPole-v1 on both paths: episodes cut by a 5-step time limit (no
CartPole episode can end sooner), and episodes ended by termination (the cart pushed right every
step falls within about ten steps). The observations of the two paths differ (EnvPool draws the
initial states from its own generator), everything the collector makes of the episode ends must
not: the transitions kept, the flags, the NEXT_STEP reset steps, the bootstrap values and the
episode records.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.envs import make_vector_env
from pgrad.envs.options import ConfiguredEnv, parse_wrappers
from pgrad.errors import ConfigError

envpool = pytest.importorskip("envpool")
torch.set_num_threads(1)

BACKENDS = ("sync", "envpool")


def _collect(vectorization: str, n_steps: int, *, limit: int | None = None, push_right: bool = False, seed: int = 0):
    """One rollout of a fresh PPO agent on CartPole-v1 (Gymnasium's NEXT_STEP mode on the sync
    path), with the raw observation every env step returned."""
    agent = pgrad.PPO(
        "CartPole-v1",
        seed=seed,
        preset=None,
        vectorization=vectorization,
        autoreset_mode="next_step",
        n_envs=2,
        n_steps=n_steps,
        batch_size=8,
        normalize_obs=False,  # V(raw obs) is then what the collector stores
        env_kwargs={"max_episode_steps": limit} if limit is not None else None,
    )
    returned: list[np.ndarray] = []
    step = agent.envs.step

    def logged_step(actions):
        result = step(actions)
        returned.append(np.array(result[0], copy=True))
        return result

    agent.envs.step = logged_step
    if push_right:  # every env receives action 1 whatever the policy sampled
        agent.policy.env_action = lambda action: np.ones(len(action), dtype=np.int64)
    collector = agent._ensure_collector()
    rollout, episodes = collector.collect(n_steps)
    values_of = collector._values
    agent.close()
    return rollout, episodes, np.stack(returned), values_of


@pytest.fixture(scope="module")
def truncated_runs():
    return {backend: _collect(backend, 20, limit=5) for backend in BACKENDS}


@pytest.fixture(scope="module")
def terminated_runs():
    return {backend: _collect(backend, 40, push_right=True) for backend in BACKENDS}


def test_truncation_transitions_flags_and_reset_steps_are_gymnasiums(truncated_runs):
    sync, pool = truncated_runs["sync"][0], truncated_runs["envpool"][0]
    # per env: 5 transitions, the reset step, 5 transitions, ...
    expected_valid = np.array([t % 6 != 5 for t in range(20)])
    for rollout in (sync, pool):
        assert torch.equal(rollout.valid, torch.from_numpy(np.stack([expected_valid] * 2, 1)))
        assert torch.equal(rollout.truncated[:, 0], torch.from_numpy(np.array([t % 6 == 4 for t in range(20)])))
        assert not rollout.terminated.any()
        assert torch.equal(rollout.rewards, rollout.valid.float())  # CartPole's 1 per step; 0 on reset steps
    for name in ("valid", "terminated", "truncated", "time_in_episode", "rewards"):
        assert torch.equal(getattr(sync, name), getattr(pool, name)), name


def test_truncation_bootstraps_from_the_final_observation(truncated_runs):
    for backend in BACKENDS:
        rollout, _, returned, values_of = truncated_runs[backend]
        ends = torch.nonzero(rollout.truncated)
        assert len(ends) == 6
        for t, env in ends.tolist():
            # NEXT_STEP: the step that cut the episode returned the final observation itself
            expected = values_of(returned[t, env][None].astype(np.float32))[0]
            assert rollout.next_values[t, env] == pytest.approx(float(expected), abs=1e-6), backend
        # and the observation the next rollout step acted on is the reset one, not the final one
        assert not np.array_equal(returned[5], returned[4])


def test_truncation_episode_records_are_gymnasiums(truncated_runs):
    sync, pool = truncated_runs["sync"][1], truncated_runs["envpool"][1]
    for episodes in (sync, pool):
        assert episodes.lengths == [5] * 6 and episodes.returns == [5.0] * 6
    assert (sync.steps, sync.envs) == (pool.steps, pool.envs)


def _episodes_of(rollout, env: int) -> list[tuple[int, bool]]:
    """(length, ended by termination) of every episode of ``env`` that ended in the rollout, after
    checking what follows each end: a reset step with reward 0, then time 0 of the next episode."""
    valid, times = rollout.valid[:, env], rollout.time_in_episode[:, env]
    ended = []
    for t in range(len(valid)):
        if rollout.terminated[t, env] or rollout.truncated[t, env]:
            assert valid[t]
            ended.append((int(times[t]) + 1, bool(rollout.terminated[t, env])))
            if t + 1 < len(valid):
                assert not valid[t + 1] and rollout.rewards[t + 1, env] == 0
            if t + 2 < len(valid):
                assert valid[t + 2] and times[t + 2] == 0
    return ended


def test_termination_on_both_paths(terminated_runs):
    lengths = {}
    for backend in BACKENDS:
        rollout, episodes, _, _ = terminated_runs[backend]
        found = [episode for env in range(2) for episode in _episodes_of(rollout, env)]
        assert len(found) >= 4 and all(by_termination for _, by_termination in found), backend
        assert not rollout.truncated.any()
        # the records: one per end, its length the transitions counted, its return CartPole's 1 per step
        assert sorted(episodes.lengths) == sorted(length for length, _ in found)
        assert episodes.returns == [float(length) for length in episodes.lengths]
        assert rollout.n_transitions == 80 - int((~rollout.valid).sum())
        lengths[backend] = episodes.lengths
    # the same physics: pushed right from a near-upright start, the pole falls after 8 to 11 steps
    assert set(lengths["sync"]) | set(lengths["envpool"]) <= set(range(8, 12))


def _steps_to_fall(backend: str, limit: int, seed: int) -> tuple[int, bool, bool]:
    """Push one CartPole right until its episode ends: (steps, terminated, truncated)."""
    envs = make_vector_env("CartPole-v1", 1, seed, backend, autoreset_mode="next_step", max_episode_steps=limit)
    envs.reset(seed=seed)
    for step in range(1, limit + 1):
        _, _, terminated, truncated, _ = envs.step(np.ones(1, dtype=np.int64))
        if terminated[0] or truncated[0]:
            envs.close()
            return step, bool(terminated[0]), bool(truncated[0])
    raise AssertionError("the pole did not fall")


def test_termination_on_the_last_allowed_step_is_reported_as_truncation():
    """EnvPool's known difference (module docstring): terminated = done & ~trunc. Gymnasium's
    TimeLimit reports both flags there, and the collector lets terminated win."""
    steps, terminated, truncated = _steps_to_fall("envpool", 500, seed=5)
    assert (terminated, truncated) == (True, False)
    assert _steps_to_fall("envpool", steps, seed=5) == (steps, False, True)
    steps, terminated, truncated = _steps_to_fall("sync", 500, seed=5)
    assert (terminated, truncated) == (True, False)
    assert _steps_to_fall("sync", steps, seed=5) == (steps, True, True)


def test_the_reset_step_ignores_the_action_and_the_autoreset_mode_is_next_step():
    runs = []
    for action in (0, 1):
        envs = make_vector_env("CartPole-v1", 1, 3, "envpool", max_episode_steps=2)
        assert envs.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
        envs.reset(seed=3)
        envs.step(np.zeros(1, np.int64))
        envs.step(np.zeros(1, np.int64))  # truncated here
        obs, reward, terminated, truncated, info = envs.step(np.full(1, action, np.int64))  # the reset step
        runs.append(obs)
        assert (reward[0], terminated[0], truncated[0], info["elapsed_step"][0]) == (0.0, False, False, 0)
        envs.close()
    assert np.array_equal(runs[0], runs[1])


# ---------------------------------------------------------------- seeding and dtypes


def _trajectory(seed: int, n_envs: int, steps: int = 30) -> np.ndarray:
    envs = make_vector_env("Hopper-v5", n_envs, seed, "envpool")
    obs = [envs.reset(seed=seed)[0]]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 1, 3)).astype(np.float32)
    for action in actions:
        obs.append(envs.step(np.repeat(action, n_envs, 0))[0])
    envs.close()
    return np.stack(obs)  # (steps + 1, n_envs, 11)


def test_same_seed_same_observations_and_copy_i_is_seeded_seed_plus_i():
    first = _trajectory(7, 2)
    assert np.array_equal(first, _trajectory(7, 2))
    assert not np.array_equal(first[:, 0], _trajectory(8, 2)[:, 0])
    assert np.array_equal(first[:, 1], _trajectory(8, 1)[:, 0])  # Gymnasium's convention: seed + i


def test_a_seeded_reset_starts_over_and_an_unseeded_one_continues():
    envs = make_vector_env("CartPole-v1", 2, 4, "envpool")
    first = envs.reset(seed=4)[0]
    envs.step(np.zeros(2, np.int64))
    assert np.array_equal(envs.reset(seed=4)[0], first)
    assert not np.array_equal(envs.reset()[0], first)
    envs.close()


def test_rows_come_in_env_order_and_would_be_sorted_otherwise():
    envs = make_vector_env("Hopper-v5", 8, 0, "envpool")
    envs.reset(seed=0)
    actions = np.random.default_rng(1).uniform(-1, 1, (200, 8, 3)).astype(np.float32)
    for action in actions:  # random actions: Hopper falls, so copies reset at different steps
        info = envs._pool.step(action)[4]
        assert np.array_equal(info["env_id"], np.arange(8))
    shuffled = np.array([2, 0, 1, 3, 4, 5, 6, 7])
    obs = np.arange(8.0)[shuffled, None]
    (sorted_obs,), info = envs._in_env_order((obs,), {"env_id": shuffled, "x": shuffled * 10, "players": {}})
    assert np.array_equal(sorted_obs[:, 0], np.arange(8.0)) and np.array_equal(info["x"], np.arange(8) * 10)
    envs.close()


def test_spaces_and_dtypes_are_the_gymnasium_envs():
    for env_id in ("HalfCheetah-v5", "Pendulum-v1", "CartPole-v1"):
        pool = make_vector_env(env_id, 2, 0, "envpool")
        gymnasium_envs = make_vector_env(env_id, 2, 0, "sync")
        assert pool.single_observation_space == gymnasium_envs.single_observation_space
        assert pool.single_action_space == gymnasium_envs.single_action_space
        obs, _ = pool.reset(seed=0)
        reference, _ = gymnasium_envs.reset(seed=0)
        obs, reward, terminated, truncated, _ = pool.step(pool.action_space.sample())
        assert obs.dtype == reference.dtype and obs.shape == reference.shape
        assert (reward.dtype, terminated.dtype, truncated.dtype) == (np.float64, np.bool_, np.bool_)
        pool.close()
        gymnasium_envs.close()


def test_atari_runs_with_pgrads_preprocessing_spaces():
    pytest.importorskip("ale_py")
    pool = make_vector_env("ALE/Breakout-v5", 2, 0, "envpool", atari_training=True)
    reference = make_vector_env("ALE/Breakout-v5", 1, 0, "sync", atari_training=True)
    assert pool.single_observation_space == reference.single_observation_space
    assert pool.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert pool.single_action_space == reference.single_action_space
    assert pool._envpool_kwargs["episodic_life"] and pool._envpool_kwargs["reward_clip"]
    pool.reset(seed=0)
    obs = pool.step(np.ones(2, np.int64))[0]
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    pool.close()
    reference.close()


# ---------------------------------------------------------------- refusals


def _cartpole_with(**kwargs):
    return ConfiguredEnv("CartPole-v1", kwargs)


@pytest.mark.parametrize(
    ("env", "options", "message"),
    [
        ("pgrad/ContinuousCartPole-v0", {}, "does not run 'pgrad/ContinuousCartPole-v0'"),
        ("FrozenLake-v1", {}, "classic control, MuJoCo or ALE/ id"),
        ("ALE/NoSuchGame-v5", {"atari_training": True}, "EnvPool has no 'NoSuchGame-v5'"),
        (_cartpole_with(sutton_barto_reward=True), {}, "does not take env_kwargs ['sutton_barto_reward']"),
        ("Hopper-v5", {"xml_file": "hopper.xml"}, "does not take env_kwargs ['xml_file']"),
        (
            ConfiguredEnv("CartPole-v1", {}, parse_wrappers(["gymnasium.wrappers:ClipReward"])),
            {},
            "cannot apply wrappers",
        ),
        ("CartPole-v1", {"render_mode": "rgb_array"}, "does not render"),
        (lambda: gym.make("CartPole-v1"), {}, "builds envs from an id, not a function"),
        ("CartPole-v1", {"seed": 2**31}, "takes seeds from 0 to 2**31-2"),
        ("CartPole-v1", {"vector_kwargs": {"context": "spawn"}}, "takes vector_kwargs num_threads"),
    ],
)
def test_what_envpool_cannot_do_is_one_line(env, options, message):
    seed = options.pop("seed", 0)
    with pytest.raises(ConfigError) as error:
        make_vector_env(env, 2, seed, "envpool", **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_env_instance_is_refused():
    with pytest.raises(ConfigError, match="builds envs from an id, not a CartPoleEnv"):
        make_vector_env(gym.make("CartPole-v1").unwrapped, 1, 0, "envpool")


def test_without_envpool_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # what an import of a missing package raises
    with pytest.raises(ConfigError) as error:
        make_vector_env("CartPole-v1", 2, 0, "envpool")
    assert str(error.value) == "vectorization=envpool needs the envpool package: pip install 'pgrad[envpool]'"


def test_the_config_accepts_envpool_and_names_it_when_refusing_another():
    assert pgrad.PPO.Config.build({"vectorization": "envpool"}).vectorization == "envpool"
    with pytest.raises(ConfigError, match="envpool"):
        pgrad.PPO.Config.build({"vectorization": "ray"})
    with pytest.raises(ConfigError, match="accepted: sync, async, envpool"):
        make_vector_env("CartPole-v1", 2, 0, "threads")
