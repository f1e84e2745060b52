"""Trust Region Policy Optimization (TRPO) and the natural policy gradient (NPG).

Schulman, Levine, Moritz, Jordan & Abbeel (2015), "Trust Region Policy Optimization", ICML,
arXiv:1502.05477 (sec. 6 and appendix C for the solver); Kakade (2001), "A Natural Policy
Gradient", NIPS 14; Rajeswaran, Lowrey, Todorov & Kakade (2017), "Towards Generalization and
Simplicity in Continuous Control", NIPS, arXiv:1703.02660 (NPG with a normalised step, their
Algorithm 1). Each iteration:

1. collect ``n_steps`` transitions from each of ``n_envs`` envs; GAE(gamma, lambda) advantages
   (Schulman et al. 2016), normalised over the batch (``norm_adv``);
2. the surrogate ``L(theta) = E[pi_theta(a|s) / pi_old(a|s) * A]`` and its gradient ``g`` at
   ``theta_old`` (the policy gradient);
3. ``F``: the Fisher information of the policy, the Hessian of the mean ``KL(pi_old || pi_theta)``
   at ``theta_old``. Solve ``(F + cg_damping * I) s = g`` with ``cg_iters`` steps of conjugate
   gradient (:func:`conjugate_gradient`), which needs only products ``F v``
   (:func:`fisher_vector_product`), never ``F`` itself;
4. scale ``s`` to the trust region: under the quadratic model ``KL ~ 1/2 d^T F d`` the step
   ``d = sqrt(2 max_kl / s^T F s) * s`` (:func:`trust_region_step`) reaches ``KL = max_kl``
   (TRPO appendix C: ``beta = sqrt(2 delta / s^T A s)``);
5. TRPO: backtracking line search (:func:`backtracking_line_search`) on
   ``theta_old + line_search_shrink^j * d``, ``j = 0 .. line_search_steps - 1``, accepting the
   first point where the surrogate improves and the measured mean KL is at most ``max_kl``; if
   none does, the policy keeps ``theta_old`` (TRPO appendix C; sb3-contrib and Spinning Up do the
   same). NPG takes ``d`` as it is (Rajeswaran et al.'s normalised step);
6. fit the critic: ``n_critic_epochs`` passes of Adam (``lr``) over shuffled minibatches of
   ``batch_size``, on ``1/2 (V(s) - R)^2`` with the TD(lambda) returns ``R = A + V_old`` (as
   sb3-contrib's TRPO; Spinning Up takes 80 full-batch steps).

The Fisher-vector product is the double backward of the mean KL: ``F v = grad((grad KL) . v)``.
At ``theta = theta_old`` the KL's Hessian equals the Fisher exactly (its gradient is zero there,
so the Gauss-Newton form ``J^T M J`` and the Hessian coincide; TRPO appendix C.1). Chosen over
the Gauss-Newton form because it needs nothing per distribution beyond its KL: every head pgrad
builds (categorical, one categorical per MultiDiscrete entry, Bernoulli, Gaussian with a free or
state-dependent std, truncated normal) and invalid-action masks work through
:func:`policy_kl`, which the line search needs anyway for its constraint; ``J^T M J`` would need
each distribution's Fisher ``M`` in its own parameters (for the truncated normal, a derivation
of its own). It costs two backward passes per product, on a full batch of small networks a few
milliseconds.

Which parameters move: the natural gradient moves the actor (its body and head, the image
encoder and the shared trunk where the policy has them); the critic's regression reads those
shared features detached, so only the KL-constrained step changes them (sb3-contrib's TRPO drops
the critic's gradient on actor parameters the same way). Defaults are sb3-contrib's TRPO
defaults (sb3_contrib/trpo/trpo.py), so that the RL Zoo's presets, written as changes to those,
map key by key (pgrad/presets/trpo.toml), with one conversion: for a Box action of ``d``
dimensions sb3-contrib's KL is the mean of the dimensions' KLs where this one (the paper's) is
their sum, so its ``target_kl`` and ``cg_damping`` are ``max_kl / d`` and ``cg_damping / d``
here; so converted, the policy step is sb3-contrib's to float rounding.

This module also holds the two pieces PPO's other objectives use (``--set objective=kl_penalty``
or ``none``, pgrad/algos/ppo.py): :func:`policy_kl` and :func:`surrogate_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent

from pgrad.algos.base import Algorithm, IterationResult
from pgrad.config import TargetCriticConfig, param
from pgrad.distributions import MultiCategorical, TruncatedNormal, action_std
from pgrad.errors import ConfigError
from pgrad.losses import explained_variance, normalize_advantages, value_loss

# -- pure maths --------------------------------------------------------------------------------


def categorical_kl(old: Categorical, new: Categorical) -> Tensor:
    """``KL(old || new) = sum_a p(a) (log p(a) - log q(a))`` per row ``(B,)``.

    Actions the old policy never takes (``p = 0``: masked out, logit -1e8) add exactly 0, where
    ``0 * (log 0 - log q)`` could otherwise be ``0 * inf``.
    """
    terms = old.probs * (old.logits - new.logits)
    return torch.where(old.probs > 0, terms, torch.zeros_like(terms)).sum(-1)


def truncated_normal_kl(old: TruncatedNormal, new: TruncatedNormal) -> Tensor:
    """``KL(old || new)`` elementwise for truncated normals on the same bounds, in closed form.

    With ``p = old``, ``q = new`` and ``log q(x) = c_q - (x - mu_q)^2 / (2 sigma_q^2)``, where
    ``c_q = -log(sigma_q Z_q sqrt(2 pi))`` holds q's normaliser:
    ``KL = E_p[log p] - E_p[log q] = -H(p) - c_q + (Var_p + (E_p[x] - mu_q)^2) / (2 sigma_q^2)``.
    ``c_q`` is read off ``q.log_prob`` at q's mode, where the quadratic term is smallest, and the
    whole is computed in float64 (the two large terms cancel when a location lies far outside the
    bounds) and returned in ``new``'s dtype. Differentiable w.r.t. ``new``'s parameters, twice.
    """
    p = TruncatedNormal(old.loc.double(), old.scale.double(), old.low.double(), old.high.double())
    q = TruncatedNormal(new.loc.double(), new.scale.double(), new.low.double(), new.high.double())
    anchor = q.mode.detach()
    log_normaliser = q.log_prob(anchor) + (anchor - q.loc).square() / (2.0 * q.scale.square())
    second_moment = p.variance + (p.mean - q.loc).square()  # E_p[(x - mu_q)^2]
    kl = -p.entropy() - log_normaliser + second_moment / (2.0 * q.scale.square())
    return kl.to(new.loc.dtype)


def policy_kl(old: Distribution, new: Distribution) -> Tensor:
    """``KL(old || new)`` per sample ``(B,)`` for the distributions pgrad's action heads build.

    ``Independent`` sums its base's KL over the event dimensions; one categorical per
    MultiDiscrete entry sums theirs; the Gaussian and Bernoulli take torch's closed forms.
    """
    if isinstance(old, Independent):
        kl = policy_kl(old.base_dist, new.base_dist)
        for _ in range(old.reinterpreted_batch_ndims):
            kl = kl.sum(-1)
        return kl
    if isinstance(old, MultiCategorical):
        return torch.stack([categorical_kl(p, q) for p, q in zip(old.parts, new.parts, strict=True)], -1).sum(-1)
    if isinstance(old, Categorical):
        return categorical_kl(old, new)
    if isinstance(old, TruncatedNormal):
        return truncated_normal_kl(old, new)
    return torch.distributions.kl_divergence(old, new)


def surrogate_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor) -> tuple[Tensor, dict[str, float]]:
    """The importance-sampled surrogate ``-E[r A]``, ``r = pi(a|s) / pi_old(a|s)``, negated to be
    minimised: TRPO's objective (Schulman et al. 2015, eq. 14) and PPO's unclipped one (Schulman
    et al. 2017, eq. 6; the "no clipping or penalty" row of its Table 1). Also reports the
    approximate KL ``E[(r - 1) - log r]`` as :func:`pgrad.losses.clipped_surrogate_loss` does."""
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    loss = -(ratio * advantages).mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean().item()
    return loss, {"policy_loss": loss.item(), "approx_kl": approx_kl}


def conjugate_gradient(
    matrix_vector_product: Callable[[Tensor], Tensor], b: Tensor, iterations: int, residual_tol: float = 1e-10
) -> tuple[Tensor, float]:
    """Approximately solve ``A x = b`` for a symmetric positive-definite ``A`` known only through
    ``matrix_vector_product(v) = A v``, starting from ``x = 0``.

    Hestenes & Stiefel (1952); Nocedal & Wright, "Numerical Optimization" (2006), Algorithm 5.2.
    Exact after ``len(b)`` iterations in exact arithmetic; TRPO runs ~10 (appendix C), enough
    for a good direction, not a full solve. Stops early once ``|r|^2 < residual_tol``.

    Returns:
        ``(x, |r|^2)``: the solution and its squared residual ``|b - A x|^2``.
    """
    x = torch.zeros_like(b)
    residual = b.clone()  # r = b - A x with x = 0
    direction = residual.clone()
    residual_norm = residual.dot(residual)
    for _ in range(iterations):
        if residual_norm < residual_tol:
            break
        product = matrix_vector_product(direction)
        alpha = residual_norm / direction.dot(product)
        x = x + alpha * direction
        residual = residual - alpha * product
        new_residual_norm = residual.dot(residual)
        direction = residual + (new_residual_norm / residual_norm) * direction
        residual_norm = new_residual_norm
    return x, float(residual_norm)


def flat_gradient(output: Tensor, parameters: Sequence[Tensor], **grad_kwargs) -> Tensor:
    """``d output / d parameters`` as one flat vector, zeros for parameters ``output`` does not use."""
    gradients = torch.autograd.grad(output, parameters, allow_unused=True, **grad_kwargs)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(parameters, gradients, strict=True)]
    )


def fisher_vector_product(mean_kl: Tensor, parameters: Sequence[Tensor], damping: float) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping * I) v``, ``H`` the Hessian of ``mean_kl`` w.r.t. ``parameters``, by
    double backward (Pearlmutter 1994): ``H v = grad(grad(KL) . v)``.

    With ``mean_kl = E_s[KL(pi_old(.|s) || pi_theta(.|s))]`` evaluated at ``theta = theta_old``,
    ``H`` is the Fisher information matrix of the policy (TRPO appendix C.1). The KL's gradient
    graph is built once here and reused by every product. ``damping`` (Levenberg-Marquardt style)
    keeps the system well conditioned where the sampled Fisher is nearly singular.
    """
    kl_gradient = flat_gradient(mean_kl, parameters, create_graph=True)

    def product(vector: Tensor) -> Tensor:
        return flat_gradient(kl_gradient.dot(vector), parameters, retain_graph=True) + damping * vector

    return product


