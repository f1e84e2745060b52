"""Action distributions: a stable TruncatedNormal and the policy heads built on it.

A policy network ends in a *head*: a module that turns a feature vector into a
``torch.distributions.Distribution`` over actions. ``make_action_head`` picks the head from the
action space and the ``action_dist`` hyperparameter.

Every head follows the same contract, so the algorithms never branch on the action space:

- ``head(features)`` with ``features`` of shape ``(B, in_features)`` returns a distribution whose
  ``log_prob(action)`` and ``entropy()`` have shape ``(B,)`` (continuous heads sum over action
  dimensions through ``Independent(..., 1)``);
- ``head.deterministic(dist)`` is the action of the deterministic policy.

The TruncatedNormal formulas follow J. Burkardt, "The Truncated Normal Distribution" (2014,
people.sc.fsu.edu/~jburkardt/presentations/truncated_normal.pdf). Written naively they cancel
catastrophically once the mean lies several standard deviations outside the bounds, which is
exactly where a policy ends up when it learns to push an action against its limit; the comments
below say how each quantity avoids that.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal, constraints
from torch.distributions.utils import broadcast_all

from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.nets import POLICY_OUTPUT_GAIN, layer_init

__all__ = [
    "ACTION_DISTS",
    "MIN_STD",
    "CategoricalHead",
    "DiagGaussianHead",
    "TruncatedNormal",
    "TruncatedNormalHead",
    "make_action_head",
]

ACTION_DISTS: tuple[str, ...] = ("auto", "categorical", "gaussian", "truncated_normal")

# Floor on a state-dependent standard deviation. softplus saturates towards 0 for very negative
# pre-activations; without a floor the std can underflow, log_prob at the mean goes to +inf and
# the policy gradient to NaN. 1e-3 of a normalised action range is far below any useful
# exploration noise, so it never binds in a healthy run.
MIN_STD = 1e-3

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)

# Below this log-probability, exp() of it is subnormal in float64 (exp(-708) ~ 2.2e-308) and ndtri
# cannot be trusted; _ndtri_exp switches to Newton iteration on log_ndtr there.
_NDTRI_EXP_NEWTON_BELOW = -680.0
# Where the erfcx-based inverse Mills ratio hands over to the continued fraction, and the depth of
# that fraction: at x >= 8 a depth of 16 is accurate to ~3e-15 relative (checked against mpmath),
# while the erfcx form stays within ~3e-13 below 8.
_MILLS_CONTINUED_FRACTION_FROM = 8.0
_MILLS_CONTINUED_FRACTION_DEPTH = 16


# ---------------------------------------------------------------------------------------------
# Standard-normal helpers (float64 tensors in, float64 out)
# ---------------------------------------------------------------------------------------------


def _log_phi(x: Tensor) -> Tensor:
    """Log density of the standard normal."""
    return -0.5 * x * x - _LOG_SQRT_2PI


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0`` without cancellation.

    The two branches are M. Maechler, "Accurately Computing log(1 - exp(-|a|))" (2012): expm1 is
    accurate near 0, log1p far from it. Each branch gets a clamped input so the branch torch.where
    discards cannot feed inf or NaN into the backward pass.
    """
    near_zero = x > -_LOG_2
    from_expm1 = torch.log(-torch.expm1(x.clamp(min=-_LOG_2)))
    from_log1p = torch.log1p(-torch.exp(x.clamp(max=-_LOG_2)))
    return torch.where(near_zero, from_expm1, from_log1p)


