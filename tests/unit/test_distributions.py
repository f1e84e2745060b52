"""Tests for pgrad.distributions: TruncatedNormal against references, and the action heads.

References. scipy.stats.truncnorm is the first reference, but (scipy 1.17) its entropy returns
NaN once loc is ~8 scales outside the bounds, its variance loses digits beyond ~10 and its ppf
loses the digits of 1 - p as p -> 1; those are compared with scipy only where scipy is right.
Everything, including the far tails, is compared with mpmath at 60 significant digits when mpmath
is installed (it comes with torch, through sympy). Without mpmath the far tails fall back to the
finiteness and self-consistency checks of test_truncated_normal_tail_consistency.
"""

from __future__ import annotations

import math
import re

import gymnasium as gym
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import Categorical, Independent

from pgrad.distributions import (
    ACTION_DISTS,
    MIN_STD,
    CategoricalHead,
    DiagGaussianHead,
    TruncatedNormal,
    TruncatedNormalHead,
    make_action_head,
)
from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.truncated_normal import _ndtri_exp

try:
    import mpmath
except ImportError:  # pragma: no cover - mpmath ships with torch's sympy dependency
    mpmath = None

torch.set_num_threads(1)

Case = tuple[float, float, float, float]  # (loc, scale, low, high)

# inside, near a bound, on a bound, and outside by 1 to ~200 scales
SYMMETRIC: list[Case] = [
    (loc, scale, -1.0, 1.0)
    for loc in (0.0, 0.5, 0.95, -0.99, 1.0, 1.3, -2.0, 5.0, -5.0, 20.0, -20.0)
    for scale in (0.1, 0.5, 2.0)
]
ASYMMETRIC: list[Case] = [(loc, scale, -0.3, 2.0) for loc in (0.0, 1.9, -0.4, 3.0, -5.0, 20.0) for scale in (0.1, 1.0)]
# scales comparable to or larger than the bounds: around the switch to the near-uniform regime
WIDE: list[Case] = [
    (0.3, 2.5, -1.0, 1.0),
    (1.2, 3.0, -1.0, 1.0),
    (-0.5, 30.0, -1.0, 1.0),
    (4.0, 3.0, -0.3, 2.0),
]
GRID = SYMMETRIC + ASYMMETRIC + WIDE
# beyond what a policy should ever produce: 1e6 scales outside, a scale 1e6 times the bounds, ...
EXTREME: list[Case] = [
    (1e3, 1e-3, -1.0, 1.0),
    (-1e3, 1e-3, -1.0, 1.0),
    (-50.0, 1.0, -1.0, 1.0),
    (1e6, 1.0, -1.0, 1.0),
    (0.0, 1e-6, -1.0, 1.0),
    (1.0, 1e-3, -1.0, 1.0),
    (0.0, 1e6, -1.0, 1.0),
    (1.5, 1e4, -1.0, 1.0),
    (8.5, 1.0, -0.3, 0.2),
]
PROBABILITIES = [1e-300, 1e-12, 1e-4, 0.01, 0.3, 0.5, 0.9, 1 - 1e-4, 1 - 1e-9]
FLOAT64_EPS = float(np.finfo(np.float64).eps)


def case_id(case: Case) -> str:
    loc, scale, low, high = case
    return f"loc={loc:g},scale={scale:g},[{low:g},{high:g}]"


def scales_outside(loc: float, scale: float, low: float, high: float) -> float:
    """How many scales loc lies beyond the nearest bound (negative inside)."""
    return max(low - loc, loc - high) / scale


def build(case: Case, dtype: torch.dtype = torch.float64) -> TruncatedNormal:
    loc, scale, low, high = case
    return TruncatedNormal(torch.tensor(loc, dtype=dtype), torch.tensor(scale, dtype=dtype), low, high)


def stored_parameters(dist: TruncatedNormal) -> Case:
    """The parameters as the distribution holds them (float32 rounding included)."""
    loc, scale, low, high = (float(p.double()) for p in (dist.loc, dist.scale, dist.low, dist.high))
    return loc, scale, low, high


def scipy_reference(case: Case) -> scipy.stats.rv_continuous:
    loc, scale, low, high = case
    return scipy.stats.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)


