"""Recurrent PPO vs MLP PPO on the velocity-masked tasks: learning and speed, several seeds.

Run: .venv/bin/python benchmarks/ppo_lstm_novel.py --cases cartpole-novel-50k --seeds 0 1 2 3 4
Each (case, algorithm, seed) trains in its own process (``--jobs`` at a time, one torch thread
each) with the shipped ppo-lstm preset; MLP PPO gets the same hyperparameters minus the LSTM
fields. The table shows the deterministic evaluation (20 episodes), the last-100-training-episode
mean, and steps/s over the whole ``learn()`` call (wall clock: noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CASES = {
    "cartpole-novel-50k": ("pgrad/CartPoleNoVel-v1", 50_000),
    "cartpole-novel-100k": ("pgrad/CartPoleNoVel-v1", 100_000),  # twice the preset budget (BENCHMARKS.md, 2026-12-03)
    "pendulum-novel-200k": ("pgrad/PendulumNoVel-v1", 200_000),
}

WORKER = """
import json, sys, time, pgrad
from pgrad.algos.ppo_lstm import RECURRENT_ONLY_FIELDS
from pgrad.config import load_preset
algo, env, steps, seed, overrides = json.loads(sys.argv[1])
values = {**load_preset("ppo-lstm", env), **overrides}
if algo == "ppo":
    values = {k: v for k, v in values.items() if k not in RECURRENT_ONLY_FIELDS}
agent = pgrad.ALGORITHMS[algo](env, seed=seed, preset=None, **values)
start = time.perf_counter()
agent.learn(steps, quiet=True)
seconds = time.perf_counter() - start
result = pgrad.evaluate(agent, episodes=20)
record = {"eval": result["mean_return"], "last100": agent.logger.recent_return, "steps": agent.total_steps}
print(json.dumps({**record, "seconds": seconds}))
"""


def run(case: str, algo: str, seed: int, overrides: dict) -> dict:
    env, steps = CASES[case]
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([algo, env, steps, seed, overrides])],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"case": case, "algo": algo, "seed": seed, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--algos", nargs="+", default=["ppo-lstm", "ppo"], choices=["ppo-lstm", "ppo"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override preset values")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    overrides = dict(pair.split("=", 1) for pair in args.set)
    jobs = [(case, algo, seed) for case in args.cases for algo in args.algos for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(*job, overrides), jobs))
    print("| case | algo | seed | eval (20 ep.) | last-100 train | steps | seconds | steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['case']} | {r['algo']} | {r['seed']} | {r['eval']:.1f} | {r['last100']:.1f} | {r['steps']:,} "
            f"| {r['seconds']:.1f} | {r['steps'] / r['seconds']:,.0f} |"
        )


if __name__ == "__main__":
    main()
