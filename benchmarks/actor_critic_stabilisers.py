"""One-step actor-critic on LunarLander-v3 with and without LayerNorm and a target critic.

    python benchmarks/actor_critic_stabilisers.py --seeds 0 1 2 3 4 --steps 500000 --jobs 2
    python benchmarks/actor_critic_stabilisers.py --variants layer_norm "polyak target critic"   # each alone

Both variants use the same settings (8 envs, Adam, actor step 1e-3, critic step 3e-3: the
CartPole-v1 preset's, untuned here); the stabilised one adds ``layer_norm=true`` and
``target_critic=polyak`` with ``target_tau=0.01``. Each run trains for ``--steps`` steps, then
plays 20 deterministic evaluation episodes. Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

VARIANTS = {
    "plain": {},
    "layer_norm + polyak target critic": {"layer_norm": True, "target_critic": "polyak", "target_tau": 0.01},
    "layer_norm": {"layer_norm": True},
    "polyak target critic": {"target_critic": "polyak", "target_tau": 0.01},
}
COMMON = {"n_envs": 8, "lr": 1e-3, "value_lr": 3e-3}


def run(job: tuple[str, int, int]) -> dict:
    import torch

    import pgrad

    torch.set_num_threads(1)
    variant, seed, steps = job
    start = time.time()
    agent = pgrad.ActorCritic("LunarLander-v3", seed=seed, preset="none", **COMMON, **VARIANTS[variant])
    agent.learn(steps, quiet=True)
    returns = [float(row["return"]) for row in agent.logger.episodes]
    evaluation = pgrad.evaluate(agent, "LunarLander-v3", episodes=20, seed=10_000)
    agent.close()
    return {
        "variant": variant,
        "seed": seed,
        "last_100_training_return": float(np.mean(returns[-100:])) if returns else float("nan"),
        "eval_mean_return": evaluation["mean_return"],
        "wall_seconds": time.time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS)[:2], choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("runs/actor_critic_stabilisers.json"))
    args = parser.parse_args()
    jobs = [(variant, seed, args.steps) for seed in args.seeds for variant in args.variants]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, jobs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print("| variant | seeds | eval mean return per seed | median | last-100 training return (median) |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        rows = [r for r in results if r["variant"] == variant]
        evals = [r["eval_mean_return"] for r in rows]
        training = [r["last_100_training_return"] for r in rows]
        print(
            f"| {variant} | {', '.join(str(r['seed']) for r in rows)} | {', '.join(f'{e:.1f}' for e in evals)} "
            f"| {np.median(evals):.1f} | {np.median(training):.1f} |"
        )


if __name__ == "__main__":
    main()
