"""REINFORCE: Monte-Carlo policy gradient, with or without a learned state-value baseline.

Williams (1992), "Simple Statistical Gradient-Following Algorithms for Connectionist
Reinforcement Learning", Machine Learning 8:229-256; Sutton & Barto (2018), "Reinforcement
Learning: An Introduction", 2nd ed., sec. 13.3 (REINFORCE), 13.4 (with baseline) and 13.7
(continuous actions: a Gaussian policy, or here also a TruncatedNormal on the action bounds).

The policy-gradient theorem (Sutton & Barto eq. 13.5-13.8) turns the gradient of the
performance into an expectation over episodes the current policy generates:

    grad J(theta) = E[ sum_t gamma^t (G_t - b(S_t)) grad log pi(A_t | S_t, theta) ]
    G_t = r_t + gamma r_{t+1} + ... + gamma^(T-1-t) r_{T-1}        (the return from step t)

(pgrad's ``r_t`` is the reward that follows action ``A_t``, the book's ``R_{t+1}``). Any baseline
``b`` that does not depend on the action leaves the expectation unchanged and, well chosen, lowers
its variance (Williams 1992, sec. 4; Greensmith, Bartlett & Baxter 2004, "Variance Reduction
Techniques for Gradient Estimates in Reinforcement Learning", JMLR 5, sec. 5: a state-value
baseline is close to the variance-minimising one). Each update:

1. collect ``episodes_per_update`` complete episodes (and at least ``min_steps_per_update``
   transitions) with the current policy: the Monte-Carlo return needs every reward to the end;
2. compute ``G_t`` per episode with :func:`pgrad.returns.discounted_returns`;
3. weight each step with ``psi_t = G_t - b(S_t)`` (``b = V`` detached with a baseline, 0
   without), normalised over the batch if ``normalize_returns``, times ``gamma^t`` if
   ``gamma_weighting``, and take one Adam step (``lr``) on

       L_pi = -(1/B) sum_t psi_t log pi(A_t | S_t) - ent_coef * (1/B) sum_t H[pi(. | S_t)]

   over the B steps of the batch;
4. with a baseline, take ``value_steps`` Adam steps (``value_lr``) on its own network, each
   minimising ``(1/B) sum_t (V(S_t) - G_t)^2`` over the whole batch (Sutton & Barto's ``w``
   update in sec. 13.4, as a batch; Spinning Up's VPG fits its baseline with 80 such steps).

Choices, and why:

- **Time limits.** With a baseline, an episode cut by a time limit bootstraps its last return
  with V(final observation), as PPO and A2C do (Pardo et al. 2018, "Time Limits in Reinforcement
  Learning", sec. 3). Without a critic there is nothing to bootstrap with: a truncated episode's
  returns are the rewards seen until the cut, which underestimates states near the limit.
- **gamma^t off by default.** The book's pseudo-code keeps the ``gamma^t`` factor, which makes
  the update the gradient of the discounted value of the start state. Most implementations drop
  it (PyTorch's examples/reinforcement_learning/reinforce.py, Spinning Up's VPG, the A2C/PPO
  line): with it the steps late in long episodes get almost no weight (``0.99^400 ~ 0.02``), so
  late-episode behaviour is barely learnt. Without it the update is not the gradient of any
  objective (Nota & Thomas 2020, "Is the Policy Gradient a Gradient?", AAMAS), but it is what
  practice uses and it learns the whole episode. ``gamma_weighting=true`` restores the book's.
- **Normalisation.** ``normalize_returns`` standardises the per-step weights of a batch: the
  returns without a baseline (subtracting their mean then acts as a constant baseline, as in
  PyTorch's example), the advantages ``G_t - V(S_t)`` with one. The baseline itself always
  regresses on the raw returns.
- **Mean over steps, not a sum.** The book sums over the steps of an episode; pgrad averages over
  all steps of the batch, which divides the gradient by the batch length. Adam removes most of a
  constant scale anyway, and the mean keeps the step size comparable while episodes grow from 10
  to 500 steps during training.
- **Separate optimisers.** The value network is a separate MLP with its own Adam and learning
  rate, as in Sutton & Barto's two step sizes ``alpha^theta`` and ``alpha^w``.
- **Whole episodes and the budget.** Collection (:meth:`RolloutCollector.collect_episodes`)
  returns complete episodes only and stops at the ``learn`` budget even mid-episode; the running
  episode continues in the next ``learn`` call. If a whole budget passes without any episode
  ending, training stops with :class:`pgrad.errors.TrainingError` instead of silently not
  updating. With ``n_envs > 1`` the episodes still running when an update starts are finished
  under the updated policy, so their first steps are slightly off-policy (none with one env, the
  default, nor when all envs' episodes have the same length, as in HalfCheetah).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pgrad.algos.base import Algorithm, IterationResult, decay_learning_rate
from pgrad.config import OnPolicyConfig, param
from pgrad.distributions import action_std
from pgrad.errors import TrainingError
from pgrad.losses import explained_variance
from pgrad.returns import discounted_returns


@dataclass(frozen=True)
class ReinforceConfig(OnPolicyConfig):
    """REINFORCE hyperparameters; defaults are the textbook algorithm (one env, an update after
    every episode, raw observations, no gamma^t, no normalisation, no clipping).

    The network defaults (two hidden layers of 64 tanh units, orthogonal init with a small policy
    output gain) are those of the other pgrad algorithms (Andrychowicz et al. 2021, "What Matters
    in On-Policy RL", sec. 3). The learning rates are plain Adam starting points; the tuned values
    for CartPole-v1, InvertedPendulum-v5 and HalfCheetah-v5 are in the presets, with BENCHMARKS.md.
    """

    lr: float = param(1e-3, "policy learning rate (Adam)", low=0.0, low_open=True)
    normalize_obs: bool = param(False, "normalize observations with running mean/std (saved with the policy)")
    baseline: bool = param(False, "learn a state-value baseline b(s) = V(s) (Sutton & Barto 13.4)")
    value_lr: float = param(
        1e-3, "learning rate (Adam) of the baseline's value network; unused without baseline", low=0.0, low_open=True
    )
    value_steps: int = param(1, "Adam steps on the baseline per update, each on the whole batch", low=1)
    episodes_per_update: int = param(1, "complete episodes per update (1: after every episode)", low=1)
    min_steps_per_update: int = param(
        0, "also keep collecting whole episodes until the batch holds this many transitions", low=0
    )
    gamma_weighting: bool = param(
        False, "weight step t by gamma^t as in Sutton & Barto's pseudo-code (off: as most code)"
    )
    normalize_returns: bool = param(False, "normalise the weights G_t (or G_t - b(s_t)) to mean 0, std 1 per batch")
    ent_coef: float = param(0.0, "entropy bonus coefficient", low=0.0)
    max_grad_norm: float | None = param(
        None, "clip each network's gradient norm to this (none: no clipping)", low=0.0, low_open=True
    )
    anneal_lr: bool = param(False, "decay both learning rates linearly to 0 over each learn() call")


class Reinforce(Algorithm):
    """REINFORCE (Monte-Carlo policy gradient), optionally with a learned state-value baseline."""

    name = "reinforce"
    Config = ReinforceConfig

    def __init__(
        self, env: Any, seed: int = 0, *, baseline: bool = False, preset: str | None = "auto", **hyperparameters: Any
    ) -> None:
        """Build envs and policy; see :class:`Algorithm` for ``env``, ``seed`` and ``preset``.

        Args:
            baseline: learn a state-value baseline (``pgrad train reinforce-baseline``). It
                selects the preset table (``reinforce-baseline.toml``) and the saved algo name.
            **hyperparameters: fields of :class:`ReinforceConfig`.
        """
        # The CLI passes --set values as strings; parse this one like any other field.
        baseline = ReinforceConfig.build({"baseline": baseline}).baseline
        self.name = "reinforce-baseline" if baseline else "reinforce"
        super().__init__(env, seed, preset=preset, baseline=baseline, **hyperparameters)

    @property
    def uses_critic(self) -> bool:  # type: ignore[override]  # per instance, not per class
        return self.config.baseline

    def setup(self) -> None:
        c = self.config
        policy = self.policy
        # an image encoder (shared with the baseline) learns from the policy loss only: its
        # parameters are in this optimiser, and the baseline reads its features detached
        encoder_parameters = list(policy.encoder.parameters()) if policy.encoder is not None else []
        actor_parameters = encoder_parameters + list(policy.actor_body.parameters()) + list(policy.head.parameters())
        self.policy_optimizer = torch.optim.Adam(actor_parameters, lr=c.lr)
        self.value_optimizer = torch.optim.Adam(policy.critic.parameters(), lr=c.value_lr) if c.baseline else None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"policy": self.policy_optimizer}
        if self.value_optimizer is not None:
            optimizers["value"] = self.value_optimizer
        return optimizers

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        collector = self.collector
        if c.anneal_lr:
            # A single-sample Monte-Carlo gradient stays noisy however long training runs; a step
            # size going to 0 (Robbins-Monro; Tianshou's MuJoCo REINFORCE runs decay it likewise)
            # lets the policy settle instead of drifting around the optimum at the end of a run.
            for optimizer, lr in ((self.policy_optimizer, c.lr), (self.value_optimizer, c.value_lr)):
                if optimizer is not None:
                    decay_learning_rate(optimizer, lr, progress_remaining)
        steps_before = collector.total_transitions
        # Collection stops at the learn() budget even mid-episode (the episode continues in the next
        # call), so the last update of a call may hold fewer than episodes_per_update episodes.
        budget = self.learn_budget
        budget_left = max(1, budget.end_step - self.total_steps) if budget is not None else 10**12
        rollout, episodes = collector.collect_episodes(
            c.episodes_per_update, max_steps=budget_left, min_transitions=c.min_steps_per_update
        )
        self.rollout_end()
        steps_taken = collector.total_transitions - steps_before
        n_episodes = int((rollout.terminated | rollout.truncated).sum())
        if n_episodes == 0:
            if budget is None or self.updates == budget.start_updates:
                raise TrainingError(
                    f"no episode finished within {budget_left} steps; REINFORCE updates only on complete "
                    "episodes (raise the step budget or use an env with a time limit)"
                )
            # The budget ran out mid-episode after earlier updates; the episode continues next call.
            return IterationResult(n_transitions=steps_taken, episodes=episodes, metrics={"episodes": 0})

        # (T, 1) -> (T,): the batch is the complete episodes one after another.
        b_obs = rollout.obs[:, 0]  # (B, obs_size)
        b_actions = rollout.actions[:, 0]  # (B, *action_shape)
        b_rewards = rollout.rewards[:, 0]  # (B,)
        b_terminated = rollout.terminated[:, 0]  # (B,)
        b_truncated = rollout.truncated[:, 0]  # (B,)
        b_time = rollout.time_in_episode[:, 0]  # (B,)
        b_returns = discounted_returns(
            b_rewards,
            b_terminated,
            b_truncated,
            c.gamma,
            next_values=rollout.next_values[:, 0] if c.baseline else None,
        )  # (B,)

        metrics: dict[str, float] = {}
        if c.baseline:
            # V(S_t) with the network as it is now, which for n_envs=1 is the one that collected.
            b_values = self.policy.value(b_obs, train_encoder=False)  # (B,)
            weights = b_returns - b_values.detach()  # (B,) advantage estimates G_t - V(S_t)
        else:
            weights = b_returns.clone()  # (B,)
        if c.normalize_returns and weights.numel() > 1:
            weights = (weights - weights.mean()) / (weights.std() + 1e-8)
        if c.gamma_weighting:
            weights = weights * c.gamma ** b_time.to(weights.dtype)

        dist = self.policy.distribution(b_obs)
        log_probs = dist.log_prob(b_actions)  # (B,)
        entropy = dist.entropy().mean()
        policy_loss = -(weights * log_probs).mean()
        loss = policy_loss - c.ent_coef * entropy
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        actor_parameters = self.policy_optimizer.param_groups[0]["params"]
        grad_norm = torch.nn.utils.clip_grad_norm_(actor_parameters, c.max_grad_norm or float("inf"))
        self.policy_optimizer.step()
        metrics.update({"policy_loss": policy_loss.item(), "entropy": entropy.item(), "grad_norm": grad_norm.item()})
        std = action_std(dist)
        if std is not None:  # continuous: watch exploration shrink
            metrics["action_std"] = std.mean().item()

        if c.baseline:
            # The baseline the policy step used was b_values; its error is the value_loss logged.
            metrics["explained_variance"] = explained_variance(b_values.detach(), b_returns)
            for value_step in range(c.value_steps):
                predictions = b_values if value_step == 0 else self.policy.value(b_obs, train_encoder=False)  # (B,)
                value_loss = (predictions - b_returns).pow(2).mean()
                self.value_optimizer.zero_grad(set_to_none=True)
                value_loss.backward()
                value_grad_norm = torch.nn.utils.clip_grad_norm_(
                    self.policy.critic.parameters(), c.max_grad_norm or float("inf")
                )
                self.value_optimizer.step()
                if value_step == 0:
                    metrics.update({"value_loss": value_loss.item(), "value_grad_norm": value_grad_norm.item()})

        metrics.update(
            {
                "episodes": n_episodes,
                "batch_steps": int(b_rewards.shape[0]),
                # undiscounted return per episode in the batch, in the rewards learnt from
                "batch_return_mean": b_rewards.sum().item() / n_episodes,
                "lr": self.policy_optimizer.param_groups[0]["lr"],
            }
        )
        return IterationResult(n_transitions=steps_taken, episodes=episodes, metrics=metrics)
