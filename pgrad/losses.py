"""Pure loss functions of the policy-gradient family. Each returns ``(loss, metrics)``.

Metrics are detached Python floats for logging; only algorithms log them.
"""

from __future__ import annotations

import numpy as np
import torch


def clipped_surrogate_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate objective, negated to be minimised (Schulman et al. 2017, eq. 7).

    ``L = -mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))`` with ``r = exp(log_probs - old_log_probs)``.
    Also reports the approximate KL ``E[(r - 1) - log r]``, an unbiased, always non-negative
    estimator of KL(old || new) (Schulman, "Approximating KL Divergence", 2020), and the fraction
    of samples whose ratio was clipped.
    """
    objective, ratio, log_ratio = clipped_surrogate_terms(log_probs, old_log_probs, advantages, clip_coef)
    loss = -objective.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean().item()
        clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean().item()
    return loss, {"policy_loss": loss.item(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def clipped_surrogate_terms(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample ``min(r A, clip(r, 1 - eps, 1 + eps) A)``, ``r`` and ``log r``, before any mean
    (shared by :func:`clipped_surrogate_loss` and the seed-batched loss in pgrad/batched.py)."""
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return torch.min(unclipped, clipped), ratio, log_ratio


def policy_gradient_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The vanilla policy-gradient surrogate, negated to be minimised: ``-mean(A * log pi(a|s))``.

    Its gradient is the score-function estimator ``-mean(A * grad log pi)`` (Williams 1992;
    Sutton & Barto 2018, sec. 13.3-13.5; Mnih et al. 2016, A3C's policy term). ``advantages``
    are weights, not part of the graph: any per-sample factor (a TD error, GAE, a gamma^t
    discount) is folded into them by the caller and detached here.
    """
    loss = -(advantages.detach() * log_probs).mean()
    return loss, {"policy_loss": loss.item()}


def value_loss(
    values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor | None = None, clip_coef: float | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Half mean squared error to the returns, optionally with PPO2-style value clipping.

    With ``clip_coef``, the new value may move at most ``clip_coef`` from ``old_values`` and the
    loss is the larger of the clipped and unclipped errors (baselines ppo2; CleanRL
    ``clip_vloss``). Andrychowicz et al. 2021 (sec. 3.5) found it does not help and may hurt, so
    pgrad's PPO leaves it off by default.
    """
    loss = 0.5 * value_squared_error(values, returns, old_values, clip_coef).mean()
    return loss, {"value_loss": loss.item()}


def value_squared_error(
    values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor | None = None, clip_coef: float | None = None
) -> torch.Tensor:
    """Per-sample squared error of :func:`value_loss`, the larger of clipped and unclipped with ``clip_coef``."""
    squared_error = (values - returns).square()
    if clip_coef is not None and old_values is not None:
        clipped_values = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        squared_error = torch.max(squared_error, (clipped_values - returns).square())
    return squared_error


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """``1 - Var[targets - predictions] / Var[targets]``: 1 is perfect, 0 is no better than a constant.
    NaN where it is undefined (fewer than two targets, or targets all equal)."""
    if targets.numel() < 2:
        return float("nan")
    target_var = targets.var()
    if target_var.item() == 0.0:
        return float("nan")
    return (1.0 - (targets - predictions).var() / target_var).item()


def normalize_advantages(advantages):
    """``(A - mean) / (std + 1e-8)`` over the last axis, each minibatch (or each seed's, with a
    leading seed axis) on its own; numpy or torch in, the same out. The std is the unbiased one, as
    ``torch.std`` computes it. A single sample is returned as is (its std is undefined).
    Per-minibatch normalisation is one of the PPO details of Huang et al. (2022, detail 7)."""
    if advantages.shape[-1] < 2:
        return advantages
    if isinstance(advantages, np.ndarray):
        return (advantages - advantages.mean(-1, keepdims=True)) / (
            advantages.std(-1, ddof=1, keepdims=True) + np.float32(1e-8)
        )
    return (advantages - advantages.mean(-1, keepdim=True)) / (advantages.std(-1, keepdim=True) + 1e-8)