def trust_region_step(direction: Tensor, fisher_direction: Tensor, max_kl: float) -> Tensor:
    """The multiple of ``direction`` (``s``) that reaches ``max_kl`` under the quadratic model of the
    KL: ``d = sqrt(2 max_kl / s^T F s) s``, so ``1/2 d^T F d = max_kl`` (TRPO appendix C).
    ``fisher_direction`` is ``F s``. Zeros if ``s^T F s`` is not a positive number (a zero
    gradient: nothing to step towards)."""
    curvature = float(direction.dot(fisher_direction))
    if not math.isfinite(curvature) or curvature <= 0.0:
        return torch.zeros_like(direction)
    return math.sqrt(2.0 * max_kl / curvature) * direction


def backtracking_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    start: Tensor,
    full_step: Tensor,
    start_objective: float,
    max_kl: float,
    shrink: float,
    max_steps: int,
) -> tuple[Tensor, int | None]:
    """TRPO's line search (appendix C): try ``start + shrink^j * full_step`` for ``j = 0, 1, ...,
    max_steps - 1`` and accept the first where the objective improves on ``start_objective`` and
    the mean KL from ``start`` is at most ``max_kl``.

    Args:
        evaluate: ``parameters -> (objective, mean KL from start)``, for a flat parameter vector.

    Returns:
        ``(parameters, j)`` of the accepted point, or ``(start, None)`` if none was (a NaN
        objective or KL is never accepted).
    """
    for j in range(max_steps):
        candidate = start + shrink**j * full_step
        objective, kl = evaluate(candidate)
        if kl <= max_kl and objective > start_objective:
            return candidate, j
    return start, None