# ---------------------------------------------------------------------------------------------
# TruncatedNormal against scipy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_truncated_normal_matches_scipy(case: Case, dtype: torch.dtype) -> None:
    dist = build(case, dtype)
    parameters = stored_parameters(dist)
    reference = scipy_reference(parameters)
    low, high = parameters[2], parameters[3]
    # float32 results are float64 results rounded once, plus the float32 point they are asked at
    rtol = 1e-9 if dtype == torch.float64 else 2e-6
    standard_deviation = float(np.sqrt(reference.var()))
    # points where the density is not negligible, from the reference so that a wrong icdf
    # cannot hide a wrong log_prob
    points = torch.tensor(np.clip(reference.ppf([0.05, 0.5, 0.95]), low, high), dtype=dtype)
    points64 = points.double().numpy()

    def close(actual: torch.Tensor, expected: np.ndarray | float, atol: float = 0.0) -> None:
        np.testing.assert_allclose(actual.double().numpy(), expected, rtol=rtol, atol=atol)

    close(dist.log_prob(points), reference.logpdf(points64), atol=rtol)
    close(dist.cdf(points), reference.cdf(points64), atol=rtol * 1e-3)
    close(dist.mean, reference.mean(), atol=rtol * standard_deviation)
    # the extreme probabilities are left to the mpmath test (see the module docstring)
    probabilities = torch.tensor([1e-4, 0.01, 0.3, 0.5, 0.9, 1 - 1e-4], dtype=dtype)
    # quantiles near a bound are numbers close to +-1: judge them on the scale of the spread
    ulp_of_one = float(torch.finfo(dtype).eps)
    spread_tolerance = 1e-8 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(
        dist.icdf(probabilities).double().numpy(),
        reference.ppf(probabilities.double().numpy()),
        rtol=0,
        atol=spread_tolerance * standard_deviation + 4 * ulp_of_one,
    )
    outside = scales_outside(*parameters)
    if outside < 10:  # scipy's variance degrades beyond
        close(dist.variance, reference.var())
    if outside < 5:  # and its entropy turns NaN
        close(dist.entropy(), reference.entropy(), atol=rtol)
    assert dist.log_prob(points).dtype == dtype and dist.icdf(probabilities).dtype == dtype


# ---------------------------------------------------------------------------------------------
# TruncatedNormal against mpmath, including the far tails
# ---------------------------------------------------------------------------------------------


class MpTruncatedNormal:
    """High-precision reference written from Burkardt's formulas directly."""

    def __init__(self, loc: float, scale: float, low: float, high: float) -> None:
        self.loc, self.scale = mpmath.mpf(loc), mpmath.mpf(scale)
        self.alpha = (mpmath.mpf(low) - self.loc) / self.scale
        self.beta = (mpmath.mpf(high) - self.loc) / self.scale
        self.z = self._mass_from_alpha(self.beta)

    def _mass_from_alpha(self, standardised: mpmath.mpf) -> mpmath.mpf:
        """Phi(x) - Phi(alpha), as Q(alpha) - Q(x) when alpha > 0: a difference of the small
        tails rather than of two numbers ~1, so 60 digits are plenty."""
        if self.alpha > 0:
            return mpmath.ncdf(-self.alpha) - mpmath.ncdf(-standardised)
        return mpmath.ncdf(standardised) - mpmath.ncdf(self.alpha)

    def standardise(self, x: float | mpmath.mpf) -> mpmath.mpf:
        return (mpmath.mpf(x) - self.loc) / self.scale

    def log_prob(self, x: float) -> float:
        z = self.standardise(x)
        return float(-z * z / 2 - mpmath.log(mpmath.sqrt(2 * mpmath.pi) * self.scale * self.z))

    def cdf(self, x: float | mpmath.mpf) -> mpmath.mpf:
        return self._mass_from_alpha(self.standardise(x)) / self.z

    def pdf(self, x: float | mpmath.mpf) -> mpmath.mpf:
        return mpmath.npdf(self.standardise(x)) / (self.scale * self.z)

    def quantile(self, p: float, start: float) -> mpmath.mpf:
        """Newton's method in 60 digits from ``start``."""
        x = mpmath.mpf(start)
        for _ in range(6):
            x -= (self.cdf(x) - p) / self.pdf(x)
        return x

    def moments(self) -> tuple[float, float, float]:
        """(mean, variance, entropy)."""
        a, b, z = self.alpha, self.beta, self.z
        phi_a, phi_b = mpmath.npdf(a), mpmath.npdf(b)
        mean = (phi_a - phi_b) / z
        tilt = (a * phi_a - b * phi_b) / z
        variance = 1 + tilt - mean**2
        entropy = mpmath.log(mpmath.sqrt(2 * mpmath.pi * mpmath.e) * self.scale * z) + tilt / 2
        return float(self.loc + self.scale * mean), float(self.scale**2 * variance), float(entropy)


