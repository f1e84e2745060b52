"""A2C end to end on tiny budgets: every action-space kind, determinism, save/load, CLI, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pgrad
from pgrad.errors import ConfigError

TINY = dict(n_steps=8, n_envs=2)


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", {"optimizer": "adam", "anneal_lr": True, "normalize_advantage": True, "gae_lambda": 0.95}),
        ("CartPole-v1", {"autoreset_mode": "next_step"}),  # reset steps are dropped from the batch
    ],
)
def test_options_smoke(env_id, overrides, tmp_path):
    agent = pgrad.A2C(env_id, seed=0, preset="none", **{**TINY, **overrides})
    agent.learn(256, run_dir=tmp_path, quiet=True)
    rollout = agent.config.n_steps * agent.config.n_envs
    assert 256 <= agent.total_steps < 256 + rollout  # at least the budget, rounded up to whole rollouts
    assert agent.updates >= 256 // (
        TINY["n_steps"] * TINY["n_envs"]
    )  # more under next_step: reset steps are not counted
    action = agent.predict(agent.observation_space.sample())
    assert agent.action_space.contains(action)
    row = agent.logger.metrics[-1]
    for key in ("policy_loss", "value_loss", "entropy", "grad_norm", "explained_variance", "lr"):
        assert key in row, key
    assert np.isfinite(row["policy_loss"]) and np.isfinite(row["value_loss"])
    agent.save(tmp_path)
    for name in ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoint" / "state.safetensors").is_file()
    agent.close()


def test_defaults_are_stable_baselines3s():
    """SB3 A2C defaults (stable_baselines3/a2c/a2c.py), which the module doc cites."""
    c = pgrad.A2C.Config()
    assert (c.n_steps, c.lr, c.gamma, c.gae_lambda, c.ent_coef, c.vf_coef, c.max_grad_norm) == (
        5,
        7e-4,
        0.99,
        1.0,
        0.0,
        0.5,
        0.5,
    )
    assert (c.optimizer, c.rmsprop_alpha, c.optimizer_eps, c.normalize_advantage, c.anneal_lr) == (
        "rmsprop",
        0.99,
        1e-5,
        False,
        False,
    )
    agent = pgrad.A2C("CartPole-v1", preset="none")
    assert isinstance(agent.optimizer, torch.optim.RMSprop)
    assert agent.optimizer.defaults["alpha"] == 0.99 and agent.optimizer.defaults["eps"] == 1e-5
    agent.close()


def test_anneal_lr_decays_linearly_to_zero():
    agent = pgrad.A2C("CartPole-v1", seed=0, preset="none", anneal_lr=True, lr=1e-3, **TINY)
    agent.learn(160, quiet=True)  # 10 updates of 16 transitions
    lrs = [row["lr"] for row in agent.logger.metrics]
    np.testing.assert_allclose(lrs, [1e-3 * (1 - k / 10) for k in range(10)])
    agent.close()


def test_checkpoint_restores_the_rmsprop_state(tmp_path):
    agent = pgrad.A2C("CartPole-v1", seed=0, preset="none", **TINY)
    agent.learn(160, quiet=True)
    agent.save_checkpoint(tmp_path / "checkpoint")
    fresh = pgrad.A2C("CartPole-v1", seed=0, preset="none", **TINY)
    fresh.load_checkpoint_state(tmp_path / "checkpoint")
    assert fresh.total_steps == agent.total_steps and fresh.updates == agent.updates
    for p_saved, p_loaded in zip(agent.policy.parameters(), fresh.policy.parameters()):
        assert torch.equal(agent.optimizer.state[p_saved]["square_avg"], fresh.optimizer.state[p_loaded]["square_avg"])
    agent.close()
    fresh.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optimizer": "sgd"}, "optimizer='sgd' is out of range: must be one of 'rmsprop', 'adam'"),
        ({"n_steps": 0}, "n_steps=0 is out of range"),
        ({"gae_lambda": 1.5}, "gae_lambda=1.5 is out of range"),
        ({"rmsprop_alpha": 1.0}, "rmsprop_alpha=1.0 is out of range"),
        ({"clip_coef": 0.2}, "unknown hyperparameter 'clip_coef'"),
    ],
)
def test_bad_hyperparameters_fail_before_work(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        pgrad.A2C("CartPole-v1", preset="none", **overrides)