# -- the algorithms ----------------------------------------------------------------------------


def assign_flat(parameters: Sequence[Tensor], flat: Tensor) -> None:
    """Write the flat vector ``flat`` into ``parameters`` in place (the numpy twin that acts in the
    rollouts holds views of them, so they must not be replaced)."""
    offset = 0
    with torch.no_grad():
        for parameter in parameters:
            count = parameter.numel()
            parameter.copy_(flat[offset : offset + count].view_as(parameter))
            offset += count


def actor_parameters(policy: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the natural gradient moves: every trained one but the critic's (and the
    target critic's, which moves by copying): actor body, head, and any image encoder or shared
    trunk."""
    return [
        p for name, p in policy.named_parameters() if p.requires_grad and not name.startswith(("critic.", "target."))
    ]


@dataclass(frozen=True)
class NPGConfig(TargetCriticConfig):
    """NPG hyperparameters (TRPO's without the line search); defaults are sb3-contrib's TRPO defaults."""

    lr: float = param(
        1e-3, "the critic's Adam learning rate (the actor steps to max_kl instead)", low=0.0, low_open=True
    )
    n_steps: int = param(2048, "steps per env per rollout", low=1)
    batch_size: int = param(128, "the critic's minibatch size (transitions)", low=1)
    n_critic_epochs: int = param(
        10, "passes of minibatch Adam over each rollout fitting the critic (sb3-contrib: n_critic_updates)", low=1
    )
    gae_lambda: float = param(0.95, "GAE lambda (bias/variance trade-off of the advantage)", low=0.0, high=1.0)
    max_kl: float = param(
        0.01,
        "trust-region radius delta: mean KL(pi_old || pi) of a step (sb3-contrib: target_kl x Box action size)",
        low=0.0,
        low_open=True,
    )
    cg_iters: int = param(15, "conjugate-gradient iterations per update (sb3-contrib: cg_max_steps)", low=1)
    cg_damping: float = param(0.1, "damping added to the Fisher matrix: solve (F + damping I) s = g", low=0.0)
    norm_adv: bool = param(True, "normalise advantages over each batch")
    adam_eps: float = param(1e-5, "the critic's Adam epsilon (1e-5 as SB3's policies)", low=0.0, low_open=True)

    def validate(self) -> None:
        super().validate()
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(
                f"batch_size={self.batch_size} is larger than a rollout (n_steps*n_envs={self.n_steps * self.n_envs}); "
                "lower batch_size or raise n_steps"
            )


@dataclass(frozen=True)
class TRPOConfig(NPGConfig):
    """TRPO hyperparameters: NPG's and the backtracking line search; defaults are sb3-contrib's."""

    line_search_steps: int = param(
        10, "backtracking steps tried before the update is dropped (sb3-contrib: line_search_max_iter)", low=1
    )
    line_search_shrink: float = param(
        0.8, "step shrink factor per backtracking step", low=0.0, high=1.0, low_open=True, high_open=True
    )


class TRPO(Algorithm):
    """Trust Region Policy Optimization: a natural-gradient step to a KL radius, with line search."""

    name = "trpo"
    Config = TRPOConfig
    # NPG (below) is this algorithm without the line search
    line_search: ClassVar[bool] = True

    def setup(self) -> None:
        c = self.config
        self.actor_params = actor_parameters(self.policy)
        self.critic_optimizer = torch.optim.Adam(self.policy.critic.parameters(), lr=c.lr, eps=c.adam_eps)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic_adam": self.critic_optimizer}

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        rollout, episodes = self.collector.collect(c.n_steps)
        self.rollout_end()

        advantages, returns = rollout.gae(c.gamma, c.gae_lambda)
        # Flatten (T, N) to the batch, keeping only real transitions (NEXT_STEP reset steps are not).
        valid = rollout.valid.reshape(-1)
        obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])[valid]
        actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[valid]
        old_log_probs = rollout.log_probs.reshape(-1)[valid]
        old_values = rollout.values.reshape(-1)[valid]
        advantages = advantages.reshape(-1)[valid]
        returns = returns.reshape(-1)[valid]
        batch_size = obs.shape[0]
        if batch_size == 0:  # every env was taking a NEXT_STEP reset step: nothing to learn from
            return IterationResult(n_transitions=0, episodes=episodes)
        if c.norm_adv:
            advantages = normalize_advantages(advantages)

        metrics = self._policy_step(obs, actions, old_log_probs, advantages)
        metrics["value_loss"] = self._fit_critic(obs, returns)
        self.update_target_critic()
        metrics["explained_variance"] = explained_variance(old_values, returns)
        return IterationResult(n_transitions=int(batch_size), episodes=episodes, metrics=metrics)

    def _policy_step(self, obs: Tensor, actions: Tensor, old_log_probs: Tensor, advantages: Tensor) -> dict[str, float]:
        """Steps 2-5 of the module doc: the natural-gradient step to ``max_kl``, line-searched for TRPO."""
        c = self.config
        policy, params = self.policy, self.actor_params
        with torch.no_grad():
            old_dist = policy.distribution(obs)
        dist = policy.distribution(obs)
        loss, _ = surrogate_loss(dist.log_prob(actions), old_log_probs, advantages)
        objective = -loss
        gradient = flat_gradient(objective, params, retain_graph=True)
        fisher = fisher_vector_product(policy_kl(old_dist, dist).mean(), params, c.cg_damping)
        direction, cg_residual = conjugate_gradient(fisher, gradient, c.cg_iters)
        full_step = trust_region_step(direction, fisher(direction), c.max_kl)
        del fisher  # frees the KL's double-backward graph before the line search

        start = torch.nn.utils.parameters_to_vector(params).detach()

        def evaluate(candidate: Tensor) -> tuple[float, float]:
            """The surrogate and the mean KL from the old policy at ``candidate``."""
            assign_flat(params, candidate)
            with torch.no_grad():
                new_dist = policy.distribution(obs)
                new_loss, _ = surrogate_loss(new_dist.log_prob(actions), old_log_probs, advantages)
                return -new_loss.item(), policy_kl(old_dist, new_dist).mean().item()

        metrics = {
            "gradient_norm": gradient.norm().item(),
            "cg_residual": cg_residual,
            "entropy": old_dist.entropy().mean().item(),
        }
        if self.line_search:
            accepted, backtracks = backtracking_line_search(
                evaluate, start, full_step, objective.item(), c.max_kl, c.line_search_shrink, c.line_search_steps
            )
            metrics["line_search_accepted"] = float(backtracks is not None)
            metrics["step_fraction"] = 0.0 if backtracks is None else c.line_search_shrink**backtracks
        else:
            accepted = start + full_step
        new_objective, kl = evaluate(accepted)  # also leaves the policy at the accepted parameters
        metrics.update({"surrogate_gain": new_objective - objective.item(), "kl": kl})
        std = action_std(old_dist)
        if std is not None:  # continuous: watch exploration shrink
            metrics["action_std"] = std.mean().item()
        return metrics

    def _fit_critic(self, obs: Tensor, returns: Tensor) -> float:
        """Step 6 of the module doc; returns the mean minibatch value loss."""
        c = self.config
        policy = self.policy
        with torch.no_grad():
            # the critic reads the actor's encoder / shared trunk detached (they move by the
            # KL-constrained step only), so their features are computed once for all epochs
            features = policy.encode(obs)
        batch_size = obs.shape[0]
        n_minibatches = max(1, round(batch_size / c.batch_size))
        # minibatch boundaries as np.array_split of a shuffled index cuts them (as PPO)
        bounds = [(chunk[0], chunk[-1] + 1) for chunk in np.array_split(np.arange(batch_size), n_minibatches)]
        losses = []
        for _ in range(c.n_critic_epochs):
            permutation = torch.from_numpy(self.rng.permutation(batch_size))
            epoch_features, epoch_returns = features[permutation], returns[permutation]
            for begin, end in bounds:
                values = policy.critic(epoch_features[begin:end]).squeeze(-1)
                loss, _ = value_loss(values, epoch_returns[begin:end])
                self.critic_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.critic_optimizer.step()
                losses.append(loss.item())
        return float(np.mean(losses))


class NPG(TRPO):
    """Natural policy gradient: TRPO's step to the KL radius, taken without a line search."""

    name = "npg"
    Config = NPGConfig
    line_search = False
