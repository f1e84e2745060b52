"""PPO end to end on tiny budgets: every action-space kind, determinism, save/load, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import pgrad
from pgrad.errors import ConfigError, NonFiniteError, PolicyFileError

TINY = dict(n_steps=64, batch_size=32, n_epochs=2)


def test_corrupted_or_missing_policy_is_detected_not_unpickled(tmp_path):
    agent = pgrad.PPO("CartPole-v1", seed=0, preset="none", **TINY)
    agent.save(tmp_path)
    with pytest.raises(PolicyFileError, match="not found|no saved policy"):
        pgrad.load(tmp_path / "nothing-here")
    weights = tmp_path / "policy.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the tensor data, past the safetensors header
    weights.write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match="corrupted"):
        pgrad.load(tmp_path)
    weights.write_bytes(b"\x80\x04garbage that looks like a pickle")
    with pytest.raises(PolicyFileError, match="corrupted"):
        pgrad.load(tmp_path)
    (tmp_path / "policy.json").write_text("{not json")
    with pytest.raises(PolicyFileError, match="corrupted"):
        pgrad.load(tmp_path)
    agent.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr": -1e-3}, "lr=-0.001 is out of range"),
        ({"gamma": 1.5}, "gamma=1.5 is out of range"),
        ({"clip_coef": 0.0}, "clip_coef=0.0 is out of range"),
        ({"n_envs": "two"}, "n_envs='two' is not a valid int"),
        ({"learning_rate": 1e-3}, "unknown hyperparameter 'learning_rate'.*valid keys: n_envs"),
        ({"batch_size": 10_000, "n_steps": 64}, "batch_size=10000 is larger than a rollout"),
        ({"activation": "sigmoid"}, "activation='sigmoid' is out of range: must be one of 'tanh'"),
    ],
)
def test_bad_hyperparameters_fail_before_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        pgrad.PPO("CartPole-v1", preset="none", **overrides)


class NaNAfterEnv:
    """A CartPole that starts returning NaN observations after a number of steps."""

    def __new__(cls, after: int = 300):
        import gymnasium as gym

        class _Wrapper(gym.Wrapper):
            def __init__(self):
                super().__init__(gym.make("CartPole-v1"))
                self.count = 0

            def step(self, action):
                obs, reward, terminated, truncated, info = self.env.step(action)
                self.count += 1
                if self.count > after:
                    obs = obs * np.nan
                return obs, reward, terminated, truncated, info

        return _Wrapper()


def test_nan_from_env_stops_with_step_number_and_keeps_checkpoint(tmp_path):
    agent = pgrad.PPO(NaNAfterEnv, seed=0, preset="none", **TINY)
    with pytest.raises(NonFiniteError, match=r"non-finite observation .* at step 301"):
        agent.learn(2_000, run_dir=tmp_path, quiet=True, checkpoint_seconds=0.0)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["total_steps"] == 256  # the last whole update before the bad step
    assert not math.isnan(state["wall_seconds"])
    agent.close()