@pytest.mark.parametrize("case", GRID + EXTREME, ids=case_id)
def test_truncated_normal_matches_mpmath(case: Case) -> None:
    if mpmath is None:
        pytest.skip("mpmath not installed; test_truncated_normal_tail_consistency covers the tails")
    loc, scale, low, high = case
    with mpmath.workdps(60):
        dist = build(case)
        reference = MpTruncatedNormal(*case)
        mean, variance, entropy = reference.moments()

        # the mean is judged on the scale of the bounds it lies between
        assert float(dist.mean) == pytest.approx(mean, rel=1e-10, abs=1e-12 * (high - low))
        assert float(dist.variance) == pytest.approx(variance, rel=1e-9)
        assert float(dist.entropy()) == pytest.approx(entropy, rel=1e-10, abs=1e-10)

        quantiles = dist.icdf(torch.tensor(PROBABILITIES, dtype=torch.float64))
        # The quantile is assembled as loc + scale * y within 8 scales of the bounds, and from the
        # nearest bound beyond: allow a few rounding errors of those terms, plus a relative 1e-13
        # of min(p, 1 - p) seen through the density.
        clipped_loc = min(max(loc, low - 8 * scale), high + 8 * scale)
        magnitude = abs(clipped_loc) + 8 * scale + max(abs(low), abs(high))
        for p, x in zip(PROBABILITIES, quantiles.tolist()):
            exact = reference.quantile(p, x)
            from_p = float(1e-13 * min(p, 1 - p) / reference.pdf(exact))
            assert abs(x - float(exact)) <= 8 * FLOAT64_EPS * magnitude + from_p, (p, x, exact)

        points = quantiles[1:-1]  # clear of both bounds
        for x, log_prob, cdf in zip(points.tolist(), dist.log_prob(points).tolist(), dist.cdf(points).tolist()):
            assert log_prob == pytest.approx(reference.log_prob(x), rel=1e-9, abs=1e-9)
            assert cdf == pytest.approx(float(reference.cdf(x)), rel=1e-9)


@pytest.mark.parametrize("case", GRID + EXTREME, ids=case_id)
def test_truncated_normal_tail_consistency(case: Case) -> None:
    """Reference-free properties, which hold however far loc is outside (and are the only check
    of the far tails when mpmath is missing)."""
    dist = build(case)
    low, high = case[2], case[3]
    for name in ("mean", "variance", "stddev"):
        assert torch.isfinite(getattr(dist, name)), name
    assert torch.isfinite(dist.entropy())
    assert low <= float(dist.mean) <= high
    assert float(dist.variance) > 0
    # Popoviciu's inequality: no law on [low, high] has a larger variance
    assert float(dist.variance) <= (high - low) ** 2 / 4
    assert float(dist.stddev) == pytest.approx(math.sqrt(float(dist.variance)), rel=1e-12)

    probabilities = torch.linspace(0.001, 0.999, 101, dtype=torch.float64)
    quantiles = dist.icdf(probabilities)
    assert bool(((quantiles >= low) & (quantiles <= high)).all())
    assert bool((quantiles[1:] >= quantiles[:-1]).all()), "icdf must be non-decreasing"
    log_prob = dist.log_prob(quantiles)
    assert bool(torch.isfinite(log_prob).all())
    # cdf(icdf(p)) = p up to the density times the rounding of the quantile
    interior = (quantiles > low) & (quantiles < high)
    rounding = 4 * FLOAT64_EPS * quantiles.abs().clamp(min=1.0)
    slack = 1e-9 + torch.exp(log_prob) * rounding
    assert bool(((dist.cdf(quantiles) - probabilities).abs() <= slack)[interior].all())
    assert float(dist.icdf(torch.tensor(0.0, dtype=torch.float64))) == low
    assert float(dist.icdf(torch.tensor(1.0, dtype=torch.float64))) == high
    assert float(dist.cdf(torch.tensor(low, dtype=torch.float64))) == 0.0
    assert float(dist.cdf(torch.tensor(high, dtype=torch.float64))) == 1.0


