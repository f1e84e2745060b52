"""Stable-Baselines3's PPO with one of pgrad's RL Zoo PPO presets, as a like-for-like reference:
does a preset that misses its goal in pgrad also miss it in SB3 on the same env version and seed?

Run:
    .venv/bin/python benchmarks/ppo_zoo_sb3_reference.py Hopper-v5 --seed 0 --steps 1000000 \
        --episodes runs/sb3-hopper-seed0.csv
Needs the ``bench`` extra (stable-baselines3; never a pgrad dependency).

The hyperparameters are read from ``pgrad/presets/ppo.toml`` (one spelling) and mapped to SB3's
names; the RL Zoo's MuJoCo entries also pass ``ortho_init=False`` (SB3 then keeps PyTorch's
default init), which is what pgrad's ``ortho_init = false`` does. VecNormalize normalises
observations and rewards during training (the Zoo's ``normalize: true``). Printed: the mean of the
last 100 training episodes every ``--every`` steps, then one JSON line with a 10-episode
deterministic evaluation (frozen statistics, raw rewards, reset seeds 10000-10009, as
``pgrad.evaluate``) and the final last-100 mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import tomllib
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from sb3_evaluation import evaluate_like_pgrad
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

PRESETS = Path(__file__).resolve().parents[1] / "pgrad" / "presets" / "ppo.toml"
# pgrad preset key -> SB3 PPO argument (the rest go into policy_kwargs or VecNormalize)
SB3_NAMES = {
    "n_steps": "n_steps",
    "batch_size": "batch_size",
    "gamma": "gamma",
    "lr": "learning_rate",
    "ent_coef": "ent_coef",
    "clip_coef": "clip_range",
    "n_epochs": "n_epochs",
    "gae_lambda": "gae_lambda",
    "max_grad_norm": "max_grad_norm",
    "vf_coef": "vf_coef",
}
IGNORED = {
    "source",
    "steps",
    "normalize_obs",
    "normalize_reward",
    "anneal_lr",
    "ortho_init",
    "log_std_init",
    "activation",
    "hidden_sizes",
}


def sb3_arguments(preset: dict) -> tuple[dict, dict]:
    """(PPO keyword arguments, policy_kwargs) for a pgrad PPO preset table; refuses what it cannot map."""
    unknown = set(preset) - set(SB3_NAMES) - IGNORED
    if unknown or preset.get("anneal_lr", False) or preset.get("n_envs", 1) != 1:
        raise SystemExit(
            f"cannot map {sorted(unknown) or 'anneal_lr / n_envs'} to SB3; this script takes the Zoo's 1-env "
            "constant-lr presets"
        )
    kwargs = {SB3_NAMES[key]: value for key, value in preset.items() if key in SB3_NAMES}
    policy_kwargs = {
        "log_std_init": preset.get("log_std_init", 0.0),
        "ortho_init": preset.get("ortho_init", True),
        "activation_fn": {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[preset.get("activation", "tanh")],
        "net_arch": {
            "pi": list(preset.get("hidden_sizes", [64, 64])),
            "vf": list(preset.get("hidden_sizes", [64, 64])),
        },
    }
    return kwargs, policy_kwargs


class Progress(BaseCallback):
    """Prints the last-100 training-episode mean every ``every`` steps."""

    def __init__(self, monitor: Monitor, every: int) -> None:
        super().__init__()
        self.monitor, self.every, self.next_print = monitor, every, every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_print:
            rewards = self.monitor.get_episode_rewards()
            print(
                f"{self.num_timesteps:>9} steps  last-100 {np.mean(rewards[-100:]) if rewards else float('nan'):8.1f}",
                flush=True,
            )
            self.next_print += self.every
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=50_000, help="print the last-100 mean this often")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset value (TOML syntax), e.g. ortho_init=true",
    )
    parser.add_argument("--episodes", help="write every training episode (step, return) to this CSV")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = tomllib.loads(PRESETS.read_text())[args.env]
    for item in args.set:
        preset.update(tomllib.loads(item))
    kwargs, policy_kwargs = sb3_arguments(preset)
    monitor = Monitor(gym.make(args.env))
    venv = VecNormalize(
        DummyVecEnv([lambda: monitor]),
        norm_obs=preset.get("normalize_obs", True),
        norm_reward=preset.get("normalize_reward", False),
        gamma=kwargs["gamma"],
    )
    model = PPO("MlpPolicy", venv, seed=args.seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)
    print(json.dumps({"ppo": kwargs, "policy_kwargs": {k: str(v) for k, v in policy_kwargs.items()}}), flush=True)
    start = time.perf_counter()
    model.learn(args.steps, callback=Progress(monitor, args.every))
    seconds = time.perf_counter() - start
    if args.episodes:
        steps = np.cumsum(monitor.get_episode_lengths())
        with open(args.episodes, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "return"])
            writer.writerows(zip(steps.tolist(), monitor.get_episode_rewards()))
    returns = evaluate_like_pgrad(model, venv, args.env)
    print(
        json.dumps(
            {
                "env": args.env,
                "seed": args.seed,
                "steps": args.steps,
                "wall_seconds": round(seconds, 1),
                "eval_mean_return": float(np.mean(returns)),
                "eval_std_return": float(np.std(returns)),
                "last_100_episode_return_mean": float(np.mean(monitor.get_episode_rewards()[-100:])),
            }
        )
    )


if __name__ == "__main__":
    main()
