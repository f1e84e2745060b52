"""``TruncatedNormal``: a normal distribution restricted to ``[low, high]``, numerically stable.

The formulas follow J. Burkardt, "The Truncated Normal Distribution" (2014,
people.sc.fsu.edu/~jburkardt/presentations/truncated_normal.pdf). Written naively they cancel
catastrophically once the location lies several standard deviations outside the bounds, which
is exactly where a policy ends up when it learns to push an action against its limit; the
comments below say how each quantity avoids that. The action head built on it is in
:mod:`pgrad.distributions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["TruncatedNormal"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_TINY = torch.finfo(torch.float64).tiny

# Below this log-probability, exp() of it is subnormal in float64 (exp(-708) ~ 2.2e-308) and ndtri
# cannot be trusted; _ndtri_exp switches to Newton iteration on log_ndtr there.
_NDTRI_EXP_NEWTON_BELOW = -680.0
# How far (in standard deviations) loc must lie beyond the nearest bound before TruncatedNormal
# switches from Burkardt's closed forms to ones taken about the bound. Up to 8 the closed forms
# lose at most ~1e-12 relative (their cancellation grows like 1e-16 t^4 in the variance); from 8
# on, the continued fraction in _mills_excess converges to ~3e-14 relative at depth 12 (checked
# against mpmath).
_FAR_OUTSIDE = 8.0
_MILLS_CONTINUED_FRACTION_DEPTH = 12
# Gauss-Legendre rule for the near-uniform regime (TruncatedNormal._near_uniform_moments). There
# the integrand exp(-c u - u^2/2) varies by a factor of at most ~e over the interval, and an
# 8-point rule (exact for polynomials of degree 15) is accurate to float64 rounding.
_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = (torch.from_numpy(array) for array in np.polynomial.legendre.leggauss(8))


# ---------------------------------------------------------------------------------------------
# Numerical helpers (float64 tensors in, float64 out)
# ---------------------------------------------------------------------------------------------


def _where(condition: Tensor, if_true: Callable[[], Tensor], if_false: Callable[[], Tensor]) -> Tensor:
    """``torch.where(condition, if_true(), if_false())``, evaluating only the branches in use.

    The branches below are chains of 10-60 elementwise ops on policy-sized tensors, where each op
    costs microseconds of dispatch; one ``any()``/``all()`` on the host is far cheaper than a
    branch no element needs (typically the whole batch sits in one regime). As with
    ``torch.where``, each branch must be finite, with finite gradients, on every element.
    """
    if not bool(condition.any()):
        result = if_false()
    elif bool(condition.all()):
        result = if_true()
    else:
        return torch.where(condition, if_true(), if_false())
    return result.expand(torch.broadcast_shapes(condition.shape, result.shape))


def _log_phi(x: Tensor) -> Tensor:
    """Log density of the standard normal."""
    return -0.5 * x * x - _LOG_SQRT_2PI


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0`` without cancellation.

    The two branches are M. Maechler, "Accurately Computing log(1 - exp(-|a|))" (2012): expm1 is
    accurate near 0, log1p far from it. Each branch gets a clamped input so the branch torch.where
    discards cannot feed inf or NaN into the backward pass. ``x`` is also kept below ``-tiny``:
    it rounds to 0 where the two tail probabilities it compares agree to every digit (a cdf that
    underflows, far below loc), and the result there is ~-708 with a zero gradient rather than
    ``-inf`` with a NaN one.
    """
    from_expm1 = torch.log(-torch.expm1(x.clamp(min=-_LOG_2, max=-_TINY)))
    from_log1p = torch.log1p(-torch.exp(x.clamp(max=-_LOG_2)))
    return torch.where(x > -_LOG_2, from_expm1, from_log1p)


