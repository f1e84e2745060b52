"""benchmarks/halfcheetah_posture.py: a full roll reads as upright, a half roll as flipped."""

from __future__ import annotations

import numpy as np

from tests.benchmark_scripts import load_benchmark


def test_pitch_is_wrapped_so_a_full_roll_reads_upright():
    module = load_benchmark("halfcheetah_posture")
    raw = np.array([0.1, 2 * np.pi + 0.1, -2 * np.pi - 0.1, np.pi + 0.2, 3 * np.pi - 0.2, -4.0])
    wrapped = module.wrapped_pitch(raw)
    np.testing.assert_allclose(wrapped, [0.1, 0.1, -0.1, -np.pi + 0.2, np.pi - 0.2, 2 * np.pi - 4.0], atol=1e-12)
    assert np.all((wrapped >= -np.pi) & (wrapped < np.pi))
