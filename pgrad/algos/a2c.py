"""A2C: synchronous n-step advantage actor-critic over vector envs, with GAE(lambda).

Mnih, Badia, Mirza, Graves, Lillicrap, Harley, Silver & Kavukcuoglu (2016), "Asynchronous
Methods for Deep Reinforcement Learning" (A3C), arXiv:1602.01783, Algorithm S3; made synchronous
by OpenAI ("OpenAI Baselines: ACKTR & A2C", blog post, August 2017), who found one batched
update over all workers as good as the asynchronous one and simpler. Each iteration:

1. collect ``n_steps`` transitions from each of ``n_envs`` envs with the current policy;
2. estimate advantages with GAE(gamma, lambda) (Schulman et al. 2016); ``gae_lambda=1`` gives
   A3C's n-step return ``R_t = r_t + ... + gamma^(n-1) r_{t+n-1} + gamma^n V(s_{t+n})``
   bootstrapped from the end of the rollout, ``A_t = R_t - V(s_t)``. Time-limit truncation
   bootstraps with V(final observation), as in PPO (Pardo et al. 2018);
3. take one gradient step on the whole batch, minimising

       L = -E[A_t log pi(a_t | s_t)] + vf_coef * 0.5 E[(V(s_t) - R_t)^2] - ent_coef * E[H(pi(.|s_t))]

   with RMSprop (or Adam) and the global gradient norm clipped to ``max_grad_norm``.

Defaults are Stable-Baselines3's ``A2C`` (stable_baselines3/a2c/a2c.py): n_steps 5, lr 7e-4,
RMSprop alpha 0.99 eps 1e-5, gamma 0.99, gae_lambda 1.0, ent_coef 0.0, vf_coef 0.5,
max_grad_norm 0.5, no advantage normalisation, constant lr. They are baselines' A2C settings
(baselines/a2c/a2c.py) except that baselines used ent_coef 0.01 and linear lr decay, which
``--set ent_coef=0.01 --set anneal_lr=true`` restores. One difference in bookkeeping: pgrad's
value loss is half the squared error (baselines' original ``mse``), where SB3 uses the full
one; with separate actor and critic networks and a per-parameter adaptive optimiser this only
changes how much the critic's gradient weighs in the global norm clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrad.algos.base import Algorithm, IterationResult, decay_learning_rate, parameter_groups
from pgrad.config import TargetCriticConfig, param
from pgrad.distributions import action_std
from pgrad.losses import explained_variance, normalize_advantages, policy_gradient_loss, value_loss
from pgrad.numpy_twin import NumpyOptimizer, NumpyPolicyGradient


@dataclass(frozen=True)
class A2CConfig(TargetCriticConfig):
    """A2C hyperparameters; defaults are Stable-Baselines3's A2C defaults (see the module doc)."""

    lr: float = param(7e-4, "optimizer learning rate (A3C/baselines/SB3: 7e-4)", low=0.0, low_open=True)
    n_steps: int = param(5, "steps per env per update (A3C's t_max)", low=1)
    vf_lr: float | None = param(None, "the critic's learning rate if not lr (annealed like lr)", low=0.0, low_open=True)
    gae_lambda: float = param(1.0, "GAE lambda; 1 gives A3C's n-step returns", low=0.0, high=1.0)
    ent_coef: float = param(0.0, "entropy bonus coefficient (baselines: 0.01)", low=0.0)
    vf_coef: float = param(0.5, "value loss coefficient", low=0.0)
    max_grad_norm: float = param(0.5, "clip the global gradient norm to this", low=0.0, low_open=True)
    normalize_advantage: bool = param(False, "normalise advantages over each batch (not in A3C)")
    optimizer: str = param("rmsprop", "rmsprop (A3C, baselines, SB3) or adam", choices=("rmsprop", "adam"))
    rmsprop_alpha: float = param(
        0.99, "RMSprop smoothing constant of the squared-gradient average", low=0.0, high=1.0, high_open=True
    )
    optimizer_eps: float = param(
        1e-5, "epsilon of RMSprop or Adam (1e-5 as in baselines and SB3)", low=0.0, low_open=True
    )
    anneal_lr: bool = param(False, "decay lr linearly to 0 over the run (baselines' A2C did; SB3 does not)")


