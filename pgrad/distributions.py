"""Action heads: the last layer of a policy, from features to a distribution over actions.

A policy network ends in a *head*: a module that turns a feature vector into a
``torch.distributions.Distribution`` over actions. ``make_action_head`` picks the head from the
action space and the ``action_dist`` hyperparameter.

Every head follows the same contract, so the algorithms never branch on the action space:

- ``head(features)`` with ``features`` of shape ``(B, in_features)`` returns a distribution whose
  ``log_prob(action)`` and ``entropy()`` have shape ``(B,)`` (continuous heads sum over action
  dimensions through ``Independent(..., 1)``);
- ``head.deterministic(dist)`` is the action of the deterministic policy;
- the discrete heads also take ``head(features, mask)``, a bool mask over their logits that rules
  actions out (invalid-action masking: Huang & Ontanon 2022, "A Closer Look at Invalid Action
  Masking in Policy Gradient Algorithms").

The numerics of the bounded head's distribution are in :mod:`pgrad.truncated_normal`;
``TruncatedNormal`` is importable from here too.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Independent, Normal

from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.nets import POLICY_OUTPUT_GAIN, layer_init
from pgrad.truncated_normal import TruncatedNormal

__all__ = [
    "ACTION_DISTS",
    "MASKED_LOGIT",
    "MIN_STD",
    "ActionHead",
    "BernoulliHead",
    "CategoricalHead",
    "DiagGaussianHead",
    "MultiCategorical",
    "MultiCategoricalHead",
    "TruncatedNormal",
    "TruncatedNormalHead",
    "action_std",
    "make_action_head",
    "masked_logits",
]

ACTION_DISTS: tuple[str, ...] = ("auto", "categorical", "gaussian", "truncated_normal")

# Floor on a state-dependent standard deviation. softplus saturates towards 0 for very negative
# pre-activations; without a floor the std can underflow, log_prob at the mean goes to +inf and
# the policy gradient to NaN. 1e-3 of a normalised action range is far below any useful
# exploration noise, so it never binds in a healthy run.
MIN_STD = 1e-3

# ---------------------------------------------------------------------------------------------
# Action heads
# ---------------------------------------------------------------------------------------------


# The logit given to a masked-out action. Finite, unlike -inf: its probability is exactly 0 in
# float32 (exp underflows), yet entropy's p * log p stays 0 * (large) = 0 instead of 0 * inf = NaN,
# and gradients stay finite (the value sb3-contrib's MaskableCategorical uses too).
MASKED_LOGIT = -1e8


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """``logits`` with the entries where ``mask`` is False set to :data:`MASKED_LOGIT`."""
    if mask is None:
        return logits
    return torch.where(mask, logits, torch.tensor(MASKED_LOGIT, dtype=logits.dtype))


class _StandardDeviation(nn.Module):
    """The per-dimension standard deviation shared by the Gaussian and truncated-normal heads.

    State-independent (default): a learned ``log_std`` vector, as in the PPO paper (Schulman et
    al. 2017, sec. 6.1) and CleanRL's ppo_continuous_action. State-dependent: ``softplus`` of a
    linear layer plus ``MIN_STD``; its bias starts at the inverse softplus of the target so the
    initial std is ``exp(log_std_init)`` (Andrychowicz et al. 2021, "What Matters in On-Policy RL",
    sec. 3 / C.2: the initial std matters and softplus is a good transform), and its weights start
    small (gain ``POLICY_OUTPUT_GAIN``) so the initial std barely depends on the state.
    """

    def __init__(self, in_features: int, action_dim: int, state_dependent: bool, log_std_init: float) -> None:
        super().__init__()
        self.state_dependent = state_dependent
        if state_dependent:
            initial_std = math.exp(log_std_init)
            if initial_std <= MIN_STD:
                raise ConfigError(
                    f"log_std_init={log_std_init} gives std {initial_std:.3g}, "
                    f"which must exceed the state-dependent std floor {MIN_STD}"
                )
            softplus_target = initial_std - MIN_STD
            # inverse of softplus(b) = log(1 + e^b): b = v + log(1 - e^-v), stable for large v too
            inverse_softplus = softplus_target + math.log(-math.expm1(-softplus_target))
            self.linear = layer_init(nn.Linear(in_features, action_dim), POLICY_OUTPUT_GAIN, bias=inverse_softplus)
        else:
            # (action_dim,)
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, features: Tensor) -> Tensor:
        """Standard deviation of shape ``(B, action_dim)`` for ``features`` of shape ``(B, in)``."""
        if self.state_dependent:
            return nn.functional.softplus(self.linear(features)) + MIN_STD  # (B, action_dim)
        return self.log_std.exp().expand(features.shape[0], -1)  # (B, action_dim)


class CategoricalHead(nn.Module):
    """Discrete actions: ``Categorical`` over ``n_actions`` logits. Actions are int64 of shape
    ``(B,)`` holding indices ``0 .. n_actions - 1``."""

    def __init__(self, in_features: int, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions
        # a small output gain makes the initial policy nearly uniform (Andrychowicz et al. 2021)
        self.logits = layer_init(nn.Linear(in_features, n_actions), POLICY_OUTPUT_GAIN)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Categorical:
        """``mask``: bool ``(B, n_actions)``, False for an action that is not allowed now."""
        # validate_args=False: the checks cost more than the sampling at rollout batch sizes and guard
        # nothing here (finite weights are checked after every update, see Algorithm.learn)
        return Categorical(logits=masked_logits(self.logits(features), mask), validate_args=False)  # (B, n_actions)

    def deterministic(self, dist: Categorical) -> Tensor:
        """The most probable action, int64 of shape ``(B,)``."""
        return dist.logits.argmax(dim=-1)


class MultiCategorical(torch.distributions.Distribution):
    """Independent Categoricals, one per entry of a MultiDiscrete action: actions ``(B, k)`` int64,
    ``log_prob`` and ``entropy`` summed over the k entries, shape ``(B,)``."""

    arg_constraints: dict = {}

    def __init__(self, logits: Tensor, nvec: list[int]) -> None:
        # one Categorical per entry; their logits are consecutive slices of the head's output
        self.parts = [Categorical(logits=part, validate_args=False) for part in logits.split(nvec, dim=-1)]
        super().__init__(batch_shape=logits.shape[:-1], event_shape=(len(nvec),), validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return torch.stack([part.sample(sample_shape) for part in self.parts], dim=-1)

    def log_prob(self, actions: Tensor) -> Tensor:
        return torch.stack([part.log_prob(actions[..., i]) for i, part in enumerate(self.parts)], dim=-1).sum(-1)

    def entropy(self) -> Tensor:
        return torch.stack([part.entropy() for part in self.parts], dim=-1).sum(-1)

    @property
    def mode(self) -> Tensor:
        return torch.stack([part.logits.argmax(dim=-1) for part in self.parts], dim=-1)


class MultiCategoricalHead(nn.Module):
    """MultiDiscrete actions: one Categorical per entry, from one linear layer of ``sum(nvec)``
    logits. Actions are int64 of shape ``(B, k)``, each entry counted from 0 (the caller adds the
    space's ``start``)."""

    def __init__(self, in_features: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.logits = layer_init(nn.Linear(in_features, sum(self.nvec)), POLICY_OUTPUT_GAIN)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> MultiCategorical:
        """``mask``: bool ``(B, sum(nvec))``, each entry's allowed values side by side."""
        return MultiCategorical(masked_logits(self.logits(features), mask), self.nvec)

    def deterministic(self, dist: MultiCategorical) -> Tensor:
        """Each entry's most probable value, int64 of shape ``(B, k)``."""
        return dist.mode


class BernoulliHead(nn.Module):
    """MultiBinary actions: one Bernoulli per bit, float32 actions of shape ``(B, n)`` holding 0 or
    1 (a MultiBinary space of any shape is flattened to its n bits)."""

    def __init__(self, in_features: int, n_bits: int) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.logits = layer_init(nn.Linear(in_features, n_bits), POLICY_OUTPUT_GAIN)

    def forward(self, features: Tensor) -> Independent:
        # batch (B,), event (n_bits,)
        return Independent(Bernoulli(logits=self.logits(features), validate_args=False), 1, validate_args=False)

    def deterministic(self, dist: Independent) -> Tensor:
        """Each bit's more probable value (1 where its logit is positive), shape ``(B, n)``."""
        return (dist.base_dist.logits > 0).to(torch.float32)


class DiagGaussianHead(nn.Module):
    """Unbounded continuous actions: independent Normals, float32 of shape ``(B, action_dim)``.

    Samples are not clipped here: the caller stores the raw action (its log-prob is what the
    policy gradient needs) and clips only what the environment receives.
    """

    def __init__(
        self,
        in_features: int,
        action_dim: int,
        state_dependent_std: bool = False,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        # ``loc``, as torch's Normal and the truncated-normal head name it (the Gaussian's mean)
        self.loc = layer_init(nn.Linear(in_features, action_dim), POLICY_OUTPUT_GAIN)
        self.std = _StandardDeviation(in_features, action_dim, state_dependent_std, log_std_init)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        # policy files and checkpoints written before 2026-12-06 name this layer ``mean``
        for name in ("weight", "bias"):
            if f"{prefix}mean.{name}" in state_dict:
                state_dict[f"{prefix}loc.{name}"] = state_dict.pop(f"{prefix}mean.{name}")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, features: Tensor) -> Independent:
        # batch (B,), event (action_dim,)
        # validate_args=False: see CategoricalHead.forward
        return Independent(Normal(self.loc(features), self.std(features), validate_args=False), 1, validate_args=False)

    def deterministic(self, dist: Independent) -> Tensor:
        """The mean, shape ``(B, action_dim)`` (equal to the mode for a Gaussian)."""
        return dist.mean


class TruncatedNormalHead(nn.Module):
    """Bounded continuous actions: independent TruncatedNormals on the normalised box ``[-1, 1]``.

    The library maps ``[-1, 1]`` to the environment's bounds elsewhere, so samples are always
    valid actions and need no clipping. ``loc`` is an unbounded linear output: a policy that wants
    the bound can move ``loc`` past it, and the distribution stays finite there.
    """

    def __init__(
        self,
        in_features: int,
        action_dim: int,
        state_dependent_std: bool = False,
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.loc = layer_init(nn.Linear(in_features, action_dim), POLICY_OUTPUT_GAIN)
        self.std = _StandardDeviation(in_features, action_dim, state_dependent_std, log_std_init)

    def forward(self, features: Tensor) -> Independent:
        # batch (B, action_dim)
        distribution = TruncatedNormal(self.loc(features), self.std(features), -1.0, 1.0)
        return Independent(distribution, 1)  # batch (B,), event (action_dim,)

    def deterministic(self, dist: Independent) -> Tensor:
        """The mode, ``clamp(loc, -1, 1)``, shape ``(B, action_dim)``.

        The mode rather than the mean: the mean of a truncated normal is pulled inwards by an
        amount set by the exploration scale (by ~scale/|t| once loc is past a bound), so a policy
        that has learnt to push an action against its limit would, acting deterministically, stop
        short of it. The mode is the most likely action and matches the Gaussian head, whose
        deterministic action is ``loc``.
        """
        return dist.mode


def action_std(dist: torch.distributions.Distribution) -> Tensor | None:
    """The per-dimension standard deviation of a continuous head's distribution ``(B, d)``, None
    for a discrete one (the metrics report its mean to show exploration shrinking)."""
    if isinstance(dist, Independent) and hasattr(dist.base_dist, "scale"):
        return dist.base_dist.scale
    return None


ActionHead = CategoricalHead | MultiCategoricalHead | BernoulliHead | DiagGaussianHead | TruncatedNormalHead
"""Any head above: ``forward(features) -> Distribution`` and ``deterministic(dist) -> Tensor``."""

_SUPPORTED = (
    "supported: Discrete (categorical), MultiDiscrete (one categorical per entry), MultiBinary (bernoulli) and "
    "Box of any shape (gaussian, truncated_normal)"
)


def make_action_head(
    action_space: gym.spaces.Space,
    action_dist: str,
    in_features: int,
    state_dependent_std: bool = False,
    log_std_init: float = 0.0,
) -> ActionHead:
    """Build the head for ``action_space``.

    ``action_dist`` is one of ``ACTION_DISTS``; ``"auto"`` means categorical for ``Discrete`` and
    gaussian for ``Box``. A ``Discrete`` head outputs indices ``0 .. n-1``; the caller adds
    ``action_space.start`` before stepping the environment. A ``truncated_normal`` head lives on
    ``[-1, 1]`` and the caller rescales to the Box bounds, which must therefore be finite.

    Raises ``UnsupportedSpaceError`` (one line, naming the space) for any other combination, and
    ``ConfigError`` for an unknown ``action_dist``.
    """
    if action_dist not in ACTION_DISTS:
        expected = ", ".join(ACTION_DISTS)
        raise ConfigError(f"unknown action_dist={action_dist!r}; expected one of {expected}")

    if isinstance(action_space, gym.spaces.Discrete):
        if action_dist not in ("auto", "categorical"):
            raise UnsupportedSpaceError(f"action_dist={action_dist!r} needs a Box action space, got {action_space}")
        return CategoricalHead(in_features, int(action_space.n))

    if isinstance(action_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        if action_dist != "auto":
            raise UnsupportedSpaceError(
                f"action_dist={action_dist!r} does not apply to {action_space}; leave action_dist=auto"
            )
        if isinstance(action_space, gym.spaces.MultiBinary):
            return BernoulliHead(in_features, int(np.prod(action_space.shape)))
        return MultiCategoricalHead(in_features, [int(n) for n in np.asarray(action_space.nvec).reshape(-1)])

    if isinstance(action_space, gym.spaces.Box):
        if action_dist == "categorical":
            raise UnsupportedSpaceError(f"action_dist='categorical' needs a Discrete action space, got {action_space}")
        # a Box of any shape: the head acts on its flattened entries; the policy reshapes for the env
        action_dim = int(np.prod(action_space.shape))
        if action_dist == "truncated_normal":
            bounds = np.concatenate([action_space.low, action_space.high])
            if not np.all(np.isfinite(bounds)):
                raise UnsupportedSpaceError(
                    f"action_dist='truncated_normal' needs finite Box bounds, got {action_space}"
                )
            return TruncatedNormalHead(in_features, action_dim, state_dependent_std, log_std_init)
        return DiagGaussianHead(in_features, action_dim, state_dependent_std, log_std_init)

    raise UnsupportedSpaceError(f"action space {action_space} is not supported; {_SUPPORTED}")
