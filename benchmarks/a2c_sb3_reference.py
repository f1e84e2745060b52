"""Stable-Baselines3's A2C with the RL Zoo's MuJoCo settings, as a like-for-like reference for
pgrad's A2C presets (same env version, seed, budget and evaluation).

Run: .venv/bin/python benchmarks/a2c_sb3_reference.py HalfCheetah-v5 --seed 0 --steps 1000000
Needs ``pip install stable-baselines3`` (not a pgrad dependency; checks that torch is left alone).
Settings: RL Zoo hyperparams/a2c.yml MuJoCo entry, i.e. SB3 A2C defaults (1 env, n_steps 5,
RMSprop 7e-4, gae_lambda 1, ent 0, vf 0.5, max grad norm 0.5, 2x64 tanh separate actor and
critic) with VecNormalize of observations and rewards during training. Evaluation: 10
deterministic episodes with frozen observation statistics and raw rewards, reset seeds
10000-10009 as ``pgrad.evaluate`` does; plus the mean of the last 100 training episodes.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from sb3_evaluation import evaluate_like_pgrad
from stable_baselines3 import A2C
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    monitor = Monitor(gym.make(args.env))
    venv = VecNormalize(DummyVecEnv([lambda: monitor]), norm_obs=True, norm_reward=True, gamma=0.99)
    model = A2C("MlpPolicy", venv, seed=args.seed, device="cpu")
    start = time.perf_counter()
    model.learn(args.steps)
    seconds = time.perf_counter() - start
    returns = evaluate_like_pgrad(model, venv, args.env)
    last_100 = float(np.mean(monitor.get_episode_rewards()[-100:]))
    print(
        json.dumps(
            {
                "env": args.env,
                "seed": args.seed,
                "steps": args.steps,
                "wall_seconds": round(seconds, 1),
                "eval_mean_return": float(np.mean(returns)),
                "eval_std_return": float(np.std(returns)),
                "returns": returns,
                "last_100_episode_return_mean": last_100,
            }
        )
    )


if __name__ == "__main__":
    main()