class A2C(Algorithm):
    """Synchronous advantage actor-critic: one gradient step per ``n_steps x n_envs`` batch."""

    name = "a2c"
    Config = A2CConfig
    updates_on_device = True

    def setup(self) -> None:
        c = self.config
        if c.optimizer == "rmsprop":
            # torch's RMSprop adds eps outside the square root, TF's inside; at eps=1e-5 the two
            # differ only for near-zero gradient averages (SB3 keeps torch's for MLPs too).
            # foreach: a few multi-tensor kernels instead of a Python loop over the parameters,
            # which dominates an update on a 5-step batch (benchmarks/speed.py)
            self.optimizer = torch.optim.RMSprop(
                parameter_groups(self.learner, c.lr, c.vf_lr),
                lr=c.lr,
                alpha=c.rmsprop_alpha,
                eps=c.optimizer_eps,
                foreach=True,
            )
        else:
            self.optimizer = torch.optim.Adam(
                parameter_groups(self.learner, c.lr, c.vf_lr), lr=c.lr, eps=c.optimizer_eps, fused=True
            )
        # The gradient by hand in numpy where the policy allows (pgrad/numpy_twin/gradient.py): the same numbers
        # as autograd up to float32 rounding, ~5x faster on A2C's small batches. Tests turn it off.
        self.use_numpy_gradient = True
        self._numpy_gradient: NumpyPolicyGradient | None = None
        self._numpy_optimizer: NumpyOptimizer | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {self.config.optimizer: self.optimizer}

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        if c.anneal_lr:
            # Linear decay to 0 over this learn() call (baselines a2c, lrschedule="linear").
            decay_learning_rate(self.optimizer, c.lr, progress_remaining)
        rollout, episodes = self.collector.collect(c.n_steps)
        self.rollout_end()

        advantages, returns = rollout.gae(c.gamma, c.gae_lambda)  # (T, N) each
        # Flatten (T, N) to the batch, keeping only real transitions (NEXT_STEP reset steps are not).
        valid = rollout.valid.reshape(-1)
        # on the device the update runs on (pgrad/devices.py)
        b_obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])[valid].to(self.device)  # (B, obs_size)
        b_actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[valid].to(self.device)  # (B, ...)
        b_values = rollout.values.reshape(-1)[valid].to(self.device)  # (B,)
        b_advantages = advantages.reshape(-1)[valid].to(self.device)  # (B,)
        b_returns = returns.reshape(-1)[valid].to(self.device)  # (B,)
        batch_size = b_obs.shape[0]
        if batch_size == 0:  # every env was taking a NEXT_STEP reset step: nothing to learn from
            return IterationResult(n_transitions=0, episodes=episodes)

        self.learner_from_policy()
        if self.use_numpy_gradient and NumpyPolicyGradient.supports(self.learner):
            metrics = self._numpy_gradient_step(b_obs, b_actions, b_advantages, b_returns)
            # RMSprop or Adam in numpy on the gradient's flat buffer (same numbers; torch's foreach
            # RMSprop was an eighth of a 5-step iteration on HalfCheetah-v5, BENCHMARKS.md "Speed")
            self._numpy_optimizer, optimizer_step = NumpyOptimizer.prepared_step(
                self.optimizer, self._numpy_gradient, self._numpy_optimizer
            )
        else:
            metrics = self._autograd_step(b_obs, b_actions, b_advantages, b_returns)
            optimizer_step = self.optimizer.step  # the gradient is in .grad, not in the numpy buffer
        optimizer_step()
        self.update_target_critic()
        self.policy_from_learner()
        metrics["explained_variance"] = explained_variance(b_values, b_returns)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return IterationResult(n_transitions=int(batch_size), episodes=episodes, metrics=metrics)

    def _normalized_advantages(self, advantages):
        return normalize_advantages(advantages) if self.config.normalize_advantage else advantages

    def _autograd_step(
        self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor
    ) -> dict[str, float]:
        """Set ``.grad`` to the clipped gradient of A2C's loss on the batch, by torch autograd."""
        c = self.config
        dist = self.learner.distribution(obs)
        entropy = dist.entropy().mean()
        policy_loss, policy_metrics = policy_gradient_loss(
            dist.log_prob(actions), self._normalized_advantages(advantages)
        )
        # The critic regresses on the TD(lambda) targets R_t = A_t + V_old(s_t) (GAE paper, sec. 5).
        critic_loss, critic_metrics = value_loss(self.learner.value(obs), returns)
        loss = policy_loss + c.vf_coef * critic_loss - c.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.learner.parameters(), c.max_grad_norm, foreach=True)
        metrics = {**policy_metrics, **critic_metrics, "entropy": entropy.item(), "grad_norm": grad_norm.item()}
        std = action_std(dist)
        if std is not None:  # continuous: watch exploration shrink
            metrics["action_std"] = std.mean().item()
        return metrics

    def _numpy_gradient_step(
        self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor
    ) -> dict[str, float]:
        """The same as :meth:`_autograd_step`, by hand in numpy (pgrad/numpy_twin/gradient.py)."""
        c = self.config
        self._numpy_gradient = NumpyPolicyGradient.reuse_or_build(self.learner, self._numpy_gradient)
        gradient = self._numpy_gradient
        gradient.bind()
        return gradient.step_gradient(
            obs.numpy(),
            actions.numpy(),
            None,
            None,
            gradient.normalized_advantages(advantages.numpy()) if c.normalize_advantage else advantages.numpy(),
            returns.numpy(),
            clip_coef=None,
            vf_clip_coef=None,
            vf_coef=c.vf_coef,
            ent_coef=c.ent_coef,
            max_grad_norm=c.max_grad_norm,
        )