def _ndtri_exp(log_p: Tensor) -> Tensor:
    """Inverse of ``log_ndtr``: the ``z`` with ``log Phi(z) = log_p``, for ``log_p <= 0``.

    Three regimes, so that each one sees a well-conditioned input:
    - ``log_p > log(1/2)``: ``z = -ndtri(1 - p)`` with ``1 - p = -expm1(log_p)`` computed exactly,
      since ``ndtri`` of a number just below 1 has lost its digits;
    - moderate: ``ndtri(exp(log_p))``;
    - ``log_p`` below ``_NDTRI_EXP_NEWTON_BELOW``, where ``exp`` underflows: Newton's method on
      ``log_ndtr(z) = log_p`` from the leading asymptotic term ``log Phi(z) ~ -z^2/2 - log(-z
      sqrt(2 pi))`` (Abramowitz & Stegun 26.2.12). The derivative ``phi/Phi ~ -z`` is large and
      smooth there, so four steps reach float64 precision (checked against scipy.special.ndtri_exp).
    Not differentiable by design: callers attach gradients by implicit differentiation.
    """
    upper = -torch.special.ndtri(-torch.expm1(log_p.clamp(min=-_LOG_2)))
    middle = torch.special.ndtri(torch.exp(log_p.clamp(min=_NDTRI_EXP_NEWTON_BELOW, max=-_LOG_2)))

    deep = log_p.clamp(max=_NDTRI_EXP_NEWTON_BELOW)
    minus_two_log_p = -2.0 * deep
    z = -torch.sqrt(minus_two_log_p - torch.log(minus_two_log_p) - 2.0 * _LOG_SQRT_2PI)
    for _ in range(4):
        log_cdf = torch.special.log_ndtr(z)
        z = z - (log_cdf - deep) * torch.exp(log_cdf - _log_phi(z))

    return torch.where(log_p > -_LOG_2, upper, torch.where(log_p < _NDTRI_EXP_NEWTON_BELOW, z, middle))


def _mills_excess(x: Tensor) -> tuple[Tensor, Tensor]:
    """For ``x >= 0`` return ``(m, g)`` with ``m = lambda(x) - x`` and ``g = 1 - x * m``.

    ``lambda(x) = phi(x) / (1 - Phi(x))`` is the inverse Mills ratio. ``m`` is the mean excess of a
    standard normal over ``x`` given it exceeds ``x``, and ``g`` is its second moment about ``x``;
    both shrink like ``1/x`` and ``2/x^2``, so computing them as differences of ``lambda`` and ``x``
    loses every digit once ``x`` reaches ~1e4 (and half of them at 100). For large ``x`` they come
    from Laplace's continued fraction ``lambda(x) = x + 1/(x + 2/(x + 3/(x + ...)))``
    (Abramowitz & Stegun 26.2.14): with ``K_j = x + (j+1)/K_{j+1}``, ``m = 1/K_1`` and
    ``g = 2/(K_1 K_2)``, with no subtraction at all. For small ``x`` the fraction converges
    slowly, and ``lambda = sqrt(2/pi) / erfcx(x/sqrt(2))`` is accurate instead.
    """
    x_small = x.clamp(min=0.0, max=_MILLS_CONTINUED_FRACTION_FROM)
    inverse_mills_small = math.sqrt(2.0 / math.pi) / torch.special.erfcx(x_small / math.sqrt(2.0))
    m_small = inverse_mills_small - x_small
    g_small = 1.0 - x_small * m_small

    x_large = x.clamp(min=_MILLS_CONTINUED_FRACTION_FROM)
    k_next = x_large  # truncating the fraction at depth N: K_N = x
    k_current = x_large
    for j in range(_MILLS_CONTINUED_FRACTION_DEPTH - 1, 0, -1):
        k_next, k_current = k_current, x_large + (j + 1) / k_current
    # the loop ends with k_current = K_1 and k_next = K_2
    m_large = 1.0 / k_current
    g_large = 2.0 / (k_current * k_next)

    use_large = x >= _MILLS_CONTINUED_FRACTION_FROM
    return torch.where(use_large, m_large, m_small), torch.where(use_large, g_large, g_small)


# ---------------------------------------------------------------------------------------------
# TruncatedNormal
# ---------------------------------------------------------------------------------------------


