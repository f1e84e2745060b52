"""benchmarks/ppo_breakdown.py: its parts are measured on a real run, and its overhead factors
are the sums it says they are."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture
def breakdown():
    return load_benchmark("ppo_breakdown")


def test_parts_of_a_real_run(breakdown):
    parts = breakdown.measure("Pendulum-v1", seed=0)
    # Every part was measured. Their sizes are not compared: they are wall times, and a noisy
    # moment (or a CPU whose numpy products cost more per call than the compiled gradient's own
    # BLAS calls, as on an AMD EPYC) reorders them.
    assert set(parts) == set(PARTS) and all(value > 0 for value in parts.values())
    assert parts["minibatches per env step"] == pytest.approx(10 * 32 / 2048)


# the parts measure() returns, with made-up microseconds for checking the report's sums
PARTS = {
    "raw env step": 30.0,
    "collect, all": 70.0,
    "collector.step_into": 66.0,
    "envs.step (pgrad's vector env + recorder + env)": 38.0,
    "act (normalise, forward, sample, env action)": 13.0,
    "step_gradient, per minibatch": 200.0,
    "Adam, per minibatch": 24.0,
    "matrix products only, per minibatch": 64.0,
    "matrix products only, inference per step": 2.0,
    "minibatches per env step": 0.15625,
}


def test_overhead_factors_are_sums_of_the_parts(breakdown, capsys):
    breakdown.report([PARTS])
    out = capsys.readouterr().out
    update = 0.15625 * 224.0  # 35.0
    assert f"| total (collect + update share) | {70 + update:.1f} |" in out
    assert f"| the step's bookkeeping (counters, flags, checks) | {66 - 38 - 13:.1f} |" in out
    assert f"overhead factor, measured: {(70 + update) / 30:.2f}" in out
    assert f"no bookkeeping or buffers at all: {(70 + update - 15 - 4) / 30:.2f}" in out
    assert f"arithmetic alone (raw step + matrix products): {(30 + 0.15625 * 64 + 2) / 30:.2f}" in out
