"""Recurrent PPO must learn the velocity-masked CartPole within 50k steps, where MLP PPO with the
same hyperparameters and budget cannot: memory is what makes the difference. Seeds and margins
are in the docstring; benchmarks/ppo_lstm_novel.py reproduces them over more seeds."""

from __future__ import annotations

import pgrad
from pgrad.algos.ppo_lstm import RECURRENT_ONLY_FIELDS
from pgrad.config import load_preset

ENV = "pgrad/CartPoleNoVel-v1"
SEEDS = (0, 1, 2)


def test_recurrent_ppo_solves_cartpole_without_velocities_and_mlp_ppo_does_not():
    """Shipped preset, 49,920 steps (195 rollouts), deterministic evaluation over 20 episodes.

    Seeds 0-19 with these settings on an Intel Xeon (2026-12-03): 16 reach >= 475 (14 at 500),
    the other four end at 169.1-395.9, so about one run in five is short of solving at this
    budget; MLP PPO seeds 0-4: 43.0-46.4 (sb3-contrib reports ~50 for it). A run repeats bit for
    bit on one machine but not across CPU models (torch's float kernels differ by instruction
    set), so no single seed is a reliable test. Hence: every seed of three clearly learns (>= 100;
    the lowest of 45 recurrent runs at 50k, 20 at each of lr 1e-3 and 2e-3 on that CPU and 5 at
    2e-3 on an AMD EPYC, was 142.9), at least one solves it (all three short: about 1 time in 125
    with one miss in five), and MLP PPO stays below 75.
    """
    recurrent = {}
    for seed in SEEDS:
        agent = pgrad.RecurrentPPO(ENV, seed=seed)  # the shipped preset
        agent.learn(49_920, quiet=True)  # 195 whole rollouts of 256
        assert agent.total_steps == 49_920
        recurrent[seed] = pgrad.evaluate(agent, episodes=20)["mean_return"]
        agent.close()

    mlp_values = {k: v for k, v in load_preset("ppo-lstm", ENV).items() if k not in RECURRENT_ONLY_FIELDS}
    mlp = pgrad.PPO(ENV, seed=SEEDS[0], preset=None, **mlp_values)
    mlp.learn(49_920, quiet=True)
    memoryless = pgrad.evaluate(mlp, episodes=20)["mean_return"]
    mlp.close()

    assert min(recurrent.values()) >= 100, (recurrent, memoryless)
    assert max(recurrent.values()) >= 475, (recurrent, memoryless)
    assert memoryless < 75, (recurrent, memoryless)
