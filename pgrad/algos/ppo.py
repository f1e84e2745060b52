"""Proximal Policy Optimization with the clipped surrogate objective.

Schulman, Wolski, Dhariwal, Radford & Klimov (2017), "Proximal Policy Optimization Algorithms",
arXiv:1707.06347. Each iteration:

1. collect ``n_steps`` transitions from each of ``n_envs`` envs with the current policy;
2. estimate advantages with GAE(gamma, lambda) (Schulman et al. 2016), bootstrapping through
   time-limit truncation with V(final observation);
3. for ``n_epochs`` passes over the batch in shuffled minibatches of ``batch_size``, minimise

       L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + vf_coef * 0.5 E[(V - R)^2] - ent_coef * E[H]

   with one Adam step per minibatch and the global gradient norm clipped to ``max_grad_norm``.

Implementation details beyond the paper follow the ones Huang et al. (2022, "The 37
Implementation Details of PPO", ICLR blog track) list for continuous control, each named where
it appears: per-minibatch advantage normalisation, Adam eps 1e-5, linear lr annealing, global
gradient clipping, orthogonal init, observation normalisation.

``objective`` picks the policy term among the paper's (its sec. 3-4 and Table 1): ``clip`` above
(the default), ``kl_penalty`` (sec. 4: ``-E[r A] + beta KL[pi_old, pi]``, the exact mean KL of
pgrad/algos/trpo.py's :func:`~pgrad.algos.trpo.policy_kl`, with ``beta`` halved or doubled after
each update as :func:`adapt_kl_beta` says) or ``none`` (``-E[r A]``, the table's "no clipping or
penalty" row); the rest of the update (epochs, minibatches, value and entropy terms, gradient
clipping) is the same for all three. The numpy fast path computes the clipped loss only; the other
two update with autograd.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from pgrad.algos.base import Algorithm, IterationResult, decay_learning_rate, parameter_groups
from pgrad.algos.trpo import policy_kl, surrogate_loss
from pgrad.config import TargetCriticConfig, param
from pgrad.distributions import action_std
from pgrad.errors import ConfigError
from pgrad.losses import clipped_surrogate_loss, explained_variance, normalize_advantages, value_loss
from pgrad.numpy_twin import NumpyOptimizer, NumpyPolicyGradient


@dataclass(frozen=True)
class PPOConfig(TargetCriticConfig):
    """PPO hyperparameters; defaults are the PPO paper's MuJoCo settings (its Table 3)."""

    n_steps: int = param(2048, "steps per env per rollout (the paper's horizon T)", low=1)
    n_epochs: int = param(10, "passes over each rollout batch", low=1)
    vf_lr: float | None = param(None, "the critic's learning rate if not lr (annealed like lr)", low=0.0, low_open=True)
    batch_size: int = param(64, "minibatch size (transitions)", low=1)
    gae_lambda: float = param(0.95, "GAE lambda (bias/variance trade-off of the advantage)", low=0.0, high=1.0)
    clip_coef: float = param(0.2, "surrogate clipping epsilon", low=0.0, low_open=True)
    clip_vloss: bool = param(False, "clip the value update around the old values (ppo2 style)")
    vf_clip_coef: float = param(0.2, "clipping range of the value update when clip_vloss is on", low=0.0, low_open=True)
    ent_coef: float = param(0.0, "entropy bonus coefficient", low=0.0)
    vf_coef: float = param(0.5, "value loss coefficient", low=0.0)
    max_grad_norm: float = param(0.5, "clip the global gradient norm to this", low=0.0, low_open=True)
    target_kl: float | None = param(
        None, "stop the epochs of an update early once approx KL exceeds this (none: never)", low=0.0, low_open=True
    )
    norm_adv: bool = param(True, "normalise advantages per minibatch")
    anneal_lr: bool = param(True, "decay lr linearly to 0 over the run (as the paper's MuJoCo code did)")
    adam_eps: float = param(1e-5, "Adam epsilon (1e-5 as in baselines ppo2 and CleanRL)", low=0.0, low_open=True)
    objective: str = param(
        "clip",
        "policy objective (PPO paper Table 1): clip, kl_penalty (surrogate minus beta KL, beta adapted), none",
        choices=("clip", "kl_penalty", "none"),
    )
    kl_target: float = param(0.01, "objective=kl_penalty: target mean KL d_targ per update", low=0.0, low_open=True)
    kl_beta: float = param(1.0, "objective=kl_penalty: initial KL penalty coefficient beta", low=0.0)
    adapt_kl_beta: bool = param(True, "objective=kl_penalty: halve or double beta after each update (false: fixed)")

    def validate(self) -> None:
        super().validate()
        if self.objective != "clip" and type(self) is not PPOConfig:
            # the other objectives are this class's algorithm's (PPO); recurrent PPO computes the clipped one
            raise ConfigError(f"objective={self.objective} is implemented for ppo only; this algorithm uses clip")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(
                f"batch_size={self.batch_size} is larger than a rollout (n_steps*n_envs={self.n_steps * self.n_envs}); "
                "lower batch_size or raise n_steps"
            )


