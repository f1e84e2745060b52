import numpy as np
import pytest
from scipy import stats as scipy_stats

from pgrad.experiments.stats import iqm, permutation_p_value, stratified_bootstrap_ci, summarize


@pytest.mark.parametrize("n", [4, 8, 12, 100])
def test_iqm_equals_scipy_trim_mean_when_n_divisible_by_4(n):
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_iqm_weights_boundary_runs_fractionally():
    # n=5: quantile mass [1.25, 3.75] covers 0.75 of x[1], all of x[2], 0.75 of x[3]
    assert iqm([0, 1, 2, 3, 100]) == pytest.approx((0.75 * 1 + 2 + 0.75 * 3) / 2.5)
    assert iqm([7.0]) == 7.0


def test_stratified_bootstrap_keeps_tasks_apart_and_brackets_the_point():
    rng = np.random.default_rng(0)
    tasks = [rng.normal(0, 1, 10), rng.normal(100, 1, 3)]
    point, low, high = stratified_bootstrap_ci(tasks, statistic=np.mean, n_resamples=500)
    assert low <= point <= high
    # Every resample holds exactly 3 runs of the ~100 task, so the pooled mean stays near
    # 300/13 ~ 23; pooled (unstratified) resampling would swing it between ~0 and ~50.
    assert 18 < low and high < 28
    assert stratified_bootstrap_ci([[5.0, 5.0, 5.0]], n_resamples=50) == (5.0, 5.0, 5.0)


def test_summarize_skips_missing_values():
    s = summarize([1.0, None, 3.0])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["min"] == 1.0
    assert summarize([None])["mean"] is None


def test_permutation_p_value_counts_splits_exactly():
    # 3 v 3 fully separated: of the 20 splits only the observed one and its mirror are as extreme
    assert permutation_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert permutation_p_value([5.0, 5.0], [5.0, 5.0, 5.0]) == 1.0
    a, b = [3.1, -2.0, 7.5, 0.4], [1.0, 9.9, 4.2]
    assert permutation_p_value(a, b) == permutation_p_value(b, a)
    with pytest.raises(ValueError):
        permutation_p_value([], [1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_p_value_equals_scipy_exact_test(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, 1.0, 6), rng.normal(1.0, 1.0, 5)
    # the size of the difference with alternative="greater": scipy's own "two-sided" doubles the
    # smaller one-sided p instead, which differs when the groups' sizes do
    reference = scipy_stats.permutation_test(
        (a, b),
        lambda x, y: np.abs(np.mean(x) - np.mean(y)),
        permutation_type="independent",
        n_resamples=np.inf,
        alternative="greater",
    )
    assert permutation_p_value(list(a), list(b)) == pytest.approx(reference.pvalue)