def test_ndtri_exp_matches_references() -> None:
    """The inverse of log_ndtr behind icdf, over all three of its regimes (ndtri of 1 - p, of p,
    and Newton's method where p underflows)."""
    log_p = -np.logspace(-12, 6, 400)  # from p ~ 1 - 1e-12 down to p = exp(-1e6)
    actual = _ndtri_exp(torch.from_numpy(log_p)).numpy()
    # scipy itself drifts to ~7e-13 relative below log p ~ -1e4 (where ours agrees with mpmath)
    np.testing.assert_allclose(actual, scipy.special.ndtri_exp(log_p), rtol=1e-12)
    if mpmath is not None:
        with mpmath.workdps(50):
            for value, z in list(zip(log_p, actual))[::20]:
                exact = mpmath.findroot(lambda u: mpmath.log(mpmath.ncdf(u)) - value, z)
                assert z == pytest.approx(float(exact), rel=2e-15)


def test_log_prob_outside_support_is_minus_infinity_only_there() -> None:
    dist = TruncatedNormal(torch.tensor([0.0, 30.0]), torch.tensor([0.5, 0.1]), -1.0, 1.0, validate_args=False)
    inside = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.3, 0.999]])
    assert bool(torch.isfinite(dist.log_prob(inside)).all())
    outside = torch.tensor([[-1.01, 1.01], [2.0, -3.0]])
    assert bool((dist.log_prob(outside) == -math.inf).all())


def test_validation() -> None:
    with pytest.raises(ValueError):
        TruncatedNormal(0.0, 1.0, 1.0, -1.0, validate_args=True)
    with pytest.raises(ValueError):
        TruncatedNormal(0.0, -1.0, -1.0, 1.0, validate_args=True)
    dist = TruncatedNormal(0.0, 1.0, -1.0, 1.0, validate_args=True)
    with pytest.raises(ValueError):
        dist.log_prob(torch.tensor(1.5))
    with pytest.raises(ValueError):
        dist.icdf(torch.tensor(1.5))


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, expand
# ---------------------------------------------------------------------------------------------


def test_batched_shapes_and_broadcasting() -> None:
    torch.manual_seed(0)
    loc = torch.randn(4, 3) * 3  # (4, 3)
    scale = torch.tensor([0.1, 1.0, 2.0])  # (3,)
    high = torch.tensor([[1.0], [2.0], [0.5], [3.0]])  # (4, 1)
    dist = TruncatedNormal(loc, scale, -1.0, high)
    assert dist.batch_shape == (4, 3) and dist.event_shape == ()
    samples = dist.sample((5,))  # (5, 4, 3)
    assert samples.shape == (5, 4, 3) and samples.dtype == torch.float32
    assert bool(((samples >= -1.0) & (samples <= high)).all())
    assert dist.log_prob(samples).shape == (5, 4, 3)
    for value in (dist.mean, dist.variance, dist.stddev, dist.mode, dist.entropy()):
        assert value.shape == (4, 3)
    assert dist.icdf(torch.full((5, 4, 3), 0.5)).shape == (5, 4, 3)
    assert dist.rsample().shape == (4, 3)
    # every batch element equals the same distribution built alone
    for i, j in [(0, 0), (2, 1), (3, 2)]:
        alone = TruncatedNormal(loc[i, j], scale[j], -1.0, high[i, 0])
        assert torch.allclose(alone.entropy(), dist.entropy()[i, j])
        assert torch.allclose(alone.log_prob(samples[:, i, j]), dist.log_prob(samples)[:, i, j])


def test_expand_matches_direct_construction() -> None:
    loc, scale = torch.tensor([0.3, 12.0]), torch.tensor([0.5, 0.2])
    expanded = TruncatedNormal(loc, scale, -1.0, 1.0).expand((3, 2))
    direct = TruncatedNormal(loc.expand(3, 2), scale.expand(3, 2), -1.0, 1.0)
    assert expanded.batch_shape == (3, 2)
    for name in ("mean", "variance", "mode"):
        assert torch.equal(getattr(expanded, name), getattr(direct, name))
    assert torch.equal(expanded.entropy(), direct.entropy())
    value = torch.tensor([0.1, 0.99])
    assert torch.equal(expanded.log_prob(value), direct.log_prob(value))