def loss_settings(config: PPOConfig) -> dict[str, float | None]:
    """The loss's coefficients as :meth:`pgrad.numpy_twin.NumpyPolicyGradient.step_gradient` takes them."""
    return {
        "clip_coef": config.clip_coef,
        "vf_clip_coef": config.vf_clip_coef if config.clip_vloss else None,
        "vf_coef": config.vf_coef,
        "ent_coef": config.ent_coef,
        "max_grad_norm": config.max_grad_norm,
    }


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """The KL penalty coefficient for the next update, from the mean KL ``kl`` of this one (PPO
    paper, sec. 4): halved if ``kl < kl_target / 1.5``, doubled if ``kl > kl_target * 1.5``, else
    kept. (The paper: "the parameters 1.5 and 2 above are chosen heuristically, but the algorithm
    is not very sensitive to them".)"""
    if kl < kl_target / 1.5:
        return beta / 2.0
    if kl > kl_target * 1.5:
        return beta * 2.0
    return beta


def minibatch_step_metrics(
    policy_metrics: dict[str, float],
    critic_metrics: dict[str, float],
    entropy: torch.Tensor,
    grad_norm: torch.Tensor,
    dist: torch.distributions.Distribution,
) -> dict[str, float]:
    """One minibatch step's numbers, averaged over the iteration into its metrics row."""
    metrics = {**policy_metrics, **critic_metrics, "entropy": entropy.item(), "grad_norm": grad_norm.item()}
    std = action_std(dist)
    if std is not None:  # continuous: watch exploration shrink
        metrics["action_std"] = std.mean().item()
    return metrics


