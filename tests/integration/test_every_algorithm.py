"""What every pgrad algorithm promises, checked once for all of them on tiny budgets:
the same seed gives the same numbers, save/load gives the same actions (normalisers included and
frozen in evaluation), and spaces no head handles are refused with the supported ones named.

Algorithm-specific behaviour (the loss, the optimisers, the options) is tested in each
algorithm's own file."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.errors import UnsupportedSpaceError

# (class, tiny settings, steps for the determinism test); each budget spans several updates
ALGORITHMS = [
    pytest.param(pgrad.PPO, dict(n_envs=2, n_steps=64, batch_size=32, n_epochs=2), 384, id="ppo"),
    pytest.param(pgrad.A2C, dict(n_envs=2, n_steps=8), 400, id="a2c"),
    pytest.param(pgrad.ActorCritic, dict(n_envs=2), 200, id="actor-critic"),
    pytest.param(pgrad.Reinforce, dict(), 600, id="reinforce"),
    pytest.param(pgrad.Reinforce, dict(baseline=True), 600, id="reinforce-baseline"),
]


def metrics_without_time(agent) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in agent.logger.metrics]


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_same_seed_same_numbers(algorithm, settings, steps, env_id):
    runs = []
    for _ in range(2):
        agent = algorithm(env_id, seed=3, preset="none", **settings)
        agent.learn(steps, quiet=True)
        runs.append((metrics_without_time(agent), [p.detach().clone() for p in agent.policy.parameters()]))
        agent.close()
    (metrics_a, params_a), (metrics_b, params_b) = runs
    assert len(metrics_a) >= 2
    assert json.dumps(metrics_a) == json.dumps(metrics_b)
    for a, b in zip(params_a, params_b, strict=True):
        assert torch.equal(a, b)
    other = algorithm(env_id, seed=4, preset="none", **settings)
    other.learn(steps, quiet=True)
    assert json.dumps(metrics_without_time(other)) != json.dumps(metrics_a)
    other.close()


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
@pytest.mark.parametrize("env_id, overrides", [("CartPole-v1", {}), ("Pendulum-v1", {"action_dist": "truncated_normal"})])
def test_save_load_round_trip_gives_identical_actions(algorithm, settings, steps, env_id, overrides, tmp_path):
    scale_rewards = {"normalize_reward": True} if "normalize_reward" in algorithm.Config.__dataclass_fields__ else {}
    agent = algorithm(env_id, seed=0, preset="none", normalize_obs=True, **scale_rewards, **settings, **overrides)
    agent.learn(steps, quiet=True)
    agent.save(tmp_path)
    loaded = pgrad.load(tmp_path)
    assert type(loaded) is algorithm and loaded.name == agent.name
    assert loaded.config == agent.config
    rng = np.random.default_rng(0)
    observations = np.stack([agent.observation_space.sample() for _ in range(50)])
    observations = observations + rng.normal(size=observations.shape)
    np.testing.assert_array_equal(agent.predict(observations), loaded.predict(observations))
    np.testing.assert_array_equal(agent.predict(observations[0]), loaded.predict(observations[0]))
    if agent.policy.critic is not None:
        as_tensor = torch.as_tensor(observations, dtype=torch.float32)
        assert torch.equal(agent.policy.value(as_tensor), loaded.policy.value(as_tensor))
    # the normaliser statistics travelled with the weights ...
    stats = loaded.policy.obs_normalizer.stats
    assert torch.equal(agent.policy.obs_normalizer.stats.mean, stats.mean) and stats.count.item() > 1
    if scale_rewards:
        assert torch.equal(agent.policy.reward_scaler.stats.var, loaded.policy.reward_scaler.stats.var)
        assert loaded.policy.reward_scaler.stats.count.item() > 1
    # ... and stay frozen in evaluation
    before = stats.mean.clone()
    pgrad.evaluate(loaded, env_id, episodes=1)
    assert torch.equal(before, stats.mean)
    agent.close()


class MultiBinaryActionEnv(gym.Env):
    """An env whose action space (MultiBinary) no pgrad policy head handles."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.MultiBinary(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {}


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
def test_unsupported_spaces_name_what_is_supported(algorithm, settings, steps):
    with pytest.raises(UnsupportedSpaceError, match=r"MultiBinary.*supported: Discrete \(categorical\) and 1-D Box"):
        algorithm(MultiBinaryActionEnv, preset="none", **settings)
    with pytest.raises(UnsupportedSpaceError, match="categorical.*Discrete"):
        algorithm("Pendulum-v1", preset="none", action_dist="categorical", **settings)
    with pytest.raises(UnsupportedSpaceError, match="supported"):
        algorithm("Blackjack-v1", preset="none", **settings)  # Tuple observation space