def test_support_and_mode() -> None:
    dist = TruncatedNormal(torch.tensor([-3.0, 0.25, 7.0]), 0.5, -1.0, 1.0)
    assert torch.equal(dist.mode, torch.tensor([-1.0, 0.25, 1.0]))
    assert bool(dist.support.check(torch.tensor([-1.0, 0.0, 1.0])).all())
    assert not bool(dist.support.check(torch.tensor([1.5])).any())
    assert dist.has_rsample


def test_float32_samples_stay_inside_bounds_that_float32_cannot_represent() -> None:
    # 0.1 is not a float32; samples piled against the bound must still pass validation
    torch.manual_seed(0)
    loc, scale = torch.full((1000,), 5.0), torch.full((1000,), 0.01)
    dist = TruncatedNormal(loc, scale, -0.1, 0.1, validate_args=True)
    samples = dist.sample()
    assert samples.dtype == torch.float32
    assert bool(((samples >= dist.low) & (samples <= dist.high)).all())
    assert bool(torch.isfinite(dist.log_prob(samples)).all())


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

SAMPLING_CASES: list[Case] = [
    (0.0, 1.0, -1.0, 1.0),
    (0.9, 0.3, -1.0, 1.0),
    (5.0, 0.1, -1.0, 1.0),
    (-20.0, 2.0, -1.0, 1.0),
    (3.0, 1.0, -0.3, 2.0),
    (1e3, 1e-3, -1.0, 1.0),
]


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=case_id)
def test_sample_moments_and_distribution(case: Case) -> None:
    torch.manual_seed(1234)
    n_samples = 200_000
    dist = build(case)
    samples = dist.sample((n_samples,))  # (n_samples,)
    low, high = case[2], case[3]
    assert bool(((samples >= low) & (samples <= high)).all())
    mean, variance = float(dist.mean), float(dist.variance)
    # six standard errors: a false alarm about once in 5e8 runs (and the seed is fixed)
    assert abs(float(samples.mean()) - mean) <= 6 * math.sqrt(variance / n_samples)
    squared_deviation = (samples - mean) ** 2
    squared_deviation_error = float(squared_deviation.std()) / math.sqrt(n_samples)
    assert abs(float(squared_deviation.mean()) - variance) <= 6 * squared_deviation_error
    # the whole law, not just two moments: Kolmogorov-Smirnov against our cdf (tested above)
    statistic = scipy.stats.kstest(samples.numpy(), lambda x: dist.cdf(torch.from_numpy(x)).numpy()).statistic
    assert statistic < 1.95 / math.sqrt(n_samples)  # the 0.1% critical value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", EXTREME + [(20.0, 0.1, -1.0, 1.0), (-20.0, 0.1, -1.0, 1.0)], ids=case_id)
