"""PPO must learn, on budgets small enough for CI. Thresholds were checked over several seeds
(see the numbers in each test's docstring); the test seeds are fixed."""

from __future__ import annotations

import pytest

import pgrad


@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_cartpole_reaches_475_within_50k_steps(seed):
    """Shipped CartPole-v1 preset, 49,920 steps (195 whole rollouts), deterministic evaluation
    over 20 episodes. Seeds 0-5 all evaluate at 500 (benchmarks/small_budgets.py)."""
    agent = pgrad.PPO("CartPole-v1", seed=seed)
    agent.learn(49_920, quiet=True)  # --steps is at least N, rounded up to whole rollouts
    assert agent.total_steps == 49_920
    result = pgrad.evaluate(agent, episodes=20)
    agent.close()
    assert result["mean_return"] >= 475, result


def _untrained_and_trained(env_id: str, steps: int, seed: int, **overrides) -> tuple[float, float]:
    agent = pgrad.PPO(env_id, seed=seed, **overrides)
    before = pgrad.evaluate(agent, episodes=10)["mean_return"]
    agent.learn(steps, quiet=True)
    after = pgrad.evaluate(agent, episodes=10)["mean_return"]
    agent.close()
    return before, after


# PPO-paper defaults except a shorter horizon over 4 envs, so 30k steps hold ~29 updates.
SMALL_CONTINUOUS = dict(n_envs=4, n_steps=256)  # 29_696 steps below: 29 whole rollouts, as measured


def test_ppo_continuous_cartpole_improves_clearly_in_30k_steps():
    """Untrained ~59. Seeds 0-5 after 30k steps (deterministic eval, 10 episodes): min 330.9,
    median 500 (benchmarks/small_budgets.py, BENCHMARKS.md); threshold 150."""
    before, after = _untrained_and_trained("pgrad/ContinuousCartPole-v0", 29_696, seed=0, **SMALL_CONTINUOUS)
    assert before < 100
    assert after >= 150, (before, after)


def test_ppo_truncated_normal_continuous_cartpole_improves_clearly_in_30k_steps():
    """TruncatedNormal policy on the action bounds. Seeds 0-5: min 139.8, median 500 from an
    untrained ~59 (benchmarks/small_budgets.py); threshold 120."""
    before, after = _untrained_and_trained(
        "pgrad/ContinuousCartPole-v0", 29_696, seed=0, action_dist="truncated_normal", **SMALL_CONTINUOUS
    )
    assert before < 100
    assert after >= 120, (before, after)


def test_ppo_inverted_pendulum_improves_clearly_in_30k_steps():
    """Untrained ~26. Seeds 0-5 after 30k steps: min 355.0, median 376.9
    (benchmarks/small_budgets.py); threshold 150."""
    before, after = _untrained_and_trained("InvertedPendulum-v5", 29_696, seed=0, **SMALL_CONTINUOUS)
    assert before < 100
    assert after >= 150, (before, after)
