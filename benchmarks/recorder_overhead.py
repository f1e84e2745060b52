"""Cost of the EpisodeRecorder (exact resume) on rollout collection: with and without, 8 envs.

    PYTHONPATH=. python benchmarks/recorder_overhead.py

Prints steps/s of ``RolloutCollector.collect(512)`` twice per setting (wall-clock, so noisy on a
shared machine).
"""

import time

import torch

from pgrad.envs import make_vector_env
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import RolloutCollector

torch.set_num_threads(1)
for env_id in ("CartPole-v1", "HalfCheetah-v5"):
    for record in (False, True, False, True):
        envs = make_vector_env(env_id, 8, seed=0, autoreset_mode="same_step", record_episodes=record)
        policy = ActorCriticPolicy(envs.single_observation_space, envs.single_action_space)
        collector = RolloutCollector(envs, policy, seed=0)
        collector.collect(64)  # warm-up
        start = time.perf_counter()
        collector.collect(512)
        elapsed = time.perf_counter() - start
        print(f"{env_id:<16} {'recorder' if record else 'plain':<9} {512 * 8 / elapsed:,.0f} steps/s")
        envs.close()