def test_extreme_parameters_stay_finite_with_finite_gradients(case: Case, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    loc = torch.tensor([case[0]], dtype=dtype, requires_grad=True)
    scale = torch.tensor([case[1]], dtype=dtype, requires_grad=True)
    dist = TruncatedNormal(loc, scale, case[2], case[3])
    samples = dist.rsample((2000,))  # (2000, 1)
    assert bool(((samples >= case[2]) & (samples <= case[3])).all())
    probabilities = torch.tensor([[0.0], [1e-300], [1e-9], [0.5], [1.0]], dtype=dtype)  # (5, 1)
    outputs = {
        "samples": samples,
        "log_prob": dist.log_prob(samples.detach()),
        "entropy": dist.entropy(),
        "mean": dist.mean,
        "variance": dist.variance,
        "stddev": dist.stddev,
        "cdf": dist.cdf(samples.detach()),
        "icdf": dist.icdf(probabilities),
    }
    for name, value in outputs.items():
        assert value.dtype == dtype, name
        assert bool(torch.isfinite(value).all()), name
        loc.grad = scale.grad = None
        value.sum().backward(retain_graph=True)
        assert loc.grad is not None and bool(torch.isfinite(loc.grad).all()), name
        assert scale.grad is not None and bool(torch.isfinite(scale.grad).all()), name


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------

GRADIENT_CASES = [
    (0.0, 1.0),
    (0.5, 0.3),
    (1.02, 0.01),
    (5.0, 0.1),
    (-5.0, 0.1),
    (20.0, 0.1),
    (9.0, 1.0),
    (0.2, 100.0),
    (-3e3, 1.0),
]


@pytest.mark.parametrize("loc,scale", GRADIENT_CASES)
@pytest.mark.parametrize("quantity", ["log_prob", "entropy", "mean", "variance", "cdf", "icdf"])
def test_gradients_match_finite_differences(loc: float, scale: float, quantity: str) -> None:
    point = torch.tensor([0.3 if abs(loc) < 2 else math.copysign(0.9999, loc)], dtype=torch.float64)
    probability = torch.tensor([0.37], dtype=torch.float64)

    def evaluate(loc_: torch.Tensor, scale_: torch.Tensor) -> torch.Tensor:
        dist = TruncatedNormal(loc_, scale_, -1.0, 1.0)
        if quantity in ("log_prob", "cdf"):
            return getattr(dist, quantity)(point)
        if quantity == "icdf":
            return dist.icdf(probability)
        return dist.entropy() if quantity == "entropy" else getattr(dist, quantity)

    inputs = (
        torch.tensor([loc], dtype=torch.float64, requires_grad=True),
        torch.tensor([scale], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(evaluate, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_cdf_gradient_is_finite_where_the_cdf_underflows() -> None:
    # 99.9 scales below loc the cdf is ~exp(-5000): it underflows, its gradient must not be NaN
    loc = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    points = torch.tensor([-0.999, 0.999], dtype=torch.float64)
    cdf = TruncatedNormal(loc, scale, -1.0, 1.0).cdf(points)
    values = cdf.detach()
    assert float(values[0]) < 1e-300 and float(values[1]) == 1.0
    cdf.sum().backward()
    assert torch.isfinite(loc.grad) and torch.isfinite(scale.grad)


def test_icdf_gradient_with_respect_to_probability_is_inverse_density() -> None:
    dist = TruncatedNormal(torch.tensor([0.2, 6.0]), torch.tensor([0.4, 0.3]), -1.0, 1.0)
    probability = torch.tensor([0.3, 0.8], dtype=torch.float64, requires_grad=True)
    quantile = dist.icdf(probability)
    (gradient,) = torch.autograd.grad(quantile.sum(), probability)
    density = torch.exp(dist.log_prob(quantile.detach())).double()
    torch.testing.assert_close(gradient, 1.0 / density, rtol=1e-5, atol=0)


@pytest.mark.parametrize("loc,scale", [(0.3, 0.5), (1.5, 0.4), (20.0, 0.1), (-0.8, 2.0)])
def test_rsample_is_an_unbiased_pathwise_gradient(loc: float, scale: float) -> None:
    """d/dtheta E[x] = E[dx/dtheta] for a reparameterised sampler. The right side is averaged
    over 200k per-sample derivatives (one parameter copy per sample), the left side is autograd
    through the closed-form mean."""
    torch.manual_seed(7)
    n_samples = 200_000
    loc_copies = torch.full((n_samples,), loc, dtype=torch.float64, requires_grad=True)
    scale_copies = torch.full((n_samples,), scale, dtype=torch.float64, requires_grad=True)
    samples = TruncatedNormal(loc_copies, scale_copies, -1.0, 1.0).rsample()  # (n_samples,)
    per_sample = torch.autograd.grad(samples.sum(), (loc_copies, scale_copies))
    loc_ = torch.tensor(loc, dtype=torch.float64, requires_grad=True)
    scale_ = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    exact = torch.autograd.grad(TruncatedNormal(loc_, scale_, -1.0, 1.0).mean, (loc_, scale_))
    for derivatives, expected in zip(per_sample, exact):
        standard_error = float(derivatives.std()) / math.sqrt(n_samples)
        assert abs(float(derivatives.mean()) - float(expected)) <= 5 * standard_error


# ---------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------

BATCH = 7
IN_FEATURES = 5


@pytest.fixture
def features() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(BATCH, IN_FEATURES, generator=generator)  # (BATCH, IN_FEATURES)


def test_categorical_head(features: torch.Tensor) -> None:
    torch.manual_seed(0)
    head = CategoricalHead(IN_FEATURES, 4)
    dist = head(features)
    assert isinstance(dist, Categorical)
    actions = dist.sample()
    assert actions.shape == (BATCH,) and actions.dtype == torch.int64
    assert dist.log_prob(actions).shape == (BATCH,) and dist.entropy().shape == (BATCH,)
    assert torch.equal(head.deterministic(dist), head.logits(features).argmax(-1))
    # the 0.01 output gain makes the initial policy close to uniform
    torch.testing.assert_close(dist.probs, torch.full((BATCH, 4), 0.25), atol=0.02, rtol=0)


@pytest.mark.parametrize("state_dependent_std", [False, True], ids=["state_independent", "state_dependent"])
@pytest.mark.parametrize("head_class", [DiagGaussianHead, TruncatedNormalHead])
def test_continuous_heads(features: torch.Tensor, head_class: type, state_dependent_std: bool) -> None:
    torch.manual_seed(0)
    action_dim = 3
    head = head_class(IN_FEATURES, action_dim, state_dependent_std=state_dependent_std, log_std_init=-0.5)
    dist = head(features)
    assert isinstance(dist, Independent)
    actions = dist.sample()
    assert actions.shape == (BATCH, action_dim) and actions.dtype == torch.float32
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    assert log_prob.shape == (BATCH,) and entropy.shape == (BATCH,)
    # Independent sums the per-dimension terms
    torch.testing.assert_close(log_prob, dist.base_dist.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy, dist.base_dist.entropy().sum(-1))
    deterministic = head.deterministic(dist)
    assert deterministic.shape == (BATCH, action_dim)
    if head_class is DiagGaussianHead:
        torch.testing.assert_close(deterministic, head.loc(features))
    else:
        torch.testing.assert_close(deterministic, head.loc(features).clamp(-1.0, 1.0))
    # gradients reach every parameter
    (log_prob.sum() + entropy.sum()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and bool(torch.isfinite(parameter.grad).all()), name


def test_truncated_normal_head_samples_in_unit_box_and_acts_at_the_mode(
    features: torch.Tensor,
) -> None:
    torch.manual_seed(0)
    head = TruncatedNormalHead(IN_FEATURES, 2)
    with torch.no_grad():
        head.loc.bias.copy_(torch.tensor([3.0, -0.2]))  # first dimension pushed past the bound
    dist = head(features)
    samples = dist.sample((100,))  # (100, BATCH, 2)
    assert bool(((samples >= -1) & (samples <= 1)).all())
    deterministic = head.deterministic(dist)
    assert bool((deterministic[:, 0] == 1.0).all())  # the mode, not the mean (which is < 1)
    assert bool((dist.mean[:, 0] < 1.0).all())
    torch.testing.assert_close(deterministic[:, 1], head.loc(features)[:, 1])


@pytest.mark.parametrize("head_class", [DiagGaussianHead, TruncatedNormalHead])
@pytest.mark.parametrize("log_std_init", [0.0, -1.6, 0.7])
def test_initial_std_is_exp_log_std_init(features: torch.Tensor, head_class: type, log_std_init: float) -> None:
    torch.manual_seed(0)
    expected = torch.full((BATCH, 2), math.exp(log_std_init))
    independent = head_class(IN_FEATURES, 2, state_dependent_std=False, log_std_init=log_std_init)
    assert independent.std.log_std.shape == (2,)
    torch.testing.assert_close(independent(features).base_dist.scale, expected)

    dependent = head_class(IN_FEATURES, 2, state_dependent_std=True, log_std_init=log_std_init)
    # exact where the features vanish (bias only), close elsewhere (weights have gain 0.01)
    zero_features = torch.zeros(BATCH, IN_FEATURES)
    torch.testing.assert_close(dependent(zero_features).base_dist.scale, expected)
    torch.testing.assert_close(dependent(features).base_dist.scale, expected, rtol=0.05, atol=0)


def test_state_dependent_std_has_a_floor() -> None:
    head = DiagGaussianHead(IN_FEATURES, 2, state_dependent_std=True)
    with torch.no_grad():
        head.std.linear.bias.fill_(-1e4)
    scale = head(torch.zeros(1, IN_FEATURES)).base_dist.scale
    assert torch.allclose(scale, torch.full_like(scale, MIN_STD))
    with pytest.raises(ConfigError, match="log_std_init"):
        DiagGaussianHead(IN_FEATURES, 2, state_dependent_std=True, log_std_init=math.log(MIN_STD) - 1)


# ---------------------------------------------------------------------------------------------
# make_action_head
# ---------------------------------------------------------------------------------------------


def test_action_dists() -> None:
    assert ACTION_DISTS == ("auto", "categorical", "gaussian", "truncated_normal")


@pytest.mark.parametrize(
    "space,action_dist,head_class,size",
    [
        (gym.spaces.Discrete(3), "auto", CategoricalHead, 3),
        (gym.spaces.Discrete(5, start=-2), "categorical", CategoricalHead, 5),
        (gym.spaces.Box(-1.0, 1.0, (2,)), "auto", DiagGaussianHead, 2),
        (gym.spaces.Box(-np.inf, np.inf, (4,)), "gaussian", DiagGaussianHead, 4),
        (gym.spaces.Box(-2.0, 3.0, (6,)), "truncated_normal", TruncatedNormalHead, 6),
    ],
)
def test_make_action_head_picks_the_head(space: gym.Space, action_dist: str, head_class: type, size: int) -> None:
    head = make_action_head(space, action_dist, in_features=IN_FEATURES, state_dependent_std=True, log_std_init=-1.0)
    assert type(head) is head_class
    dist = head(torch.zeros(BATCH, IN_FEATURES))
    action = head.deterministic(dist)
    if head_class is CategoricalHead:
        assert head.n_actions == size and dist.logits.shape == (BATCH, size)
    else:
        assert head.action_dim == size and action.shape == (BATCH, size)
        assert head.std.state_dependent
        expected = torch.full((BATCH, size), math.exp(-1.0))
        torch.testing.assert_close(dist.base_dist.scale, expected)


SUPPORTED = (
    "supported: Discrete (categorical), MultiDiscrete (one categorical per entry), MultiBinary (bernoulli) and "
    "Box of any shape (gaussian, truncated_normal)"
)


@pytest.mark.parametrize(
    "space,action_dist,message",
    [
        (
            gym.spaces.MultiBinary(4),
            "gaussian",
            "action_dist='gaussian' does not apply to MultiBinary(4); leave action_dist=auto",
        ),
        (
            gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
            "auto",
            f"action space Dict('a': Discrete(2)) is not supported; {SUPPORTED}",
        ),
        (
            gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(3)]),
            "auto",
            f"action space Tuple(Discrete(2), Discrete(3)) is not supported; {SUPPORTED}",
        ),
        (
            gym.spaces.Box(-np.inf, np.inf, (2,)),
            "truncated_normal",
            "action_dist='truncated_normal' needs finite Box bounds, got Box(-inf, inf, (2,), float32)",
        ),
        (
            gym.spaces.Box(np.float32(-1.0), np.array([1.0, np.inf], dtype=np.float32)),
            "truncated_normal",
            "action_dist='truncated_normal' needs finite Box bounds, got Box(-1.0, [ 1. inf], (2,), float32)",
        ),
        (
            gym.spaces.Box(-1.0, 1.0, (2,)),
            "categorical",
            "action_dist='categorical' needs a Discrete action space, got Box(-1.0, 1.0, (2,), float32)",
        ),
        (
            gym.spaces.Discrete(3),
            "gaussian",
            "action_dist='gaussian' needs a Box action space, got Discrete(3)",
        ),
        (
            gym.spaces.Discrete(3),
            "truncated_normal",
            "action_dist='truncated_normal' needs a Box action space, got Discrete(3)",
        ),
    ],
)
def test_make_action_head_rejects_unsupported(space: gym.Space, action_dist: str, message: str) -> None:
    with pytest.raises(UnsupportedSpaceError, match=f"^{re.escape(message)}$") as raised:
        make_action_head(space, action_dist, in_features=IN_FEATURES)
    assert "\n" not in str(raised.value)


def test_make_action_head_rejects_unknown_action_dist() -> None:
    expected = "unknown action_dist='beta'; expected one of auto, categorical"
    with pytest.raises(ConfigError, match=expected):
        make_action_head(gym.spaces.Discrete(2), "beta", in_features=IN_FEATURES)


def test_gaussian_head_loads_weights_saved_under_its_old_name() -> None:
    # policy files written before the Gaussian head's location layer was named ``loc`` call it ``mean``
    head = DiagGaussianHead(4, 2)
    old_names = {k.replace("loc.", "mean."): v.clone() + 1.0 for k, v in head.state_dict().items()}
    fresh = DiagGaussianHead(4, 2)
    fresh.load_state_dict(old_names)
    torch.testing.assert_close(fresh.loc.weight, old_names["mean.weight"])
    torch.testing.assert_close(fresh.loc.bias, old_names["mean.bias"])