def _ndtri_exp(log_p: Tensor) -> Tensor:
    """Inverse of ``log_ndtr``: the ``z`` with ``log Phi(z) = log_p``, for ``log_p <= 0``.

    Three regimes, so that each one sees a well-conditioned input:
    - ``log_p > log(1/2)``: ``z = -ndtri(1 - p)`` with ``1 - p = -expm1(log_p)`` computed exactly,
      since ``ndtri`` of a number just below 1 has lost its digits;
    - moderate: ``ndtri(exp(log_p))``;
    - ``log_p`` below ``_NDTRI_EXP_NEWTON_BELOW``, where ``exp`` underflows: Newton's method on
      ``log_ndtr(z) = log_p``, started from the leading asymptotic term
      ``log Phi(z) ~ -z^2/2 - log(-z sqrt(2 pi))`` (Abramowitz & Stegun 26.2.12). The derivative
      ``phi/Phi ~ -z`` is large and smooth there; four steps reach float64 precision (checked
      against scipy.special.ndtri_exp).
    Not differentiable by design: TruncatedNormal.icdf attaches gradients implicitly.
    """

    def deep_tail() -> Tensor:
        deep = log_p.clamp(max=_NDTRI_EXP_NEWTON_BELOW)
        minus_two_log_p = -2.0 * deep
        z = -torch.sqrt(minus_two_log_p - torch.log(minus_two_log_p) - 2.0 * _LOG_SQRT_2PI)
        for _ in range(4):
            log_cdf = torch.special.log_ndtr(z)
            z = z - (log_cdf - deep) * torch.exp(log_cdf - _log_phi(z))
        return z

    def lower_half() -> Tensor:
        moderate = log_p.clamp(min=_NDTRI_EXP_NEWTON_BELOW, max=-_LOG_2)
        return _where(
            log_p < _NDTRI_EXP_NEWTON_BELOW,
            deep_tail,
            lambda: torch.special.ndtri(torch.exp(moderate)),
        )

    def upper_half() -> Tensor:
        return -torch.special.ndtri(-torch.expm1(log_p.clamp(min=-_LOG_2)))

    return _where(log_p > -_LOG_2, upper_half, lower_half)


def _mills_excess(x: Tensor) -> tuple[Tensor, Tensor]:
    """For ``x >= _FAR_OUTSIDE`` return ``(m, g)`` with ``m = lambda(x) - x`` and ``g = 1 - x m``.

    ``lambda(x) = phi(x) / (1 - Phi(x))`` is the inverse Mills ratio. ``m`` is the mean excess of a
    standard normal over ``x`` given that it exceeds ``x``, and ``g`` its second moment about
    ``x``; they shrink like ``1/x`` and ``2/x^2``, so as differences of ``lambda`` and ``x`` they
    lose every digit once ``x`` reaches ~1e4. They come instead from Laplace's continued fraction
    ``lambda(x) = x + 1/(x + 2/(x + 3/(x + ...)))`` (Abramowitz & Stegun 26.2.14): with
    ``K_j = x + (j+1)/K_{j+1}``, ``m = 1/K_1`` and ``g = 2/(K_1 K_2)``, with no subtraction at
    all. The fraction converges slowly for small ``x``, hence the clamp (callers discard those).
    It is truncated at depth ``N`` with ``K_N`` set to the fixed point of ``K = x + (N+1)/K``,
    which gains about four levels of accuracy over ``K_N = x``.
    """
    x = x.clamp(min=_FAR_OUTSIDE)
    depth = _MILLS_CONTINUED_FRACTION_DEPTH
    k_next = k_current = 0.5 * (x + torch.sqrt(x * x + 4.0 * (depth + 1)))
    ones = torch.ones_like(x)
    for j in range(depth - 1, 0, -1):
        # x + (j + 1) / K in one op: a Python number over a tensor dispatches three
        k_next, k_current = k_current, torch.addcdiv(x, ones, k_current, value=j + 1)
    # the loop ends with k_current = K_1 and k_next = K_2
    return 1.0 / k_current, 2.0 / (k_current * k_next)


