"""REINFORCE must learn CartPole-v1 within 500 episodes (ANCHORS.md: >= 475; the seed notebook
reached ~320 after 220 episodes). The budget is counted in episodes, not steps."""

from __future__ import annotations

import pytest

import pgrad

MAX_EPISODES = 500
SOLVED_WINDOW, SOLVED_RETURN = 20, 475.0


def stop_when_solved_or_out_of_episodes(agent, row) -> bool:
    """``learn`` callback: go on while fewer than 500 episodes ran and the last 20 training
    episodes (stochastic policy) did not yet average 475."""
    returns = [episode["return"] for episode in agent.logger.episodes]
    solved = len(returns) >= SOLVED_WINDOW and sum(returns[-SOLVED_WINDOW:]) / SOLVED_WINDOW >= SOLVED_RETURN
    return len(returns) < MAX_EPISODES and not solved


@pytest.mark.parametrize("seed", [0, 1])
def test_reinforce_cartpole_reaches_475_within_500_episodes(seed):
    """Shipped CartPole-v1 preset; training stops at 500 episodes, or earlier once the last 20
    training episodes averaged 475 (so a seed that learns early does not spend ~100k more steps
    at 500 per episode, which would take this test past a minute); then a deterministic
    evaluation over 20 episodes must reach 475.

    Per seed (benchmarks/reinforce_cartpole.py, see BENCHMARKS.md): episode at which the rule
    stopped, evaluation then, and evaluation had training gone on to all 500 episodes:
    see the table in BENCHMARKS.md ("REINFORCE on CartPole-v1").
    """
    agent = pgrad.Reinforce("CartPole-v1", seed=seed)
    agent.learn(MAX_EPISODES * 500, quiet=True, callback=stop_when_solved_or_out_of_episodes)
    assert len(agent.logger.episodes) <= MAX_EPISODES
    result = pgrad.evaluate(agent, episodes=20)
    agent.close()
    assert result["mean_return"] >= 475, result
