"""One-step actor-critic must learn CartPole-v1 on a small budget. The threshold was checked over
20 seeds on two CPU models (see BENCHMARKS.md, "A2C and one-step actor-critic on CartPole-v1")
and again over 20 seeds for the numpy update (BENCHMARKS.md, "One-step actor-critic and
REINFORCE: cost per update"); the test seeds are fixed."""

from __future__ import annotations

import pgrad

# Seeds whose untrained policy scores below 100 (9.3, 81.6, 82.7, 35.2, 9.3), so reaching 475 is
# learning, not luck.
SEEDS = (5, 6, 8, 10, 12)


def test_actor_critic_cartpole_reaches_475_within_60k_steps_on_three_of_five_seeds():
    """Shipped CartPole-v1 preset (8 envs, one update per vector step, Adam, actor lr 1e-3,
    critic lr 3e-3), 60k steps = 7,500 updates, deterministic evaluation over 20 episodes.

    A run is bit-for-bit repeatable on one machine, but not across CPU models or between the
    numpy update and the autograd one (float32 rounding differs, and 7,500 one-step updates
    compound the last-bit differences). Each run ends at 500 or near 100, nothing between. Seeds
    0-19: the autograd update reached >= 475 on 20 of 20 on an AMD EPYC (2026-11-22), 19 of 20 on
    an Intel Xeon (2026-12-03) and 19 of 20 here (2026-12-07, seed 0: 104.9); the numpy update,
    which now runs, on 17 of 20 here (seeds 0, 3, 16 at 137.3, 71.3, 99.4; not significantly
    different from 19 of 20: Fisher's exact p = 0.6). All four misses are seeds whose untrained
    policy scores ~9 (a policy that always pushes one way). So the test asks for three seeds of
    five: at a miss rate of 15% per run a correct agent fails it about 1 time in 40 on a new CPU.
    These five seeds all reach 500 on this machine. About 20 s per seed here.
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
    assert sum(value >= 475 for value in trained.values()) >= 3, trained
