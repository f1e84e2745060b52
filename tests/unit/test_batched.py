"""Seed-batched networks and maths (pgrad/batched.py) against S ordinary single-seed ones."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.batched import (
    SeedBatchedActorCritic,
    per_seed_grad_norm_clip_,
    seed_batched_clipped_surrogate_loss,
    seed_batched_value_loss,
)
from pgrad.errors import ConfigError
from pgrad.losses import clipped_surrogate_loss, normalize_advantages, value_loss
from pgrad.policy import ActorCriticPolicy

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
KINDS = {
    "categorical": dict(action_space=gym.spaces.Discrete(3)),
    "gaussian": dict(action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32), log_std_init=-0.5),
    "gaussian-state-std-relu": dict(
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32), state_dependent_std=True, activation="relu"
    ),
    "truncated-normal": dict(
        action_space=gym.spaces.Box(-2.0, 2.0, (3,), np.float32), action_dist="truncated_normal", hidden_sizes=(16, 8)
    ),
}


def make_policies(kind: str, seeds=(1, 2, 3)) -> list[ActorCriticPolicy]:
    options = dict(KINDS[kind])
    action_space = options.pop("action_space")
    policies = []
    for seed in seeds:
        torch.manual_seed(seed)  # as Algorithm.__init__ seeds before building the policy
        policies.append(ActorCriticPolicy(OBS, action_space, **options))
    return policies


def actions_for(policies, obs):
    """One sampled action per observation and seed, (S, B, ...)."""
    with torch.no_grad():
        return torch.stack([p.distribution(obs[s]).sample() for s, p in enumerate(policies)])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forward_equals_each_seeds_own_policy(kind):
    policies = make_policies(kind)
    model = SeedBatchedActorCritic.from_policies(policies)
    obs = torch.randn(3, 7, 5)  # (S, B, obs)
    actions = actions_for(policies, obs)
    dist = model.distribution(obs)
    log_probs, entropy, values = dist.log_prob(actions), dist.entropy(), model.value(obs)
    assert log_probs.shape == entropy.shape == values.shape == (3, 7)
    for s, policy in enumerate(policies):
        own = policy.distribution(obs[s])
        torch.testing.assert_close(log_probs[s], own.log_prob(actions[s]), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(entropy[s], own.entropy(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(values[s], policy.value(obs[s]), atol=1e-6, rtol=1e-6)
    # the seeds really are different networks (independent initialisations)
    assert not torch.allclose(values[0], values[1])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_copy_to_gives_ordinary_policies_with_the_batched_weights(kind):
    model = SeedBatchedActorCritic.from_policies(make_policies(kind))
    with torch.no_grad():  # move every weight, as training would
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    fresh = make_policies(kind, seeds=(7, 8, 9))
    model.copy_to(fresh)
    obs = torch.randn(3, 4, 5)
    actions = actions_for(fresh, obs)
    dist = model.distribution(obs)
    for s, policy in enumerate(fresh):
        torch.testing.assert_close(
            dist.log_prob(actions)[s], policy.distribution(obs[s]).log_prob(actions[s]), atol=1e-6, rtol=1e-6
        )
        torch.testing.assert_close(model.value(obs)[s], policy.value(obs[s]), atol=1e-6, rtol=1e-6)
    # and stacking them again gives back the same parameters
    for restacked, original in zip(SeedBatchedActorCritic.from_policies(fresh).parameters(), model.parameters()):
        torch.testing.assert_close(restacked, original, atol=0, rtol=0)


def test_policies_of_different_architectures_are_refused():
    policies = make_policies("gaussian")
    torch.manual_seed(0)
    policies[1] = ActorCriticPolicy(OBS, policies[0].action_space, hidden_sizes=(32,))
    with pytest.raises(ConfigError, match="one architecture"):
        SeedBatchedActorCritic.from_policies(policies)


def test_per_seed_grad_clip_equals_torch_clip_per_seed():
    grads = [torch.randn(3, 4, 5), torch.randn(3, 4), torch.randn(3, 2) * 1e-3]
    for g in grads:
        g[1] *= 1e-3  # seed 1 below the threshold: left alone
    parameters = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(parameters, grads):
        p.grad = g.clone()
    norms = per_seed_grad_norm_clip_(parameters, max_norm=0.5)
    for s in range(3):
        own = [torch.zeros_like(g[s], requires_grad=True) for g in grads]
        for p, g in zip(own, grads):
            p.grad = g[s].clone()
        own_norm = torch.nn.utils.clip_grad_norm_(own, 0.5)
        torch.testing.assert_close(norms[s], own_norm, atol=1e-6, rtol=1e-6)
        for p, o in zip(parameters, own):
            torch.testing.assert_close(p.grad[s], o.grad, atol=1e-7, rtol=1e-6)
    assert norms[1] < 0.5 < norms[0]


@pytest.mark.parametrize("fused", [True, False])
def test_one_adam_over_stacked_parameters_is_one_adam_per_seed(fused):
    # Adam is elementwise (Kingma & Ba 2015, Algorithm 1) and the seeds step together, so stacking
    # the parameters cannot change any seed's trajectory; only float rounding may differ.
    torch.manual_seed(0)
    shapes = [(4, 5), (4,), (2,)]
    stacked = [torch.randn(3, *shape, requires_grad=True) for shape in shapes]
    own = [[p[s].detach().clone().requires_grad_(True) for p in stacked] for s in range(3)]
    stacked_adam = torch.optim.Adam(stacked, lr=1e-2, eps=1e-5, fused=fused)
    own_adams = [torch.optim.Adam(params, lr=1e-2, eps=1e-5, fused=fused) for params in own]
    for step in range(20):
        grads = [torch.randn(3, *shape) * (1 + step) for shape in shapes]
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        stacked_adam.step()
        for s in range(3):
            for p, g in zip(own[s], grads):
                p.grad = g[s].clone()
            own_adams[s].step()
    for s in range(3):
        for p, o in zip(stacked, own[s]):
            torch.testing.assert_close(p[s], o, atol=1e-6, rtol=1e-6)


def test_seed_batched_losses_equal_the_single_seed_losses():
    torch.manual_seed(0)
    log_probs, old_log_probs = torch.randn(3, 16) * 0.3, torch.randn(3, 16) * 0.3
    advantages, values, returns, old_values = (torch.randn(3, 16) for _ in range(4))
    normalized = normalize_advantages(advantages)  # over the last axis: each seed's own minibatch
    loss, metrics = seed_batched_clipped_surrogate_loss(log_probs, old_log_probs, normalized, 0.2)
    v_loss, v_metrics = seed_batched_value_loss(values, returns, old_values, 0.2)
    for s in range(3):
        own_adv = (advantages[s] - advantages[s].mean()) / (advantages[s].std() + 1e-8)
        torch.testing.assert_close(normalized[s], own_adv)
        own_loss, own_metrics = clipped_surrogate_loss(log_probs[s], old_log_probs[s], own_adv, 0.2)
        torch.testing.assert_close(loss[s], own_loss)
        for key in ("approx_kl", "clip_fraction"):
            assert metrics[key][s].item() == pytest.approx(own_metrics[key], abs=1e-6)
        own_v_loss, _ = value_loss(values[s], returns[s], old_values[s], 0.2)
        torch.testing.assert_close(v_loss[s], own_v_loss)
    assert 0.0 < metrics["clip_fraction"].max().item() < 1.0  # the clip was exercised
