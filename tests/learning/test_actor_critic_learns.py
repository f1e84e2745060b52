"""One-step actor-critic must learn CartPole-v1 on a small budget. The threshold was checked over
20 seeds on two CPU models (see BENCHMARKS.md, "A2C and one-step actor-critic on CartPole-v1");
the test seeds are fixed."""

from __future__ import annotations

import pgrad

# Seeds whose untrained policy scores ~9, so reaching 475 is learning, not luck.
SEEDS = (0, 3, 5)


def test_actor_critic_cartpole_reaches_475_within_60k_steps_on_two_of_three_seeds():
    """Shipped CartPole-v1 preset (8 envs, one update per vector step, Adam, actor lr 1e-3,
    critic lr 3e-3), 60k steps = 7,500 updates, deterministic evaluation over 20 episodes.

    A run is bit-for-bit repeatable on one machine, but not across CPU models: torch picks its
    float kernels by instruction set, and one-step updates compound the last-bit differences.
    Seeds 0-19 (benchmarks/actor_critic_cartpole.py) reach >= 475 on 20 of 20 on an AMD EPYC
    (2026-11-22) and 19 of 20 on an Intel Xeon (2026-12-03, seed 0: 104.9). So the test asks for
    two seeds of three: with ~1 run in 40 missing, a correct agent fails it about 1 time in 500,
    where one fixed seed failed on a new CPU. About 15-17 s per seed on these machines.
    """
    trained = {}
    for seed in SEEDS:
        agent = pgrad.ActorCritic("CartPole-v1", seed=seed)
        before = pgrad.evaluate(agent, episodes=20)["mean_return"]
        agent.learn(60_000, quiet=True)
        assert agent.total_steps == 60_000 and agent.updates == 7_500
        trained[seed] = pgrad.evaluate(agent, episodes=20)["mean_return"]
        agent.close()
        assert before < 100, (seed, before)
    assert sum(value >= 475 for value in trained.values()) >= 2, trained
