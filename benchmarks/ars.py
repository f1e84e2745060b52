"""ARS benchmarks (results in BENCHMARKS.md, "ARS").

    python benchmarks/ars.py mujoco ENV [--seed S] [--workers K]
        # the paper budget via the preset, run folder in runs/bench/
    python benchmarks/ars.py speedup [--steps N]                   # HalfCheetah-v5 wall time, 1 vs 2 workers, same run
    python benchmarks/ars.py cartpole-seeds [--steps N]            # ContinuousCartPole preset over seeds 0-9

``mujoco`` is ``pgrad train ars ENV --seed S --workers K --out runs/bench/ars-ENV-seedS``; its
summary.json holds the final deterministic 10-episode evaluation and the wall time. ``speedup``
trains the same seed twice and checks both runs end with identical weights (they must: results
do not depend on the number of workers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pgrad


def run_mujoco(env: str, seed: int, workers: int) -> None:
    out = Path("runs/bench") / f"ars-{env}-seed{seed}"
    command = ["pgrad", "train", "ars", env, "--seed", str(seed), "--workers", str(workers), "--out", str(out)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    print(json.dumps(json.loads((out / "summary.json").read_text()), indent=1))


def speedup(steps: int) -> None:
    results = {}
    for workers in (1, 2):
        agent = pgrad.ARS("HalfCheetah-v5", seed=0, n_workers=workers)
        start = time.perf_counter()
        agent.learn(steps, quiet=True)
        seconds = time.perf_counter() - start
        results[workers] = (seconds, agent.total_steps, agent.policy.flat_parameters())
        agent.close()
        print(
            f"workers={workers}: {agent.total_steps:,} steps in {seconds:.1f} s = {agent.total_steps / seconds:,.0f} "
            "steps/s",
            flush=True,
        )
    assert np.array_equal(results[1][2], results[2][2]), "1 and 2 workers must give the same weights"
    print(f"speed-up of 2 workers over 1: {results[1][0] / results[2][0]:.2f}x (identical weights)")


def cartpole_seeds(steps: int) -> None:
    for seed in range(10):
        agent = pgrad.ARS("pgrad/ContinuousCartPole-v0", seed=seed, n_workers=0)
        start = time.perf_counter()
        agent.learn(steps, quiet=True)
        result = pgrad.evaluate(agent, episodes=20)
        print(
            f"seed {seed}: {agent.total_steps:,} steps, eval {result['mean_return']:.1f}, "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mujoco = sub.add_parser("mujoco")
    mujoco.add_argument("env", choices=("HalfCheetah-v5", "Hopper-v5"))
    mujoco.add_argument("--seed", type=int, default=0)
    mujoco.add_argument("--workers", type=int, default=2)
    speed = sub.add_parser("speedup")
    speed.add_argument("--steps", type=int, default=640_000)
    seeds = sub.add_parser("cartpole-seeds")
    seeds.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args()
    if args.what == "mujoco":
        run_mujoco(args.env, args.seed, args.workers)
    elif args.what == "speedup":
        speedup(args.steps)
    else:
        cartpole_seeds(args.steps)


if __name__ == "__main__":
    sys.exit(main())
