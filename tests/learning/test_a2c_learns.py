"""A2C must learn CartPole-v1 on a small budget. The threshold was checked over 20 seeds (see
BENCHMARKS.md, "A2C and one-step actor-critic on CartPole-v1"); the test seeds are fixed."""

from __future__ import annotations

import pytest

import pgrad


@pytest.mark.parametrize("seed", [0, 3])  # seeds whose untrained policy scores ~9
def test_a2c_cartpole_reaches_475_within_100k_steps(seed):
    """Shipped CartPole-v1 preset (SB3 defaults over 8 envs x 5 steps, plus linear lr decay,
    advantage normalisation and reward scaling), 100k steps = 2,500 updates, deterministic
    evaluation over 20 episodes.

    Seeds 0-19 (benchmarks/actor_critic_cartpole.py): 500 for all 20. About 9-11 s per seed on
    this machine.
    """
    agent = pgrad.A2C("CartPole-v1", seed=seed)
    before = pgrad.evaluate(agent, episodes=20)["mean_return"]
    agent.learn(100_000, quiet=True)
    assert agent.total_steps == 100_000 and agent.updates == 2_500
    result = pgrad.evaluate(agent, episodes=20)
    agent.close()
    assert before < 100
    assert result["mean_return"] >= 475, (before, result)
