"""ARS must balance the continuous cart-pole with its linear policy on a small budget.

Shipped ``pgrad/ContinuousCartPole-v0`` preset (V2-t: 8 directions, top 4, step 0.1, noise 0.3),
50k steps, deterministic evaluation over 20 episodes. Seeds 0-9 at 50k steps (2026-11-22,
`python benchmarks/ars.py cartpole-seeds`, BENCHMARKS.md "ARS"): 500 for 9 of 10 seeds, 333 for seed 7. The test
seeds are fixed; about 3-6 s each on this machine, under shared load.
"""

from __future__ import annotations

import pytest

import pgrad


@pytest.mark.parametrize("seed", [0, 1])
def test_ars_continuous_cartpole_reaches_475_within_50k_steps(seed):
    agent = pgrad.ARS("pgrad/ContinuousCartPole-v0", seed=seed, n_workers=0)
    assert agent.preset == "pgrad/ContinuousCartPole-v0"
    before = pgrad.evaluate(agent, episodes=20)["mean_return"]
    agent.learn(50_000, quiet=True)
    result = pgrad.evaluate(agent, episodes=20)
    agent.close()
    assert 50_000 <= agent.total_steps < 50_000 + 16 * 500  # at most one iteration (2N = 16 episodes) over
    assert before < 100
    assert result["mean_return"] >= 475, (before, result)
