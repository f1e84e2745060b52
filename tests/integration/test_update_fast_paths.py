"""Update fast paths (fused Adam, multi-tensor RMSprop, foreach clipping, one gather per epoch,
unvalidated distributions) must train as the plain per-minibatch loops with the default optimisers do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pgrad
from pgrad.losses import clipped_surrogate_loss, value_loss
from pgrad.returns import gae


def _plain_iteration(agent: pgrad.PPO, progress_remaining: float) -> None:
    """PPO.train_iteration as written before the fast path: index every tensor per minibatch."""
    c = agent.config
    for group in agent.optimizer.param_groups:
        group["lr"] = c.lr * progress_remaining if c.anneal_lr else c.lr
    rollout, _ = agent.collector.collect(c.n_steps)
    advantages, returns = gae(
        rollout.rewards,
        rollout.values,
        rollout.next_values,
        rollout.terminated,
        rollout.truncated,
        gamma=c.gamma,
        lam=c.gae_lambda,
    )
    valid = rollout.valid.reshape(-1)
    b_obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])[valid]
    b_actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[valid]
    b_log_probs, b_values = rollout.log_probs.reshape(-1)[valid], rollout.values.reshape(-1)[valid]
    b_advantages, b_returns = advantages.reshape(-1)[valid], returns.reshape(-1)[valid]
    batch_size = b_obs.shape[0]
    for _ in range(c.n_epochs):
        for mb_index in np.array_split(agent.rng.permutation(batch_size), max(1, round(batch_size / c.batch_size))):
            mb_index = torch.from_numpy(mb_index)
            dist = agent.policy.distribution(b_obs[mb_index])
            mb_advantages = b_advantages[mb_index]
            mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            policy_loss, _ = clipped_surrogate_loss(
                dist.log_prob(b_actions[mb_index]), b_log_probs[mb_index], mb_advantages, c.clip_coef
            )
            critic_loss, _ = value_loss(agent.policy.value(b_obs[mb_index]), b_returns[mb_index], b_values[mb_index])
            loss = policy_loss + c.vf_coef * critic_loss - c.ent_coef * dist.entropy().mean()
            agent.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.policy.parameters(), c.max_grad_norm, foreach=False)
            agent.optimizer.step()


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", dict(n_envs=2, n_steps=64, batch_size=24, n_epochs=3, ent_coef=0.01)),  # uneven minibatches
        ("Pendulum-v1", dict(n_envs=1, n_steps=128, batch_size=32, n_epochs=2, normalize_obs=True)),
    ],
)
def test_fast_update_matches_plain_loop(env_id, overrides):
    fast = pgrad.PPO(env_id, seed=3, preset=None, **overrides)
    plain = pgrad.PPO(env_id, seed=3, preset=None, **overrides)
    assert fast.optimizer.defaults["fused"]
    plain.optimizer = torch.optim.Adam(
        plain.policy.parameters(), lr=plain.config.lr, eps=plain.config.adam_eps, foreach=False, fused=False
    )
    for agent in (fast, plain):
        agent._ensure_collector()
    for iteration, remaining in enumerate((1.0, 0.5)):
        torch.manual_seed(100 + iteration)  # both sample their rollouts from the same stream
        fast.train_iteration(remaining)
        torch.manual_seed(100 + iteration)
        _plain_iteration(plain, remaining)
        for (name, a), b in zip(fast.policy.state_dict().items(), plain.policy.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"iteration {iteration}: {name}")
    for a, b in zip(fast.optimizer.state_dict()["state"].values(), plain.optimizer.state_dict()["state"].values()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-7)
    fast.close()
    plain.close()


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_a2c_fast_update_matches_autograd_and_the_per_parameter_loop(optimizer):
    fast = pgrad.A2C("Pendulum-v1", seed=1, preset=None, optimizer=optimizer)
    plain = pgrad.A2C("Pendulum-v1", seed=1, preset=None, optimizer=optimizer)
    c = plain.config
    plain.optimizer = (
        torch.optim.RMSprop(
            plain.policy.parameters(), lr=c.lr, alpha=c.rmsprop_alpha, eps=c.optimizer_eps, foreach=False
        )
        if optimizer == "rmsprop"
        else torch.optim.Adam(plain.policy.parameters(), lr=c.lr, eps=c.optimizer_eps, foreach=False, fused=False)
    )
    plain.use_numpy_gradient = False  # autograd and the per-parameter optimiser against both fast paths
    torch.manual_seed(7)  # the global stream was re-seeded by the second constructor
    fast.learn(200, quiet=True)
    torch.manual_seed(7)
    plain.learn(200, quiet=True)
    for (name, a), b in zip(fast.policy.state_dict().items(), plain.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    fast.close()
    plain.close()


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", dict(n_envs=4, ent_coef=0.01, max_grad_norm=0.5, gamma_weighting=True)),
        ("CartPole-v1", dict(n_envs=1, autoreset_mode="next_step")),  # reset steps: updates without transitions
        ("CartPole-v1", dict(n_envs=3, optimizer="sgd", lr=0.01, value_lr=0.03)),  # torch's SGD on the numpy gradient
        ("Pendulum-v1", dict(n_envs=2, normalize_obs=True, ent_coef=0.001, max_grad_norm=1.0)),
    ],
)
def test_actor_critic_numpy_update_matches_autograd(env_id, overrides):
    """One-step actor-critic's numpy update (gradient and both Adam steps in numpy, metrics
    without .item()) trains as the autograd update with torch's per-parameter optimisers."""
    fast = pgrad.ActorCritic(env_id, seed=2, preset=None, **overrides)
    plain = pgrad.ActorCritic(env_id, seed=2, preset=None, **overrides)
    plain.use_numpy_gradient = False
    torch.manual_seed(5)  # the second constructor re-seeded the global stream the rollouts sample from
    fast.learn(300, quiet=True)
    torch.manual_seed(5)
    plain.learn(300, quiet=True)
    assert fast._numpy_gradient is not None and plain._numpy_gradient is None  # each ran the path meant
    for (name, a), b in zip(fast.policy.state_dict().items(), plain.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for optimizer in ("actor", "critic"):
        fast_state = fast.optimizers()[optimizer].state_dict()["state"].values()
        plain_state = plain.optimizers()[optimizer].state_dict()["state"].values()
        for a, b in zip(fast_state, plain_state, strict=True):
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-7, msg=f"{optimizer} {key}")
    assert len(fast.logger.metrics) == len(plain.logger.metrics)
    for fast_row, plain_row in zip(fast.logger.metrics, plain.logger.metrics):
        assert list(fast_row) == list(plain_row)  # the same columns, in the same order
        for key in fast_row.keys() - {"wall_time", "sps"}:
            assert fast_row[key] == pytest.approx(plain_row[key], rel=1e-4, abs=1e-5, nan_ok=True), key
    fast.close()
    plain.close()
