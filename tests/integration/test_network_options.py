"""The network's shape and stabilisers from the config: pi/vf widths, a shared trunk, LayerNorm,
a fixed std, a separate critic learning rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pgrad
from pgrad.errors import ConfigError

TINY = dict(preset="none", n_envs=2, n_steps=64, batch_size=64, n_epochs=2)


def linear_widths(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_separate_widths_for_actor_and_critic():
    agent = pgrad.PPO("CartPole-v1", pi_hidden_sizes=(32,), vf_hidden_sizes=(16, 8), **TINY)
    assert linear_widths(agent.policy.actor_body) == [(4, 32)]
    assert linear_widths(agent.policy.critic) == [(4, 16), (16, 8), (8, 1)]
    assert agent.policy.trunk is None and agent.fast_path_problem() is None  # the numpy twin covers it
    agent.learn(128, quiet=True)
    agent.close()


def test_shared_trunk_then_own_layers(tmp_path):
    agent = pgrad.PPO("CartPole-v1", share_trunk=True, hidden_sizes=(32, 32), vf_hidden_sizes=(16,), **TINY)
    assert linear_widths(agent.policy.trunk) == [(4, 32), (32, 32)]
    assert linear_widths(agent.policy.actor_body) == [] and linear_widths(agent.policy.critic) == [(32, 16), (16, 1)]
    assert "shared trunk" in agent.fast_path_problem()
    before = agent.policy.trunk[0].weight.detach().clone()
    agent.learn(256, quiet=True)
    assert not torch.equal(before, agent.policy.trunk[0].weight)  # the trunk learns
    agent.save(tmp_path / "run")
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_array_equal(pgrad.load(tmp_path / "run").predict(obs), agent.predict(obs))
    agent.close()


def test_layer_norm_after_each_hidden_layer():
    agent = pgrad.A2C("CartPole-v1", layer_norm=True, preset="none")
    norms = [m for m in agent.policy.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 4  # two hidden layers in the actor and two in the critic
    assert "LayerNorm" in agent.fast_path_problem()
    agent.learn(200, quiet=True)
    agent.close()


def test_fixed_std_never_moves_and_needs_a_state_independent_std():
    agent = pgrad.PPO("Pendulum-v1", trainable_std=False, log_std_init=-0.5, **TINY)
    agent.learn(256, quiet=True)
    torch.testing.assert_close(agent.policy.head.std.log_std, torch.full((1,), -0.5))
    assert "log_std" not in dict(agent.policy.named_parameters()) and "head.std.log_std" in agent.policy.state_dict()
    agent.close()
    with pytest.raises(ConfigError, match="trainable_std=false needs a state-independent std"):
        pgrad.PPO("Pendulum-v1", trainable_std=False, state_dependent_std=True, **TINY)
    with pytest.raises(ConfigError, match="trainable_std=false applies to continuous"):
        pgrad.PPO("CartPole-v1", trainable_std=False, **TINY)


@pytest.mark.parametrize("algorithm", [pgrad.PPO, pgrad.A2C, pgrad.RecurrentPPO])
def test_critic_learning_rate_of_its_own_annealed_with_the_actor_one(algorithm):
    settings = dict(preset="none", n_envs=2, vf_lr=1e-3, lr=2e-4, anneal_lr=True)
    if algorithm is not pgrad.A2C:
        settings.update(n_steps=64, batch_size=64)
    env = "pgrad/CartPoleNoVel-v1" if algorithm is pgrad.RecurrentPPO else "CartPole-v1"
    agent = algorithm(env, **settings)
    actor_group, critic_group = agent.optimizer.param_groups
    critic_ids = {id(p) for name, p in agent.policy.named_parameters() if name.startswith(("critic.", "critic_lstm."))}
    assert {id(p) for p in critic_group["params"]} == critic_ids
    agent.learn(256, quiet=True)
    assert critic_group["lr"] / actor_group["lr"] == pytest.approx(5.0)
    assert critic_group["lr"] < 1e-3  # annealed
    agent.close()


def test_same_learning_rates_keep_one_group():
    agent = pgrad.PPO("CartPole-v1", vf_lr=3e-4, lr=3e-4, **TINY)
    assert len(agent.optimizer.param_groups) == 1
    agent.close()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("share_trunk=true", "seed batching does not support share_trunk"),
        ("layer_norm=true", "seed batching does not support layer_norm"),
        ("vf_lr=5e-3", "separate critic learning rate"),
    ],
)
def test_seed_batching_says_what_it_does_not_support(tmp_path, capsys, setting, message):
    from pgrad.cli import main

    argv = ["train", "ppo", "CartPole-v1", "--seeds", "0", "1", "--batched", "--steps", "128", "--quiet"]
    argv += ["--set", setting, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# -- the target critic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm, settings",
    [
        (pgrad.PPO, dict(n_envs=2, n_steps=32, batch_size=32)),
        (pgrad.A2C, dict(n_envs=2, n_steps=8)),
        (pgrad.ActorCritic, dict(n_envs=2)),
    ],
)
def test_bootstrap_values_come_from_the_target_critic(algorithm, settings):
    agent = algorithm("Pendulum-v1", preset="none", target_critic="hard", target_period=1000, **settings)
    trained = {id(p) for optimizer in agent.optimizers().values() for g in optimizer.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in agent.policy.target.parameters()}  # no optimiser steps the target
    agent.learn(64, quiet=True)  # the online critic moves away from the target
    agent._ensure_collector()
    n_steps = settings.get("n_steps", 1)
    rollout, _ = agent.collector.collect(n_steps)
    with torch.no_grad():
        stored = rollout.obs.reshape(-1, agent.policy.obs_size)
        target_values = agent.policy.bootstrap_value(stored).reshape(rollout.values.shape)
        online_values = agent.policy.value(stored).reshape(rollout.values.shape)
    if n_steps > 1:  # V(s_{t+1}) of the stored next observations (Pendulum never terminates early)
        torch.testing.assert_close(rollout.next_values[:-1], target_values[1:])
        assert not torch.allclose(rollout.next_values[:-1], online_values[1:])
    torch.testing.assert_close(rollout.values, online_values)  # V(s_t), the baseline, stays online
    agent.close()


def test_hard_copies_every_period_and_polyak_moves_by_tau():
    agent = pgrad.A2C("CartPole-v1", preset="none", target_critic="hard", target_period=3)
    agent.learn(2 * 5, quiet=True)  # two updates: no copy yet
    assert not torch.equal(agent.policy.target["critic"][0].weight, agent.policy.critic[0].weight)
    agent.learn(5, quiet=True)  # the third update copies
    torch.testing.assert_close(agent.policy.target["critic"][0].weight, agent.policy.critic[0].weight, rtol=0, atol=0)
    agent.close()
    polyak = pgrad.A2C("CartPole-v1", preset="none", target_critic="polyak", target_tau=0.25)
    before = polyak.policy.target["critic"][0].weight.clone()
    polyak.learn(5, quiet=True)
    expected = before + 0.25 * (polyak.policy.critic[0].weight - before)
    torch.testing.assert_close(polyak.policy.target["critic"][0].weight, expected)
    polyak.close()


def test_target_critic_is_refused_where_it_is_not_built():
    with pytest.raises(ConfigError, match="ppo-lstm does not support a target critic"):
        pgrad.RecurrentPPO("pgrad/CartPoleNoVel-v1", preset="none", target_critic="hard")
    with pytest.raises(ConfigError, match="ppo-lstm shares its recurrent torso with shared_lstm=true"):
        pgrad.RecurrentPPO("pgrad/CartPoleNoVel-v1", preset="none", share_trunk=True)
    with pytest.raises(ConfigError, match="unknown hyperparameter 'target_critic'"):
        pgrad.Reinforce("CartPole-v1", preset="none", target_critic="hard")