class PPO(Algorithm):
    """PPO-Clip with GAE, separate actor and critic networks, one Adam optimiser."""

    name = "ppo"
    Config = PPOConfig
    updates_on_device = True

    def setup(self) -> None:
        # fused: one C++ kernel for all parameters instead of a Python loop over them (a quarter of
        # a minibatch step for 2x64 networks; BENCHMARKS.md, "Speed").
        self.optimizer = torch.optim.Adam(
            parameter_groups(self.learner, self.config.lr, self.config.vf_lr),
            lr=self.config.lr,
            eps=self.config.adam_eps,
            fused=True,
        )
        # Minibatch gradients by hand in numpy where the policy allows (pgrad/numpy_twin/gradient.py): the
        # same numbers as autograd up to float32 rounding, in a fraction of the time. Not a
        # hyperparameter (it changes no result); tests set it to False for the plain path.
        self.use_numpy_gradient = True
        self._numpy_gradient: NumpyPolicyGradient | None = None
        self._numpy_adam: NumpyOptimizer | None = None
        # objective=kl_penalty: the coefficient beta (adapted, saved in checkpoints) and a frozen
        # copy of the policy that collected the rollout, for KL[pi_old, pi] on each minibatch
        self.kl_beta = self.config.kl_beta
        self._old_policy: torch.nn.Module | None = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def checkpoint_extra(self) -> tuple[dict, dict]:
        return ({"kl_beta": self.kl_beta} if self.config.objective == "kl_penalty" else {}), {}

    def restore_checkpoint_extra(self, state: dict, tensors: dict) -> None:
        self.kl_beta = state.get("kl_beta", self.config.kl_beta)

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        if c.anneal_lr:
            # Linear decay to 0 over this learn() call (baselines ppo1 run_mujoco, schedule="linear").
            decay_learning_rate(self.optimizer, c.lr, progress_remaining)
        rollout, episodes = self.collector.collect(c.n_steps)
        self.rollout_end()

        advantages, returns = rollout.gae(c.gamma, c.gae_lambda)
        # Flatten (T, N) to the batch, keeping only real transitions (NEXT_STEP reset steps are not),
        # on the device the updates run on (pgrad/devices.py).
        valid = rollout.valid.reshape(-1)
        b_obs, b_actions, b_log_probs, b_values, b_advantages, b_returns = (
            tensor.to(self.device)
            for tensor in (
                rollout.obs.reshape(-1, rollout.obs.shape[-1])[valid],
                rollout.actions.reshape(-1, *rollout.actions.shape[2:])[valid],
                rollout.log_probs.reshape(-1)[valid],
                rollout.values.reshape(-1)[valid],
                advantages.reshape(-1)[valid],
                returns.reshape(-1)[valid],
            )
        )
        batch_size = b_obs.shape[0]
        n_minibatches = max(1, round(batch_size / c.batch_size))

        metrics_sum: dict[str, float] = {}
        n_minibatch_updates = 0
        epochs_done = 0
        approx_kl = 0.0
        self.learner_from_policy()
        use_numpy = c.objective == "clip" and self.use_numpy_gradient and NumpyPolicyGradient.supports(self.learner)
        if c.objective == "kl_penalty":
            self._old_policy = copy.deepcopy(self.learner).requires_grad_(False)
        gradient_step = self._numpy_gradient_step if use_numpy else self._autograd_step
        optimizer_step = self.optimizer.step
        if use_numpy:
            self._numpy_gradient = NumpyPolicyGradient.reuse_or_build(self.learner, self._numpy_gradient)
            # Adam in numpy on the gradient's flat buffer where it applies (same numbers, a third of the time)
            self._numpy_adam, optimizer_step = NumpyOptimizer.prepared_step(
                self.optimizer, self._numpy_gradient, self._numpy_adam
            )
        # minibatch boundaries as np.array_split of a shuffled index cuts them
        bounds = [(chunk[0], chunk[-1] + 1) for chunk in np.array_split(np.arange(batch_size), n_minibatches)]
        for _ in range(c.n_epochs):
            kl_this_epoch = []
            # Shuffle the whole batch once per epoch; each minibatch is then a contiguous slice,
            # the same samples as indexing by the permutation's chunks, for one gather per tensor
            # and epoch instead of one per tensor and minibatch.
            permutation = torch.from_numpy(self.rng.permutation(batch_size)).to(self.device)
            epoch_batch = [
                tensor[permutation] for tensor in (b_obs, b_actions, b_log_probs, b_values, b_advantages, b_returns)
            ]
            if use_numpy:
                epoch_batch = [tensor.numpy() for tensor in epoch_batch]  # shares memory
            for start, stop in bounds:
                step_metrics = gradient_step(*(tensor[start:stop] for tensor in epoch_batch))
                optimizer_step()
                for key, value in step_metrics.items():
                    metrics_sum[key] = metrics_sum.get(key, 0.0) + value
                kl_this_epoch.append(step_metrics["approx_kl"])
                n_minibatch_updates += 1
            epochs_done += 1
            approx_kl = float(np.mean(kl_this_epoch))
            # Early stop at the end of an epoch, as in CleanRL (SB3 checks each minibatch at 1.5x).
            if c.target_kl is not None and approx_kl > c.target_kl:
                break

        kl_metrics = {}
        if c.objective == "kl_penalty":
            with torch.no_grad():  # d = E[KL[pi_old, pi]] over the whole batch, then beta for the next update
                mean_kl = policy_kl(self._old_policy.distribution(b_obs), self.learner.distribution(b_obs)).mean()
            kl_metrics = {"kl_mean": mean_kl.item(), "kl_beta": self.kl_beta}  # the beta this update used
            if c.adapt_kl_beta:
                self.kl_beta = adapt_kl_beta(self.kl_beta, mean_kl.item(), c.kl_target)
        self.update_target_critic()
        self.policy_from_learner()
        metrics = {key: value / n_minibatch_updates for key, value in metrics_sum.items()}
        metrics.update(
            {
                "approx_kl_last_epoch": approx_kl,
                "epochs": epochs_done,
                "explained_variance": explained_variance(b_values, b_returns),
                "lr": self.optimizer.param_groups[0]["lr"],
                **kl_metrics,
            }
        )
        return IterationResult(n_transitions=int(batch_size), episodes=episodes, metrics=metrics)

    def _normalized_advantages(self, advantages):
        return normalize_advantages(advantages) if self.config.norm_adv else advantages

    def _autograd_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        old_values: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
    ) -> dict[str, float]:
        """Set ``.grad`` to the clipped gradient of PPO's loss on one minibatch, by torch autograd."""
        c = self.config
        dist = self.learner.distribution(obs)
        entropy = dist.entropy().mean()
        if c.objective == "clip":
            policy_loss, policy_metrics = clipped_surrogate_loss(
                dist.log_prob(actions), old_log_probs, self._normalized_advantages(advantages), c.clip_coef
            )
        else:
            policy_loss, policy_metrics = surrogate_loss(
                dist.log_prob(actions), old_log_probs, self._normalized_advantages(advantages)
            )
            if c.objective == "kl_penalty":
                with torch.no_grad():
                    old_dist = self._old_policy.distribution(obs)
                policy_loss = policy_loss + self.kl_beta * policy_kl(old_dist, dist).mean()
        critic_loss, critic_metrics = value_loss(
            self.learner.value(obs), returns, old_values, c.vf_clip_coef if c.clip_vloss else None
        )
        loss = policy_loss + c.vf_coef * critic_loss - c.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(list(self.learner.parameters()), c.max_grad_norm, foreach=True)
        return minibatch_step_metrics(policy_metrics, critic_metrics, entropy, grad_norm, dist)

    def _numpy_gradient_step(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        old_log_probs: np.ndarray,
        old_values: np.ndarray,
        advantages: np.ndarray,
        returns: np.ndarray,
    ) -> dict[str, float]:
        """The same as :meth:`_autograd_step`, with the gradient written out in numpy (pgrad/numpy_twin/gradient.py)."""
        c = self.config
        gradient = self._numpy_gradient
        gradient.bind()  # built or checked by train_iteration, once per update
        return gradient.step_gradient(
            obs,
            actions,
            old_log_probs,
            old_values,
            gradient.normalized_advantages(advantages) if c.norm_adv else advantages,
            returns,
            **loss_settings(c),
        )