def _log_q_ratio_far(
    start: Tensor, gap: Tensor, inverse_mills_start: Tensor, inverse_mills_end: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(log Q(start + gap) - log Q(start), lambda(start + gap))`` for ``start >= _FAR_OUTSIDE``.

    Both ``log Q`` are ~``-start^2/2``, so their difference from ``log_ndtr`` has an absolute
    error of ~1e-16 start^2. With ``log Q(x) = log phi(x) - log lambda(x)`` the squares cancel
    symbolically: ``-gap (start + gap/2) + log lambda(start) - log lambda(start + gap)``.
    """
    end = start + gap
    if inverse_mills_end is None:
        m_end, _ = _mills_excess(end)
        inverse_mills_end = end + m_end
    log_ratio = -gap * (start + 0.5 * gap) + torch.log(inverse_mills_start) - torch.log(inverse_mills_end)
    return log_ratio, inverse_mills_end


# ---------------------------------------------------------------------------------------------
# TruncatedNormal
# ---------------------------------------------------------------------------------------------


class TruncatedNormal(Distribution):
    """Normal(loc, scale) restricted to ``[low, high]`` and renormalised.

    Batched (``loc``, ``scale``, ``low``, ``high`` broadcast; bounds may be floats), reparameterised
    (``rsample`` is differentiable w.r.t. every parameter), and finite in every quantity and
    gradient for any ``loc`` -- including ``loc`` thousands of standard deviations outside the
    bounds, where all the mass sits against one bound.

    Numerics. Everything is computed in float64 and cast back to the parameters' dtype: in
    float32, ``log Phi`` differences and ``ndtri`` near 1 lose the digits that the tails need, and
    the extra cost is small next to the per-op overhead on policy-sized batches. The bounds keep
    the parameters' dtype, so a sample cast back to float32 cannot round outside them.

    The computation works in a reflected, standardised frame. With ``z = (x - loc) / scale``, the
    problem is reflected (``y = -z``) whenever ``loc`` is above the midpoint of the bounds, so that
    ``y`` lies in ``[t, s]``, where ``t`` is the standardised bound *nearest* to ``loc``, and
    ``s >= max(0, -t)``. Tail probabilities are then always upper-tail ``Q(y) = 1 - Phi(y) =
    Phi(-y)`` of the far side of ``loc``, which ``log_ndtr`` evaluates accurately (forming them as
    ``1 - Phi`` is how naive implementations end in NaN). With ``rho = Q(s) / Q(t)``,
    ``Z = Q(t) - Q(s) = Q(t) (1 - rho)``. Three regimes:

    - loc inside the bounds or less than ``_FAR_OUTSIDE`` (8) standard deviations beyond them:
      Burkardt's formulas, accurate to ~1e-12 there;
    - far outside (``t > 8``): everything is measured from the nearest bound, in units where
      the ``t^2/2`` terms of ``log phi`` and ``log Q`` cancel symbolically (``_mills_excess``,
      ``_log_q_ratio_far``), so nothing is lost however large ``t`` gets;
    - near-uniform (``scale`` much larger than ``high - low``): moments and entropy by quadrature.

    Accuracy in float64, checked against mpmath in the tests: mean, variance, entropy, log_prob
    and cdf to ~1e-10 relative or better, icdf to within a few rounding errors of its argument and
    result, for loc up to 1e6 scales outside the bounds and scales from 1e-6 to 1e6 times their
    width. The weakest spot is the variance just below 8 scales outside (~4e-11).
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
        self._loc64, self._scale64, self._low64, self._high64 = loc, scale, low, high
        self._log_scale = torch.log(scale)
        reflect = loc > 0.5 * (low + high)
        self._reflect = reflect
        # x = loc + direction * scale * y, and y = t at x = nearest_bound
        self._direction = 1.0 - 2.0 * reflect.to(loc.dtype)
        self._nearest_bound = torch.where(reflect, high, low)
        self._t = self._direction * (self._nearest_bound - loc) / scale
        self._width = (high - low) / scale
        self._s = self._t + self._width
        self._cache: dict[str, tuple[Tensor, ...]] = {}
        self._far_outside = self._t > _FAR_OUTSIDE
        self._log_q_t = torch.special.log_ndtr(-self._t)
        self._log_q_s = torch.special.log_ndtr(-self._s)
        self._log_rho = _where(
            self._far_outside,
            lambda: _log_q_ratio_far(
                self._t.clamp(min=_FAR_OUTSIDE),
                self._width,
                self._inverse_mills_t(),
                self._inverse_mills_s(),
            )[0],
            lambda: self._log_q_s - self._log_q_t,
        )
        # Where log phi changes by less than ~1 across the bounds (scale >> high - low) the
        # density is nearly uniform, and the closed forms cancel down to noise: 1 - rho is then
        # ~(high - low) / scale, a difference of two nearly equal Q. Integrate instead.
        self._near_uniform = self._width * (1.0 + (self._t + 0.5 * self._width).abs()) < 1.0

        def near_uniform() -> Tensor:
            half_width, centre = self._uniform_frame()
            mass = self._centred_mass(-half_width, half_width)
            return _log_phi(centre) + torch.log(mass) - self._log_q_t

        self._log_one_minus_rho = _where(self._near_uniform, near_uniform, lambda: _log1mexp(self._log_rho))
        self._log_z = self._log_q_t + self._log_one_minus_rho

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: TruncatedNormal | None = None
    ) -> TruncatedNormal:
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

    # -- cached pieces of the frame -----------------------------------------------------------

    def _uniform_frame(self) -> tuple[Tensor, Tensor]:
        """``(h, c)``: half-width and centre of ``[t, s]`` where ``_near_uniform`` holds, and the
        harmless stand-ins ``(1/2, 0)`` elsewhere (discarded by ``_where``), computed once."""
        if "uniform_frame" not in self._cache:
            use = self._near_uniform
            half_width = torch.where(use, 0.5 * self._width, 0.5)
            centre = torch.where(use, self._t + 0.5 * self._width, 0.0)
            self._cache["uniform_frame"] = (half_width, centre)
        half_width, centre = self._cache["uniform_frame"]
        return half_width, centre

    def _mills_t(self) -> tuple[Tensor, Tensor]:
        """``_mills_excess`` at ``t`` (meaningful where ``t > _FAR_OUTSIDE``), computed once."""
        if "mills_t" not in self._cache:
            self._cache["mills_t"] = _mills_excess(self._t)
        m_t, g_t = self._cache["mills_t"]
        return m_t, g_t

    def _mills_s(self) -> tuple[Tensor, Tensor]:
        """``_mills_excess`` at ``s`` (meaningful where ``t > _FAR_OUTSIDE``), computed once."""
        if "mills_s" not in self._cache:
            self._cache["mills_s"] = _mills_excess(self._s)
        m_s, g_s = self._cache["mills_s"]
        return m_s, g_s

    def _inverse_mills_t(self) -> Tensor:
        """``lambda(t) = t + m_t`` where ``t > _FAR_OUTSIDE``."""
        m_t, _ = self._mills_t()
        return self._t.clamp(min=_FAR_OUTSIDE) + m_t

    def _inverse_mills_s(self) -> Tensor:
        """``lambda(s) = s + m_s`` where ``t > _FAR_OUTSIDE``."""
        m_s, _ = self._mills_s()
        return self._s.clamp(min=_FAR_OUTSIDE) + m_s

    def _moments_and_entropy(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(E[y] - t, Var[y], entropy of y)`` in the frame, computed once (float64).

        The entropy of ``x`` is that of ``y`` plus ``log scale``.
        """
        if "moments" not in self._cache:
            self._cache["moments"] = _where(
                self._near_uniform,
                self._near_uniform_moments,
                lambda: _where(self._far_outside, self._far_outside_moments, self._burkardt_moments),
            ).unbind(0)
        excess, variance, entropy = self._cache["moments"]
        return excess, variance, entropy

    def _burkardt_moments(self) -> Tensor:
        """Burkardt's formulas, for ``t <= _FAR_OUTSIDE``; stacked ``(E[y] - t, Var[y], H[y])``.

        ``E[y] = (phi(t) - phi(s)) / Z``, ``Var[y] = 1 + (t phi(t) - s phi(s)) / Z - E[y]^2``,
        ``H[y] = log(sqrt(2 pi e) Z) + (t phi(t) - s phi(s)) / (2 Z)``.
        """
        t, s = self._t, self._s
        ratio_t = torch.exp(_log_phi(t) - self._log_z)
        ratio_s = torch.exp(_log_phi(s) - self._log_z)
        mean = ratio_t - ratio_s
        tilt = t * ratio_t - s * ratio_s
        variance = 1.0 + tilt - mean * mean
        entropy = _LOG_SQRT_2PI + 0.5 + self._log_z + 0.5 * tilt
        return torch.stack((mean - t, variance, entropy))

    def _far_outside_moments(self) -> Tensor:
        """Moments about the nearest bound, for ``t > _FAR_OUTSIDE``; stacked like the others.

        Burkardt's variance subtracts numbers of size ``t^2`` to get one of size ``1/t^2``, so the
        moments are taken about ``t`` instead. Expanding ``E[(y - t)^k]`` over ``[t, s]`` with
        ``phi(t) / Q(t) = t + m_t`` (``m, g`` from ``_mills_excess``, ``w = s - t``):
        ``E[y - t] = (m_t - rho (m_s + w)) / (1 - rho)``,
        ``E[(y - t)^2] = (g_t - rho (g_s + 2 w m_s + w^2)) / (1 - rho)``.
        In the entropy, ``log Z`` and ``t phi(t) / (2Z)`` are both ~``t^2/2`` with opposite signs;
        substituting ``log Q(t) = log phi(t) - log(t + m_t)`` cancels them:
        ``H = 1/2 - log(t + m_t) + log(1 - rho)
        + (t m_t - rho (w (2t + w) + s m_s)) / (2 (1 - rho))``.
        """
        t, s, width = self._t.clamp(min=_FAR_OUTSIDE), self._s, self._width
        m_t, g_t = self._mills_t()
        m_s, g_s = self._mills_s()
        rho = torch.exp(self._log_rho)
        one_minus_rho = torch.exp(self._log_one_minus_rho)
        excess = (m_t - rho * (m_s + width)) / one_minus_rho
        second_moment = (g_t - rho * (g_s + 2.0 * width * m_s + width * width)) / one_minus_rho
        variance = second_moment - excess * excess
        correction = (t * m_t - rho * (width * (2.0 * t + width) + s * m_s)) / (2.0 * one_minus_rho)
        entropy = 0.5 - torch.log(t + m_t) + self._log_one_minus_rho + correction
        return torch.stack((excess, variance, entropy))

    def _centred_mass(self, start: Tensor, end: Tensor) -> Tensor:
        """``integral of exp(-c u - u^2/2) du`` over ``[start, end]``, for the near-uniform regime.

        This is ``integral of phi(y) dy / phi(c)`` over ``y = c + u``; Gauss-Legendre with
        ``c`` from ``_uniform_frame``. Accurate to rounding where ``_near_uniform`` holds (see
        ``_near_uniform_moments``).
        """
        half = 0.5 * (end - start)
        middle = 0.5 * (end + start)
        nodes = _LEGENDRE_NODES.to(half.device)
        weights = _LEGENDRE_WEIGHTS.to(half.device)
        offset = middle.unsqueeze(-1) + half.unsqueeze(-1) * nodes  # (*shape, n_nodes)
        _, centre = self._uniform_frame()
        centre = centre.unsqueeze(-1)
        integrand = torch.exp(-centre * offset - 0.5 * offset * offset)  # (*shape, n_nodes)
        return half * (weights * integrand).sum(-1)

    def _near_uniform_moments(self) -> Tensor:
        """Moments by quadrature where the density is nearly flat; stacked like the others.

        With ``c`` the centre of ``[t, s]``, ``h`` its half-width and ``y = c + u``, the density
        is ``exp(-c u - u^2/2)`` up to a constant on ``[-h, h]``. In this regime it varies by a
        factor of at most ~e, so Gauss-Legendre quadrature is exact to rounding, and the moments
        are taken about the centre, so nothing cancels. Elements outside the regime get harmless
        stand-ins (h = 1/2, c = 0) that ``_where`` discards.
        """
        half_width, centre = self._uniform_frame()
        nodes = _LEGENDRE_NODES.to(half_width.device)
        weights = _LEGENDRE_WEIGHTS.to(half_width.device)
        offset = half_width.unsqueeze(-1) * nodes  # (*batch, n_nodes)
        # (*batch, n_nodes)
        log_unnormalised = -centre.unsqueeze(-1) * offset - 0.5 * offset.square()
        weighted = weights * torch.exp(log_unnormalised)  # (*batch, n_nodes)
        total = weighted.sum(-1)
        mean_offset = (weighted * offset).sum(-1) / total
        variance = (weighted * (offset - mean_offset.unsqueeze(-1)).square()).sum(-1) / total
        # density of y = exp(log_unnormalised) / (h * total): the integral over u is h * sum(w g)
        entropy = torch.log(half_width * total) - (weighted * log_unnormalised).sum(-1) / total
        return torch.stack((half_width + mean_offset, variance, entropy))

    def _to_frame(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """Map ``value`` (any dtype, broadcastable) to ``(d, y)``: ``d = y - t`` is the
        standardised distance from the nearest bound, computed from ``value - bound`` directly so
        that it keeps its digits when ``t`` is huge."""
        distance = self._direction * (value.double() - self._nearest_bound) / self._scale64
        return distance, self._t + distance

    def _log_cdf_and_sf(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """``(log P(X <= value), log P(X > value))`` for ``value`` inside the support (float64).

        In the frame, ``P(Y <= y) = (Q(t) - Q(y)) / Z = (1 - Q(y)/Q(t)) / (1 - rho)`` and
        ``P(Y > y) = (Q(y) - Q(s)) / Z = (Q(y)/Q(t)) (1 - Q(s)/Q(y)) / (1 - rho)``: log-ratios of
        upper-tail probabilities and ``log1mexp``, so whichever probability is small keeps its
        relative precision. Far outside, the log-ratios come from ``_log_q_ratio_far``.
        Reflection swaps the two results.
        """
        distance, _ = self._to_frame(value)
        distance = torch.minimum(distance.clamp(min=0.0), self._width)

        def far_outside() -> Tensor:
            t = self._t.clamp(min=_FAR_OUTSIDE)
            log_ratio_y_t, inverse_mills_y = _log_q_ratio_far(t, distance, self._inverse_mills_t())
            log_ratio_s_y, _ = _log_q_ratio_far(t + distance, self._width - distance, inverse_mills_y)
            return torch.stack((log_ratio_y_t, log_ratio_s_y))

        def burkardt() -> Tensor:
            log_q_y = torch.special.log_ndtr(-(self._t + distance))
            return torch.stack((log_q_y - self._log_q_t, self._log_q_s - log_q_y))

        def from_tail_ratios() -> Tensor:
            ratios = _where(self._far_outside, far_outside, burkardt)
            log_ratio_y_t, log_ratio_s_y = ratios.unbind(0)
            log_below = _log1mexp(log_ratio_y_t) - self._log_one_minus_rho
            log_above = log_ratio_y_t + _log1mexp(log_ratio_s_y) - self._log_one_minus_rho
            return torch.stack((log_below, log_above))

        def near_uniform() -> Tensor:
            # both Q ratios are ~1 here; integrate the two pieces instead
            half_width, _ = self._uniform_frame()
            offset = torch.minimum(torch.maximum(distance - half_width, -half_width), half_width)
            below = self._centred_mass(-half_width, offset).clamp(min=_TINY)
            above = self._centred_mass(offset, half_width).clamp(min=_TINY)
            log_total = torch.log(below + above)
            return torch.stack((torch.log(below) - log_total, torch.log(above) - log_total))

        log_below, log_above = _where(self._near_uniform, near_uniform, from_tail_ratios).unbind(0)
        log_cdf = torch.where(self._reflect, log_above, log_below)
        log_sf = torch.where(self._reflect, log_below, log_above)
        return log_cdf, log_sf

    def _far_outside_distance(self, log_ratio: Tensor) -> Tensor:
        """Solve ``log Q(t + d) - log Q(t) = log_ratio`` for ``d`` where ``t > _FAR_OUTSIDE``.

        Solving for ``d`` rather than ``y = t + d`` keeps the quantile's digits when ``t`` is
        huge. Newton's method: the derivative of ``log Q(t + d)`` is ``-lambda(t + d)``. The start
        drops the slowly varying ``log lambda`` terms of ``_log_q_ratio_far`` and solves the
        remaining quadratic ``-d (t + d/2) = log_ratio`` (in its cancellation-free form); four steps
        then reach float64 precision from t = 8 up (checked against mpmath in the tests).
        """
        t = self._t.clamp(min=_FAR_OUTSIDE)
        inverse_mills_t = self._inverse_mills_t()
        distance = -2.0 * log_ratio / (t + torch.sqrt(t * t - 2.0 * log_ratio))
        for _ in range(4):
            current, inverse_mills_y = _log_q_ratio_far(t, distance, inverse_mills_t)
            distance = distance + (current - log_ratio) / inverse_mills_y
        return torch.minimum(distance.clamp(min=0.0), self._width)

    def _log_prob64(self, value: Tensor) -> Tensor:
        """Log density in float64, -inf outside the support.

        ``log f = log phi(y) - log Q(t) - log(1 - rho) - log scale``. Far outside the bounds,
        ``log phi(y)`` and ``log Q(t)`` are both ~``-t^2/2``; writing ``y = t + d`` and
        ``log Q(t) = log phi(t) - log(t + m_t)`` cancels the ``t^2`` terms symbolically:
        ``log phi(y) - log Q(t) = -t d - d^2/2 + log(t + m_t)``.
        """
        distance, y = self._to_frame(value)

        def far_outside() -> Tensor:
            t = self._t.clamp(min=_FAR_OUTSIDE)
            m_t, _ = self._mills_t()
            return -t * distance - 0.5 * distance * distance + torch.log(t + m_t)

        log_density = _where(self._far_outside, far_outside, lambda: _log_phi(y) - self._log_q_t)
        log_density = log_density - self._log_one_minus_rho - self._log_scale
        in_support = (distance >= 0) & (distance <= self._width)
        return torch.where(in_support, log_density, -math.inf)

    # -- Distribution API ---------------------------------------------------------------------

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self._log_prob64(value).to(self.loc.dtype)

    def cdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        low, high = self._low64, self._high64
        value64 = value.double()
        # at or beyond a bound the answer is 0 or 1; evaluating the log-space formula there would
        # put -inf (and NaN gradients) into the discarded branch of torch.where
        interior = (value64 > low) & (value64 < high)
        log_cdf, _ = self._log_cdf_and_sf(torch.where(interior, value64, 0.5 * (low + high)))
        at_or_beyond = torch.where(value64 >= high, 1.0, 0.0).to(log_cdf)
        return torch.where(interior, torch.exp(log_cdf), at_or_beyond).to(self.loc.dtype)

    def icdf(self, value: Tensor | float) -> Tensor:
        """Quantile function; differentiable w.r.t. the parameters and ``value``.

        The quantile is found without autograd (Newton steps and branches), then the gradient is
        attached by implicit differentiation of ``F(x; theta) = p`` (Figurnov et al. 2018,
        "Implicit Reparameterization Gradients"): ``dx/dtheta = -(dF/dtheta) / f(x)``, applied as
        ``x + c (g - g.detach())`` so the value stays exactly ``x``. For ``p > 1/2`` the survival
        function replaces ``F``, which keeps it small and precise.
        """
        probability = torch.as_tensor(value, device=self.loc.device).double()
        if self._validate_args and not bool(((probability >= 0) & (probability <= 1)).all()):
            raise ValueError("TruncatedNormal.icdf needs probabilities in [0, 1]")
        probability, _ = torch.broadcast_tensors(probability, self._t)
        low, high = self._low64, self._high64

        with torch.no_grad():
            p = probability.detach()
            # P(Y <= y) and P(Y > y): reflection turns "X below x" into "Y above y"
            below = torch.where(self._reflect, 1.0 - p, p)
            above = torch.where(self._reflect, p, 1.0 - p)
            # Q(y)/Q(t) = 1 - below (1 - rho), or rho + above (1 - rho): take the one whose
            # probability is at most 1/2; the other would lose a small probability's digits to 1 - p
            log_ratio_y_t = torch.where(
                below <= 0.5,
                _log1mexp(torch.log(below) + self._log_one_minus_rho),
                torch.logaddexp(self._log_rho, torch.log(above) + self._log_one_minus_rho),
            )

            def far_outside() -> Tensor:
                distance = self._far_outside_distance(log_ratio_y_t)
                return self._nearest_bound + self._direction * self._scale64 * distance

            def burkardt() -> Tensor:
                y = -_ndtri_exp(self._log_q_t + log_ratio_y_t)
                return self._loc64 + self._direction * self._scale64 * y

            quantile = _where(self._far_outside, far_outside, burkardt)
            quantile = torch.minimum(torch.maximum(quantile, low), high)
            # the ends exactly, which the rounding of _ndtri_exp could miss by an ulp or so
            quantile = torch.where(p == 0, low, torch.where(p == 1, high, quantile))

        inputs = (probability, self.loc, self.scale, self.low, self.high)
        needs_grad = torch.is_grad_enabled() and any(tensor.requires_grad for tensor in inputs)
        if not needs_grad:
            return quantile.to(self.loc.dtype)

        # At a bound (p = 0 or 1) the quantile is the bound itself; evaluate the surrogate at a
        # harmless interior point there and discard it, so no -inf reaches the backward pass.
        interior = (quantile > low) & (quantile < high)
        point = torch.where(interior, quantile, 0.5 * (low + high))
        p_safe = torch.where(interior, probability, 0.5)
        log_cdf, log_sf = self._log_cdf_and_sf(point)
        log_density = self._log_prob64(point).detach()
        use_cdf = p_safe.detach() <= 0.5
        residual = torch.where(use_cdf, log_cdf - torch.log(p_safe), log_sf - torch.log1p(-p_safe))
        # dF = F d(log F), so the step -dF / f is -(F / f) d(log F), and +(S / f) d(log S) for S.
        # The stand-in points may have a negligible density, hence an infinite step: zero it,
        # or the discarded branch would backpropagate inf * 0 = NaN.
        step = torch.where(
            use_cdf,
            -torch.exp(log_cdf.detach() - log_density),
            torch.exp(log_sf.detach() - log_density),
        )
        step = torch.where(interior, step, 0.0)
        attached = quantile + step * (residual - residual.detach())
        return torch.where(interior, attached, quantile).to(self.loc.dtype)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        # inverse-CDF sampling from float64 uniforms, so that tail quantiles are resolved; the
        # global torch generator, like every torch.distributions sampler (seed with manual_seed)
        # (*sample_shape, *batch_shape)
        uniform = torch.rand(shape, dtype=torch.float64, device=self.loc.device)
        return self.icdf(uniform)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    @property
    def mean(self) -> Tensor:
        excess, _, _ = self._moments_and_entropy()
        # measured from the nearest bound: loc + scale * E[z] would cancel when loc is far outside
        return (self._nearest_bound + self._direction * self._scale64 * excess).to(self.loc.dtype)

    @property
    def mode(self) -> Tensor:
        return torch.minimum(torch.maximum(self.loc, self.low), self.high)

    @property
    def variance(self) -> Tensor:
        return (self._scale64.square() * self._standard_variance()).to(self.loc.dtype)

    @property
    def stddev(self) -> Tensor:
        return (self._scale64 * self._standard_variance().sqrt()).to(self.loc.dtype)

    def _standard_variance(self) -> Tensor:
        _, variance, _ = self._moments_and_entropy()
        # Only a degenerate rounding could make this non-positive; the floor keeps stddev and its
        # gradient finite whatever happens.
        return variance.clamp(min=_TINY)

    def entropy(self) -> Tensor:
        _, _, entropy = self._moments_and_entropy()
        return (self._log_scale + entropy).to(self.loc.dtype)