class TruncatedNormal(Distribution):
    """Normal(loc, scale) restricted to ``[low, high]`` and renormalised.

    Batched (``loc``, ``scale``, ``low``, ``high`` broadcast; bounds may be floats), reparameterised
    (``rsample`` is differentiable w.r.t. every parameter), and finite in every quantity for any
    ``loc`` -- including ``loc`` hundreds of standard deviations outside the bounds, where all the
    mass sits against one bound.

    Numerics. Everything is computed in float64 and cast back to the parameters' dtype: in
    float32, ``log Phi`` differences and ``ndtri`` near 1 lose the digits that the tails need, and
    the cost is irrelevant for policy-sized batches. The bounds keep the parameters' dtype, so a
    sample cast back to float32 cannot round outside them.

    The computation works in a reflected, standardised frame. With ``z = (x - loc) / scale``, the
    problem is reflected (``y = -z``) whenever ``loc`` is above the midpoint of the bounds, so that
    ``y`` lies in ``[t, s]`` where ``t`` is the standardised bound *nearest* to ``loc``, ``s >= |t|``
    and ``s >= 0``. If ``t > 0`` the mean lies outside the bounds and the mass sits at ``t``; all
    tail probabilities are then upper-tail probabilities ``Q(y) = 1 - Phi(y) = Phi(-y)``, which
    ``log_ndtr`` evaluates accurately (computing them as ``1 - Phi`` is what makes naive
    implementations return NaN). In that frame, with ``rho = Q(s) / Q(t)``:
    ``Z = Q(t) - Q(s) = Q(t) (1 - rho)``.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.real,
        "high": constraints.real,
    }
    has_rsample = True

    def __init__(
        self,
        loc: Tensor | float,
        scale: Tensor | float,
        low: Tensor | float,
        high: Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale, self.low, self.high = broadcast_all(loc, scale, low, high)
        super().__init__(self.loc.shape, validate_args=validate_args)
        if self._validate_args and not bool((self.low < self.high).all()):
            raise ValueError("TruncatedNormal needs low < high everywhere")
        self._standardise()

    def _standardise(self) -> None:
        """Cache the reflected, standardised frame described in the class docstring (float64)."""
        loc, scale = self.loc.double(), self.scale.double()
        low, high = self.low.double(), self.high.double()
        reflect = loc > 0.5 * (low + high)
        self._reflect = reflect
        # x = loc + direction * scale * y  and  y = t  at x = nearest_bound
        self._direction = torch.where(reflect, -1.0, 1.0).to(loc)
        self._nearest_bound = torch.where(reflect, high, low)
        self._t = torch.where(reflect, loc - high, low - loc) / scale
        self._s = torch.where(reflect, loc - low, high - loc) / scale
        self._width = (high - low) / scale  # s - t without its rounding error
        self._log_q_t = torch.special.log_ndtr(-self._t)
        self._log_q_s = torch.special.log_ndtr(-self._s)
        self._log_rho = self._log_q_s - self._log_q_t
        self._log_one_minus_rho = _log1mexp(self._log_rho)
        self._log_z = self._log_q_t + self._log_one_minus_rho

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: TruncatedNormal | None = None) -> TruncatedNormal:
        new = self._get_checked_instance(TruncatedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.low = self.low.expand(batch_shape)
        new.high = self.high.expand(batch_shape)
        super(TruncatedNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        new._standardise()
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.interval(self.low, self.high)

    # -- frame helpers ------------------------------------------------------------------------

    def _to_frame(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``value`` (any dtype, broadcastable) to ``(d, y)``: ``d = y - t >= 0`` is the
        standardised distance from the nearest bound, computed from ``value - bound`` directly so
        that it keeps its digits when ``t`` is huge."""
        value = value.double()
        distance = self._direction * (value - self._nearest_bound) / self.scale.double()
        return distance, self._t + distance

    def _out_dtype(self, tensor: Tensor) -> Tensor:
        return tensor.to(self.loc.dtype)

    def _moments_in_frame(self) -> tuple[Tensor, Tensor]:
        """``(E[y] - t, Var[y])`` in the standardised frame (float64).

        Inside the bounds (``t <= 0``) Burkardt's formulas are well conditioned:
        ``E[y] = (phi(t) - phi(s)) / Z`` and ``Var[y] = 1 + (t phi(t) - s phi(s)) / Z - E[y]^2``.
        Outside (``t > 0``) they subtract numbers of size ``t^2`` to get a variance of size
        ``1/t^2``, so the moments are taken about the bound instead. From ``y ~ N(0,1)`` on
        ``[t, s]``, with ``m = _mills_excess``, ``w = s - t`` (derivation: expand
        ``E[(y-t)^k]`` with ``phi(t)/Q(t) = t + m_t``):
        ``E[y-t] = (m_t - rho (m_s + w)) / (1 - rho)``,
        ``E[(y-t)^2] = (g_t - rho (g_s + 2 w m_s + w^2)) / (1 - rho)``.
        """
        t, s, width, log_z = self._t, self._s, self._width, self._log_z
        ratio_t = torch.exp(_log_phi(t) - log_z)
        ratio_s = torch.exp(_log_phi(s) - log_z)
        inside_mean = ratio_t - ratio_s
        inside_excess = inside_mean - t
        inside_variance = 1.0 + t * ratio_t - s * ratio_s - inside_mean * inside_mean

        m_t, g_t = _mills_excess(t)
        m_s, g_s = _mills_excess(s)
        rho = torch.exp(self._log_rho)
        one_minus_rho = torch.exp(self._log_one_minus_rho)
        outside_excess = (m_t - rho * (m_s + width)) / one_minus_rho
        outside_second = (g_t - rho * (g_s + 2.0 * width * m_s + width * width)) / one_minus_rho
        outside_variance = outside_second - outside_excess * outside_excess

        outside = t > 0
        excess = torch.where(outside, outside_excess, inside_excess)
        # Rounding can only push a variance of ~1e-300 below zero in degenerate cases (scale
        # ~1e8 times the width); the floor keeps stddev finite there.
        variance = torch.where(outside, outside_variance, inside_variance).clamp(min=torch.finfo(torch.float64).tiny)
        return excess, variance

    def _log_cdf_and_sf(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """``(log P(X <= value), log P(X > value))`` for ``value`` inside the support (float64).

        In the frame, ``P(Y <= y) = (Q(t) - Q(y)) / Z`` and ``P(Y > y) = (Q(y) - Q(s)) / Z``; both
        are written as one ``log_ndtr`` plus a ``log1mexp`` of a log-ratio, so whichever one is
        small keeps its relative precision. Reflection swaps the two.
        """
        distance, y = self._to_frame(value)
        y = torch.minimum(torch.maximum(y, self._t), self._s)
        log_q_y = torch.special.log_ndtr(-y)
        log_below = _log1mexp(log_q_y - self._log_q_t) - self._log_one_minus_rho
        log_above = log_q_y - self._log_q_t + _log1mexp(self._log_q_s - log_q_y) - self._log_one_minus_rho
        return torch.where(self._reflect, log_above, log_below), torch.where(self._reflect, log_below, log_above)

    def _log_prob64(self, value: Tensor) -> Tensor:
        """Log density in float64, -inf outside the support.

        ``log f = log phi(y) - log Z - log scale``. Outside the bounds (``t > 0``), ``log phi(y)``
        and ``log Z`` are both ~ ``-t^2/2``; writing ``y = t + d`` and
        ``log Q(t) = log phi(t) - log(t + m_t)`` cancels the ``t^2`` terms symbolically:
        ``log f = -t d - d^2/2 + log(t + m_t) - log(1 - rho) - log scale``.
        """
        distance, y = self._to_frame(value)
        t = self._t
        m_t, _ = _mills_excess(t)
        outside = -t * distance - 0.5 * distance * distance + torch.log(t.clamp(min=0.0) + m_t)
        inside = _log_phi(y) - self._log_q_t
        log_density = torch.where(t > 0, outside, inside) - self._log_one_minus_rho - torch.log(self.scale.double())
        in_support = (distance >= 0) & (distance <= self._width)
        return torch.where(in_support, log_density, -math.inf)

    # -- Distribution API ---------------------------------------------------------------------

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._out_dtype(self._log_prob64(value))

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_cdf, _ = self._log_cdf_and_sf(value)
        value64 = value.double()
        cdf = torch.where(value64 >= self.high.double(), 1.0, torch.exp(log_cdf))
        return self._out_dtype(torch.where(value64 <= self.low.double(), 0.0, cdf))

    def icdf(self, value: Tensor | float) -> Tensor:
        """Quantile function; differentiable w.r.t. the parameters and ``value``.

        The quantile is found without autograd (Newton steps and branches), then the gradient is
        attached by implicit differentiation of ``F(x; theta) = p`` (Figurnov et al. 2018,
        "Implicit Reparameterization Gradients"): ``dx/dtheta = -(dF/dtheta) / f(x)``. It is
        applied as ``x + c (g - g.detach())`` so the value stays exactly ``x``. For ``p > 1/2`` the
        survival function is used instead of ``F``, which keeps it small and precise.
        """
        probability = torch.as_tensor(value, device=self.loc.device).double()
        if self._validate_args and not bool(((probability >= 0) & (probability <= 1)).all()):
            raise ValueError("TruncatedNormal.icdf needs probabilities in [0, 1]")
        probability, _ = torch.broadcast_tensors(probability, self._t)
        low, high = self.low.double(), self.high.double()

        with torch.no_grad():
            p = probability.detach()
            # P(Y <= y) and P(Y > y): reflection turns "X below x" into "Y above y"
            below = torch.where(self._reflect, 1.0 - p, p)
            above = torch.where(self._reflect, p, 1.0 - p)
            # Q(y) = Q(t) - below * Z, or Q(y) = Q(s) + above * Z: take the one whose probability
            # is at most 1/2, the other loses the digits of a small probability to 1 - p.
            log_q_from_below = self._log_q_t + _log1mexp(torch.log(below) + self._log_one_minus_rho)
            log_q_from_above = torch.logaddexp(self._log_q_s, torch.log(above) + self._log_z)
            log_q_y = torch.where(below <= 0.5, log_q_from_below, log_q_from_above)
            y = -_ndtri_exp(log_q_y)
            quantile = self.loc.double() + self._direction * self.scale.double() * y
            quantile = torch.minimum(torch.maximum(quantile, low), high)
            # the ends exactly, which the rounding of _ndtri_exp would otherwise miss by an ulp or so
            quantile = torch.where(p == 0, low, torch.where(p == 1, high, quantile))

        needs_grad = torch.is_grad_enabled() and any(
            tensor.requires_grad for tensor in (probability, self.loc, self.scale, self.low, self.high)
        )
        if not needs_grad:
            return self._out_dtype(quantile)

        # At a bound (p = 0 or 1) the quantile is the bound itself; evaluate the surrogate at a
        # harmless interior point there and discard it, so no -inf reaches the backward pass.
        interior = (quantile > low) & (quantile < high)
        point = torch.where(interior, quantile, 0.5 * (low + high))
        p_safe = torch.where(interior, probability, 0.5)
        log_cdf, log_sf = self._log_cdf_and_sf(point)
        log_density = self._log_prob64(point).detach()
        use_cdf = p_safe.detach() <= 0.5
        residual = torch.where(use_cdf, log_cdf - torch.log(p_safe), log_sf - torch.log1p(-p_safe))
        # d log F = dF / F, so the step -(dF)/f becomes -(F/f) d log F (and +(S/f) d log S)
        step = torch.where(use_cdf, -torch.exp(log_cdf.detach() - log_density), torch.exp(log_sf.detach() - log_density))
        attached = quantile + step * (residual - residual.detach())
        return self._out_dtype(torch.where(interior, attached, quantile))

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        # inverse-CDF sampling; float64 uniforms so that tail quantiles are resolved
        uniform = torch.rand(shape, dtype=torch.float64, device=self.loc.device)  # (*sample_shape, *batch_shape)
        return self.icdf(uniform)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    @property
    def mean(self) -> Tensor:
        excess, _ = self._moments_in_frame()
        # measured from the nearest bound: loc + scale * E[z] would cancel when loc is far outside
        return self._out_dtype(self._nearest_bound + self._direction * self.scale.double() * excess)

    @property
    def mode(self) -> Tensor:
        return torch.minimum(torch.maximum(self.loc, self.low), self.high)

    @property
    def variance(self) -> Tensor:
        _, variance = self._moments_in_frame()
        return self._out_dtype(self.scale.double().square() * variance)

    @property
    def stddev(self) -> Tensor:
        _, variance = self._moments_in_frame()
        return self._out_dtype(self.scale.double() * variance.sqrt())

    def entropy(self) -> Tensor:
        """Differential entropy.

        Burkardt: ``H = log(sqrt(2 pi e) scale Z) + (t phi(t) - s phi(s)) / (2 Z)`` in the frame.
        Outside the bounds ``log Z`` and ``t phi(t) / (2Z)`` are both ~ ``t^2/2`` with opposite
        signs; substituting ``log Z = log phi(t) - log(t + m_t) + log(1 - rho)`` cancels them:
        ``H = log scale + 1/2 - log(t + m_t) + log(1 - rho)
        + (t m_t - rho (w (2t + w) + s m_s)) / (2 (1 - rho))``.
        """
        t, s, width, log_z = self._t, self._s, self._width, self._log_z
        log_scale = torch.log(self.scale.double())

        ratio_t = torch.exp(_log_phi(t) - log_z)
        ratio_s = torch.exp(_log_phi(s) - log_z)
        inside = log_scale + _LOG_SQRT_2PI + 0.5 + log_z + 0.5 * (t * ratio_t - s * ratio_s)

        m_t, _ = _mills_excess(t)
        m_s, _ = _mills_excess(s)
        t_outside = t.clamp(min=0.0)
        rho = torch.exp(self._log_rho)
        one_minus_rho = torch.exp(self._log_one_minus_rho)
        correction = (t_outside * m_t - rho * (width * (2.0 * t_outside + width) + s * m_s)) / (2.0 * one_minus_rho)
        outside = log_scale + 0.5 - torch.log(t_outside + m_t) + self._log_one_minus_rho + correction

        return self._out_dtype(torch.where(t > 0, outside, inside))


# ---------------------------------------------------------------------------------------------
# Action heads
# ---------------------------------------------------------------------------------------------


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
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))  # (action_dim,)

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
        # a small output gain makes the initial policy nearly uniform (Andrychowicz et al. 2021, C.2)
        self.logits = layer_init(nn.Linear(in_features, n_actions), POLICY_OUTPUT_GAIN)

    def forward(self, features: Tensor) -> Categorical:
        return Categorical(logits=self.logits(features))  # logits (B, n_actions)

    def deterministic(self, dist: Categorical) -> Tensor:
        """The most probable action, int64 of shape ``(B,)``."""
        return dist.logits.argmax(dim=-1)


