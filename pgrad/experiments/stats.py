"""Statistics across seeds that stay honest with few runs (Agarwal et al. 2021, "Deep RL at the
Edge of the Statistical Precipice", NeurIPS): the interquartile mean (IQM) and percentile
bootstrap intervals that resample runs within each task (stratified); and an exact permutation
test for "do two sets of seeds differ", which assumes nothing about the returns' distribution
(HalfCheetah's are often bimodal).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the middle 50% of ``values`` (25% trimmed from each end, fractional at the edges).

    Computed as the integral of the empirical quantile function over [0.25, 0.75], so that with
    n not divisible by 4 the boundary runs count with fractional weight, as rliable does; this
    equals ``scipy.stats.trim_mean(values, 0.25)`` when n is divisible by 4.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(x)
    if n == 0:
        return float("nan")
    weights = np.clip(np.minimum(np.arange(1, n + 1), 0.75 * n) - np.maximum(np.arange(n), 0.25 * n), 0.0, None)
    return float(np.dot(weights, x) / weights.sum())


def stratified_bootstrap_ci(
    scores_per_task: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], float] = iqm,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(point, low, high)``: the statistic of all scores pooled, with a percentile bootstrap
    interval that resamples runs with replacement *within* each task (stratified), so every task
    keeps its number of runs in every resample.
    """
    tasks = [np.asarray(scores, dtype=np.float64) for scores in scores_per_task]
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("every task needs at least one run")
    rng = np.random.default_rng(seed)
    point = statistic(np.concatenate(tasks))
    resampled = np.empty(n_resamples)
    for i in range(n_resamples):
        resampled[i] = statistic(np.concatenate([t[rng.integers(0, len(t), len(t))] for t in tasks]))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [alpha, 1.0 - alpha])
    return float(point), float(low), float(high)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, std, IQM, min, max and count of per-seed numbers (None entries are skipped)."""
    finite = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(finite) == 0:
        return {"n": 0, "mean": None, "std": None, "iqm": None, "min": None, "max": None}
    return {
        "n": int(len(finite)),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "iqm": iqm(finite),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


def permutation_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided permutation test of equal means: the share of all ``C(n_a + n_b, n_a)``
    splits of the pooled scores into groups of ``len(a)`` and ``len(b)`` whose difference of means
    is at least the observed one in size (the observed split included, so p > 0). Exhaustive,
    so meant for the few seeds of a learning comparison (10 + 10 seeds: 184,756 splits, under a
    second)."""
    pooled = np.asarray([*a, *b], dtype=np.float64)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        raise ValueError("both groups need at least one score")
    total = pooled.sum()
    observed = abs(pooled[:n_a].sum() / n_a - pooled[n_a:].sum() / n_b)
    # every split's first-group sum, enumerated as index combinations
    sums = np.fromiter(
        (pooled[list(chosen)].sum() for chosen in itertools.combinations(range(n_a + n_b), n_a)), dtype=np.float64
    )
    differences = np.abs(sums / n_a - (total - sums) / n_b)
    # a relative tolerance, so the observed split itself always counts despite summation order
    return float(np.mean(differences >= observed * (1 - 1e-12) - 1e-12))
