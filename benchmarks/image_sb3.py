"""PPO on image observations, pgrad next to Stable-Baselines3 with the same network and settings.

    .venv/bin/python benchmarks/image_sb3.py MinAtar/Breakout-v1 --steps 200000 --seeds 0
    .venv/bin/python benchmarks/image_sb3.py ALE/Breakout-v5 --steps 50000 --seeds 0

Both sides train PPO with CleanRL ppo_atari.py's settings (8 envs x 128 steps, 4 epochs of 4
minibatches, Adam 2.5e-4 annealed, clip 0.1, entropy 0.01, value coefficient 0.5, grad norm 0.5,
gamma 0.99, lambda 0.95) and the same network: pgrad's CNN (the small CNN for MinAtar's 10x10,
the Nature CNN for Atari's 84x84 frame stacks, ``cnn_features`` units) feeding linear actor and
critic heads, shared. SB3 gets the same CNN as its features extractor (``net_arch=[]``) and
pgrad's own env construction (pgrad's Atari preprocessing for ALE ids, so both see the same
frames). Runs alternate pgrad, SB3 per seed in fresh processes, one torch thread each; the clock
covers ``learn`` only. Then each policy plays 10 deterministic episodes (for Atari: full games,
unclipped scores). Needs the ``bench`` extra and the env's package.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SETTINGS = dict(
    n_envs=8,
    n_steps=128,
    batch_size=256,
    n_epochs=4,
    lr=2.5e-4,
    anneal_lr=True,
    gamma=0.99,
    gae_lambda=0.95,
    clip_coef=0.1,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
)


def network(env_id: str) -> dict:
    small = env_id.startswith("MinAtar/")
    return {"cnn": "small" if small else "nature", "cnn_features": 128 if small else 512}


def run_pgrad(env_id: str, seed: int, steps: int) -> dict:
    import torch

    import pgrad

    torch.set_num_threads(1)
    agent = pgrad.PPO(
        env_id, seed=seed, preset="none", hidden_sizes=(), normalize_obs=False, **SETTINGS, **network(env_id)
    )
    start = time.time()
    agent.learn(steps, quiet=True)
    seconds = time.time() - start
    result = pgrad.evaluate(agent, env_id, episodes=10, seed=10_000)
    agent.close()
    return {"impl": "pgrad", "seconds": seconds, "steps_per_second": steps / seconds, "eval": result["mean_return"]}


def run_sb3(env_id: str, seed: int, steps: int) -> dict:
    import numpy as np
    import torch
    from gymnasium import spaces
    from stable_baselines3 import PPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import pgrad
    from pgrad.encoders import make_cnn
    from pgrad.envs import make_env
    from pgrad.observations import ObservationLayout

    torch.set_num_threads(1)
    options = network(env_id)

    class PgradCNN(BaseFeaturesExtractor):
        """pgrad's CNN for this observation, on the raw observation as SB3 gives it (as floats)."""

        def __init__(self, observation_space: spaces.Box) -> None:
            piece = ObservationLayout(observation_space).images[0]
            super().__init__(observation_space, options["cnn_features"])
            self.piece = piece
            self.cnn = make_cnn(options["cnn"], piece, options["cnn_features"])

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            if self.piece.channels_last:
                obs = obs.permute(0, 3, 1, 2)
            scale = 1.0 / 255.0 if self.piece.space.dtype == np.uint8 else 1.0
            return self.cnn(obs.float() * scale)

    envs = DummyVecEnv([lambda: make_env(env_id, atari_training=True) for _ in range(SETTINGS["n_envs"])])
    envs.seed(seed)
    steps_per_update = SETTINGS["n_envs"] * SETTINGS["n_steps"]
    model = PPO(
        "MlpPolicy",
        envs,
        n_steps=SETTINGS["n_steps"],
        batch_size=SETTINGS["batch_size"],
        n_epochs=SETTINGS["n_epochs"],
        learning_rate=lambda progress: SETTINGS["lr"] * progress,
        gamma=SETTINGS["gamma"],
        gae_lambda=SETTINGS["gae_lambda"],
        clip_range=SETTINGS["clip_coef"],
        ent_coef=SETTINGS["ent_coef"],
        vf_coef=SETTINGS["vf_coef"],
        max_grad_norm=SETTINGS["max_grad_norm"],
        policy_kwargs={"features_extractor_class": PgradCNN, "net_arch": [], "normalize_images": False},
        seed=seed,
        device="cpu",
    )
    start = time.time()
    model.learn(-(-steps // steps_per_update) * steps_per_update)
    seconds = time.time() - start
    env = make_env(env_id)
    returns = []
    for episode in range(10):
        obs, _ = env.reset(seed=10_000 + episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    assert pgrad  # the env ids of pgrad's registrations and packages
    return {"impl": "sb3", "seconds": seconds, "steps_per_second": steps / seconds, "eval": float(np.mean(returns))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--one", nargs=2, metavar=("IMPL", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        impl, seed = args.one
        print(json.dumps((run_pgrad if impl == "pgrad" else run_sb3)(args.env, int(seed), args.steps)))
        return
    rows = []
    for seed in args.seeds:
        for impl in ("pgrad", "sb3"):
            command = [sys.executable, __file__, args.env, "--steps", str(args.steps), "--one", impl, str(seed)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            rows.append({**json.loads(out), "seed": seed})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| {args.env}, {args.steps:,} steps | seed | steps/s | eval return (10 episodes) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['impl']} | {row['seed']} | {row['steps_per_second']:.0f} | {row['eval']:.2f} |")


if __name__ == "__main__":
    main()
