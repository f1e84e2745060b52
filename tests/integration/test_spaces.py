"""Every algorithm on every observation and action space pgrad encodes: trains, predicts, saves and
loads to the same actions, and runs the same twice with one seed. Learning checks at small budgets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.envs.spaces_demo import FindTheLightEnv, MatchBitsEnv, MatchDigitsEnv


class MatrixActionEnv(gym.Env):
    """A Box action of shape (2, 2): reward is minus the squared distance to a target matrix."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2, 2), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert np.shape(action) == (2, 2)
        self._t += 1
        reward = -float(np.sum((np.asarray(action) - np.array([[0.5, -0.5], [0.0, 0.25]])) ** 2))
        return np.zeros(2, np.float32), reward, False, self._t >= 5, {}


ENVS = [
    pytest.param(MatchDigitsEnv, id="dict-obs-multidiscrete-action"),
    pytest.param(MatchBitsEnv, id="multibinary"),
    pytest.param(lambda: FindTheLightEnv(size=6), id="image-obs"),
    pytest.param(lambda: FindTheLightEnv(size=6, channels_last=False, dtype="float32"), id="float-image-obs-chw"),
    pytest.param("Blackjack-v1", id="tuple-obs"),
    pytest.param(MatrixActionEnv, id="matrix-box-action"),
]

ALGORITHMS = [
    pytest.param(pgrad.PPO, dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2), id="ppo"),
    pytest.param(pgrad.A2C, dict(n_envs=2, n_steps=8), id="a2c"),
    pytest.param(pgrad.ActorCritic, dict(n_envs=2), id="actor-critic"),
    pytest.param(pgrad.Reinforce, dict(), id="reinforce"),
    pytest.param(pgrad.Reinforce, dict(baseline=True), id="reinforce-baseline"),
    pytest.param(pgrad.RecurrentPPO, dict(n_envs=2, n_steps=16, batch_size=16, n_epochs=2), id="ppo-lstm"),
]

SMALL_NETWORK = dict(hidden_sizes=(16,), cnn_features=16, preset="none")


def sample_observations(env_factory, count: int):
    """``count`` observations of a fresh env, and the same as one batch."""
    env = gym.make(env_factory) if isinstance(env_factory, str) else env_factory()
    rows = [env.reset(seed=i)[0] for i in range(count)]
    env.close()
    from pgrad.observations import stack_rows

    return rows, stack_rows(rows)


def actions_of(agent, rows) -> list[np.ndarray]:
    recurrent = getattr(agent, "recurrent", False)
    return [np.asarray(agent.predict(row)[0] if recurrent else agent.predict(row)) for row in rows]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("algorithm, settings", ALGORITHMS)
def test_trains_predicts_saves_and_repeats(tmp_path, algorithm, settings, env):
    agent = algorithm(env, seed=3, **settings, **SMALL_NETWORK)
    agent.learn(200)
    rows, batch = sample_observations(env, 4)
    actions = actions_of(agent, rows)
    for action in actions:
        assert agent.action_space.contains(
            np.asarray(action, dtype=agent.action_space.dtype).reshape(agent.action_space.shape)
        ), action
    batch_actions = agent.predict(batch)
    batch_actions = batch_actions[0] if getattr(agent, "recurrent", False) else batch_actions
    assert len(batch_actions) == 4

    agent.save(tmp_path / "run")
    loaded = pgrad.load(tmp_path / "run")
    for expected, got in zip(actions, actions_of(loaded, rows)):
        np.testing.assert_array_equal(expected, got)

    again = algorithm(env, seed=3, **settings, **SMALL_NETWORK)
    again.learn(200)
    for name, tensor in agent.policy.state_dict().items():
        torch.testing.assert_close(again.policy.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    agent.close()
    again.close()


def test_linear_policy_has_no_hidden_layer():
    agent = pgrad.PPO("pgrad/ContinuousCartPole-v0", hidden_sizes=(), preset="none")
    linear_layers = [m for m in agent.policy.actor_body.modules() if isinstance(m, torch.nn.Linear)]
    assert linear_layers == [] and agent.policy.head.loc.in_features == 4
    agent.learn(256)
    agent.close()


# -- learning ---------------------------------------------------------------------------------------

# Checked over seeds 0-4: MatchDigits reaches the optimal 8.0 by ~20k steps, MatchBits by ~12k.


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, steps",
    [("pgrad/MatchDigits-v0", 30_720), ("pgrad/MatchBits-v0", 20_480)],
    ids=["multidiscrete", "multibinary"],
)
def test_every_sub_action_right_after_a_small_budget(env_id, steps):
    agent = pgrad.PPO(env_id, seed=0, preset="none", n_envs=4, n_steps=64)
    agent.learn(steps)
    result = pgrad.evaluate(agent, env_id, episodes=20)
    assert result["mean_return"] >= 7.5, result  # optimal: 8 (every step right)
    agent.close()


@pytest.mark.slow
def test_minigrid_dict_observation_with_image_and_direction():
    """MiniGrid-Empty-5x5 (Dict: image, direction; the Text mission left out): PPO solves it.

    At these settings seeds 0-2 reach the optimal 0.955 by 30k steps and 3 of 4 others by 20k."""
    pytest.importorskip("minigrid")
    agent = pgrad.PPO(
        "MiniGrid-Empty-5x5-v0",
        seed=0,
        preset="none",
        n_envs=8,
        n_steps=128,
        batch_size=256,
        n_epochs=4,
        lr=1e-3,
        ent_coef=0.01,
        obs_keys=("image", "direction"),
        cnn_features=64,
    )
    agent.learn(30_000)
    result = pgrad.evaluate(agent, "MiniGrid-Empty-5x5-v0", episodes=20)
    assert result["mean_return"] >= 0.9, result
    agent.close()
