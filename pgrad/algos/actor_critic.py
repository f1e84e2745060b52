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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrad.algos.base import Algorithm, IterationResult
from pgrad.config import TargetCriticConfig, param
from pgrad.distributions import action_std
from pgrad.losses import explained_variance, policy_gradient_loss, value_loss


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

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        # One vector step: S, A, R and v(S') for every env, with the weights of the last update, so
        # delta below is the book's delta (nothing has changed w between collecting and updating).
        rollout, episodes = self.collector.collect(1)
        self.rollout_end()
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