class DiagGaussianHead(nn.Module):
    """Unbounded continuous actions: independent Normals, float32 of shape ``(B, action_dim)``.

    Samples are not clipped here: the caller stores the raw action (its log-prob is what the
    policy gradient needs) and clips only what the environment receives.
    """

    def __init__(
        self, in_features: int, action_dim: int, state_dependent_std: bool = False, log_std_init: float = 0.0
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.mean = layer_init(nn.Linear(in_features, action_dim), POLICY_OUTPUT_GAIN)
        self.std = _StandardDeviation(in_features, action_dim, state_dependent_std, log_std_init)

    def forward(self, features: Tensor) -> Independent:
        return Independent(Normal(self.mean(features), self.std(features)), 1)  # batch (B,), event (action_dim,)

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
        self, in_features: int, action_dim: int, state_dependent_std: bool = False, log_std_init: float = 0.0
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.loc = layer_init(nn.Linear(in_features, action_dim), POLICY_OUTPUT_GAIN)
        self.std = _StandardDeviation(in_features, action_dim, state_dependent_std, log_std_init)

    def forward(self, features: Tensor) -> Independent:
        distribution = TruncatedNormal(self.loc(features), self.std(features), -1.0, 1.0)  # batch (B, action_dim)
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


ActionHead = CategoricalHead | DiagGaussianHead | TruncatedNormalHead

_SUPPORTED = "supported: Discrete (categorical) and 1-D Box (gaussian, truncated_normal)"


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
        raise ConfigError(f"unknown action_dist={action_dist!r}; expected one of {', '.join(ACTION_DISTS)}")

    if isinstance(action_space, gym.spaces.Discrete):
        if action_dist not in ("auto", "categorical"):
            raise UnsupportedSpaceError(f"action_dist={action_dist!r} needs a 1-D Box action space, got {action_space}")
        return CategoricalHead(in_features, int(action_space.n))

    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        if action_dist == "categorical":
            raise UnsupportedSpaceError(f"action_dist='categorical' needs a Discrete action space, got {action_space}")
        action_dim = int(action_space.shape[0])
        if action_dist == "truncated_normal":
            if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
                raise UnsupportedSpaceError(
                    f"action_dist='truncated_normal' needs finite Box bounds, got {action_space}"
                )
            return TruncatedNormalHead(in_features, action_dim, state_dependent_std, log_std_init)
        return DiagGaussianHead(in_features, action_dim, state_dependent_std, log_std_init)

    raise UnsupportedSpaceError(f"action space {action_space} is not supported; {_SUPPORTED}")
