"""How seeds are split into seed-batched groups (pgrad.experiments.seed_batched.seed_groups)."""

import pytest

from pgrad.experiments.seed_batched import seed_groups


def test_explicit_workers_give_that_many_contiguous_groups():
    assert seed_groups([1, 2, 3, 4, 5], 2) == [[1, 2, 3], [4, 5]]
    assert seed_groups([7, 8], 5) == [[7], [8]]
    assert seed_groups([0, 1, 2, 3], 1) == [[0, 1, 2, 3]]


@pytest.mark.parametrize(
    ("n_seeds", "cores", "sizes"),
    [
        (4, 2, [2, 2]),  # even: one group per core
        (3, 2, [2, 1]),  # uneven but few: [2, 1] measured faster than three processes
        (5, 2, [2, 2, 1]),  # uneven and more than two per core: one group more than cores
        (7, 2, [3, 2, 2]),
        (10, 2, [5, 5]),
        (9, 4, [2, 2, 2, 2, 1]),
        (2, 8, [1, 1]),
    ],
)
def test_default_groups_keep_every_core_busy(monkeypatch, n_seeds, cores, sizes):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    groups = seed_groups(list(range(n_seeds)), None)
    assert [len(group) for group in groups] == sizes
    assert [seed for group in groups for seed in group] == list(range(n_seeds))
