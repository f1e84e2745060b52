"""One-step actor-critic: a TD(0) critic and a policy-gradient actor, updated after every step.

Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2nd ed., sec. 13.5, the box
"One-step Actor-Critic (episodic)". After each transition (S, A, R, S'):

    delta = R + gamma * v(S', w) - v(S, w)            (v(S', w) = 0 if S' is terminal)
    w     = w + alpha_w * delta * grad_w v(S, w)                      (critic, semi-gradient TD(0))
    theta = theta + alpha_theta * I * delta * grad_theta ln pi(A | S, theta)       (actor)
    I     = gamma * I                                  (I = 1 at the start of every episode)

The TD error delta is the one-step advantage estimate: GAE with lambda = 0 (Schulman et al.
2016, eq. 17), which is how it is computed here, through the same :func:`pgrad.returns.gae`
and rollout collector as A2C and PPO. So a time-limit truncation bootstraps with v(final
observation) rather than treating the cut as terminal (Pardo et al. 2018), and only a true
termination sets v(S') = 0.

What pgrad does beyond the box, each optional or a choice the book leaves open:

- ``gamma_weighting``: the factor I = gamma^t makes the update follow the gradient of the
  discounted objective from the start state (Sutton & Barto 2018, sec. 13.2-13.5); it also
  shrinks the updates of late time steps towards zero, so almost every implementation drops it
  (Thomas 2014, "Bias in Natural Actor-Critic Algorithms", calls the result biased but it is the
  common practice). Off by default; t comes from the collector's ``time_in_episode``.
- The two step sizes alpha_theta and alpha_w are ``lr`` and ``value_lr``, each with its own
  optimiser (Adam by default, plain SGD as in the book with ``optimizer=sgd``); the critic loss
  0.5 * (R + gamma v(S') - v(S))^2 with the target held fixed has exactly the semi-gradient
  -delta * grad v(S) above.
- ``n_envs`` > 1 runs the same update on the mean over one step of each env: still one update
  per (vector) environment step, but with less variance per update.
- Optional entropy bonus and gradient-norm clipping, both off by default.

The update runs every env step, on a batch of ``n_envs`` transitions, so its cost is per-call
overhead, not arithmetic. Where the numpy twin covers the policy (pgrad/numpy_twin/), the loss,
its gradient and both Adam steps are numpy on flat buffers (:class:`NumpyPolicyGradient`, one
:class:`NumpyAdam` per network), with no ``.item()`` per metric; :meth:`ActorCritic._autograd_update`
is the same update in torch, the readable reference the fast path is tested against
(tests/integration/test_update_fast_paths.py) and what runs where the twin does not reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pgrad.algos.base import Algorithm, IterationResult
from pgrad.config import TargetCriticConfig, param
from pgrad.distributions import action_std
from pgrad.losses import explained_variance, policy_gradient_loss, value_loss
from pgrad.numpy_twin import NumpyOptimizer, NumpyPolicyGradient
from pgrad.numpy_twin.gradient import explained_variance_np
from pgrad.returns import gae
from pgrad.rollout import EpisodeLog, Rollout


@dataclass(frozen=True)
class ActorCriticConfig(TargetCriticConfig):
    """One-step actor-critic hyperparameters (Sutton & Barto 2018, sec. 13.5).

    The book gives the algorithm, not step sizes; the defaults (Adam at 1e-3 for both networks,
    torch's Adam epsilon) are pgrad's, and presets tune them per env.
    """

    lr: float = param(1e-3, "actor step size alpha_theta", low=0.0, low_open=True)
    value_lr: float = param(1e-3, "critic step size alpha_w", low=0.0, low_open=True)
    gamma_weighting: bool = param(
        False, "weight actor updates by I = gamma^t, t the step within the episode (the book's box)"
    )
    ent_coef: float = param(0.0, "entropy bonus coefficient", low=0.0)
    max_grad_norm: float | None = param(
        None, "clip each network's gradient norm to this (none: never)", low=0.0, low_open=True
    )
    optimizer: str = param("adam", "adam, or sgd as in the book's box", choices=("adam", "sgd"))
    adam_eps: float = param(1e-8, "Adam epsilon", low=0.0, low_open=True)


class ActorCritic(Algorithm):
    """Sutton & Barto's one-step actor-critic, one update per vector-env step."""

    name = "actor-critic"
    Config = ActorCriticConfig

    def setup(self) -> None:
        c = self.config
        self.actor_parameters = [
            p for name, p in self.policy.named_parameters() if not name.startswith(("critic.", "target."))
        ]
        self.critic_parameters = list(self.policy.critic.parameters())
        if c.optimizer == "adam":
            self.actor_optimizer = torch.optim.Adam(self.actor_parameters, lr=c.lr, eps=c.adam_eps)
            self.critic_optimizer = torch.optim.Adam(self.critic_parameters, lr=c.value_lr, eps=c.adam_eps)
        else:
            self.actor_optimizer = torch.optim.SGD(self.actor_parameters, lr=c.lr)
            self.critic_optimizer = torch.optim.SGD(self.critic_parameters, lr=c.value_lr)
        # The update in numpy where the twin covers the policy (see the module docstring); tests
        # turn it off to compare with the autograd reference.
        self.use_numpy_gradient = True
        self._numpy_gradient: NumpyPolicyGradient | None = None
        self._numpy_actor_optimizer: NumpyOptimizer | None = None
        self._numpy_critic_optimizer: NumpyOptimizer | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        # One vector step: S, A, R and v(S') for every env, with the weights of the last update, so
        # delta below is the book's delta (nothing has changed w between collecting and updating).
        rollout, episodes = self.collector.collect(1)
        self.rollout_end()
        if self.use_numpy_gradient and self._numpy_gradient_applies():
            return self._numpy_update(rollout, episodes)
        return self._autograd_update(rollout, episodes)

    def _numpy_gradient_applies(self) -> bool:
        """:meth:`NumpyPolicyGradient.supports` for this update's policy. The collector has just
        checked the same policy for its numpy twin (nothing ran in between), and the gradient asks
        the twin's question plus "has a critic", which every actor-critic policy has: its verdict
        is reused, since the check walks every module and here an update comes after every env step."""
        collector = self.collector
        if collector.policy is self.policy and collector.fast is not None and self.policy.critic is not None:
            return True
        return NumpyPolicyGradient.supports(self.policy)

    def _autograd_update(self, rollout: Rollout, episodes: EpisodeLog) -> IterationResult:
        """The update on one vector step's transitions, by torch autograd and torch's optimisers."""
        c = self.config
        td_errors, td_targets = rollout.gae(c.gamma, 0.0)  # (1, N) each: delta and R + gamma * v(S')
        valid = rollout.valid[0]  # (N,) False only for NEXT_STEP reset steps, which are not transitions
        n_transitions = int(valid.sum())
        if n_transitions == 0:
            return IterationResult(n_transitions=0, episodes=episodes)
        obs = rollout.obs[0][valid]  # (B, obs_size)
        actions = rollout.actions[0][valid]  # (B, *action_shape)
        td_error = td_errors[0][valid]  # (B,)
        td_target = td_targets[0][valid]  # (B,)
        discount_weight = (
            c.gamma ** rollout.time_in_episode[0][valid].to(td_error.dtype)
            if c.gamma_weighting
            else torch.ones_like(td_error)
        )  # (B,) I = gamma^t

        dist = self.policy.distribution(obs)
        entropy = dist.entropy().mean()
        actor_loss, actor_metrics = policy_gradient_loss(dist.log_prob(actions), discount_weight * td_error)
        values = self.policy.value(obs)  # (B,)
        critic_loss, critic_metrics = value_loss(values, td_target)

        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)
        # Separate networks and optimisers: one backward through the sum gives each its own gradient.
        (actor_loss - c.ent_coef * entropy + critic_loss).backward()
        metrics = {
            **actor_metrics,
            **critic_metrics,
            "entropy": entropy.item(),
            "td_error_mean": td_error.mean().item(),
        }
        if c.max_grad_norm is not None:
            metrics["actor_grad_norm"] = torch.nn.utils.clip_grad_norm_(self.actor_parameters, c.max_grad_norm).item()
            metrics["critic_grad_norm"] = torch.nn.utils.clip_grad_norm_(self.critic_parameters, c.max_grad_norm).item()
        self.actor_optimizer.step()
        self.critic_optimizer.step()
        self.update_target_critic()

        # A variance needs two samples: with one env there is none to report.
        metrics["explained_variance"] = (
            explained_variance(rollout.values[0][valid], td_target) if n_transitions > 1 else float("nan")
        )
        std = action_std(dist)
        if std is not None:  # continuous: watch exploration shrink
            metrics["action_std"] = std.mean().item()
        return IterationResult(n_transitions=n_transitions, episodes=episodes, metrics=metrics)

    def _numpy_update(self, rollout: Rollout, episodes: EpisodeLog) -> IterationResult:
        """:meth:`_autograd_update` in numpy (pgrad/numpy_twin/): the same loss, gradient, clipping
        and Adam steps, equal to it up to float32 rounding, with the metrics as Python floats."""
        c = self.config
        # the rollout's tensors share memory with the collector's numpy buffers: no copies here
        valid = rollout.valid.numpy()[0]  # (N,)
        # gae computes in numpy on these views either way: the same TD errors to the bit
        td_errors, td_targets = gae(
            rollout.rewards.numpy(),
            rollout.values.numpy(),
            rollout.next_values.numpy(),
            rollout.terminated.numpy(),
            rollout.truncated.numpy(),
            gamma=c.gamma,
            lam=0.0,
        )  # (1, N) each
        all_valid = bool(valid.all())  # always under same-step autoreset: no gather needed
        n_transitions = valid.size if all_valid else int(valid.sum())
        if n_transitions == 0:
            return IterationResult(n_transitions=0, episodes=episodes)
        pick = slice(None) if all_valid else valid
        obs = rollout.obs.numpy()[0][pick]  # (B, obs_size)
        actions = rollout.actions.numpy()[0][pick]  # (B, *action_shape)
        td_error, td_target = td_errors[0][pick], td_targets[0][pick]  # (B,) each
        weights = td_error
        if c.gamma_weighting:  # I = gamma^t
            weights = np.float32(c.gamma) ** rollout.time_in_episode.numpy()[0][pick].astype(np.float32) * td_error

        gradient = self._numpy_gradient = NumpyPolicyGradient.reuse_or_build(self.policy, self._numpy_gradient)
        gradient.bind()
        # actor loss - ent_coef * entropy + 0.5 mean((v - target)^2): A2C's loss with vf_coef 1
        step = gradient.step_gradient(
            obs,
            actions,
            None,
            None,
            weights,
            td_target,
            clip_coef=None,
            vf_clip_coef=None,
            vf_coef=1.0,
            ent_coef=c.ent_coef,
            max_grad_norm=None,  # each network is clipped on its own below
        )
        metrics = {
            "policy_loss": step["policy_loss"],
            "value_loss": step["value_loss"],
            "entropy": step["entropy"],
            "td_error_mean": float(td_error.mean()),
        }
        self._numpy_actor_optimizer, actor_step = NumpyOptimizer.prepared_step(
            self.actor_optimizer, gradient, self._numpy_actor_optimizer
        )
        self._numpy_critic_optimizer, critic_step = NumpyOptimizer.prepared_step(
            self.critic_optimizer, gradient, self._numpy_critic_optimizer
        )
        if c.max_grad_norm is not None:
            # as torch.nn.utils.clip_grad_norm_ on each network's parameters: it always multiplies
            for name, parameters in (("actor", self.actor_parameters), ("critic", self.critic_parameters)):
                part = gradient.flat_part(parameters)  # a view: scaling it scales the .grad tensors
                norm = float(np.sqrt(np.dot(part, part)))
                part *= np.float32(min(c.max_grad_norm / (norm + 1e-6), 1.0))
                metrics[f"{name}_grad_norm"] = norm
        actor_step()
        critic_step()
        self.update_target_critic()
        values = rollout.values.numpy()[0][pick]  # (B,) v(S) at collection time, as the plain path reports
        metrics["explained_variance"] = explained_variance_np(values, td_target)
        if "action_std" in step:
            metrics["action_std"] = step["action_std"]
        return IterationResult(n_transitions=n_transitions, episodes=episodes, metrics=metrics)
