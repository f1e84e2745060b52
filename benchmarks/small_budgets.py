"""Learning results on the small budgets the learning tests use, over several seeds.

Run: .venv/bin/python benchmarks/small_budgets.py --seeds 0 1 2 3 4 5
Each (case, seed) trains in its own process (2 at a time) and is evaluated deterministically;
the table shows untrained and trained evaluation returns, so test thresholds can be checked
against the margin they leave.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CASES = {
    "ppo-cartpole-50k": ("CartPole-v1", 50_000, {}, 20),
    "ppo-continuous-cartpole-30k": ("pgrad/ContinuousCartPole-v0", 30_000, {"n_envs": 4, "n_steps": 256}, 10),
    "ppo-continuous-cartpole-truncnorm-30k": (
        "pgrad/ContinuousCartPole-v0",
        30_000,
        {"n_envs": 4, "n_steps": 256, "action_dist": "truncated_normal"},
        10,
    ),
    "ppo-inverted-pendulum-30k": ("InvertedPendulum-v5", 30_000, {"n_envs": 4, "n_steps": 256}, 10),
}

WORKER = """
import json, sys, time, pgrad
env, steps, overrides, episodes, seed = json.loads(sys.argv[1])
agent = pgrad.PPO(env, seed=seed, **overrides)
before = pgrad.evaluate(agent, episodes=episodes)["mean_return"]
start = time.perf_counter()
agent.learn(steps, quiet=True)
seconds = time.perf_counter() - start
after = pgrad.evaluate(agent, episodes=episodes)["mean_return"]
print(json.dumps({"before": before, "after": after, "steps": agent.total_steps, "seconds": seconds}))
"""


def run(case: str, seed: int) -> dict:
    env, steps, overrides, episodes = CASES[case]
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([env, steps, overrides, episodes, seed])],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"case": case, "seed": seed, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    jobs = [(case, seed) for case in args.cases for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    print("| case | seed | untrained | trained | steps | seconds |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['case']} | {r['seed']} | {r['before']:.1f} | {r['after']:.1f} | {r['steps']:,} | "
            f"{r['seconds']:.1f} |"
        )
    for case in args.cases:
        trained = [r["after"] for r in results if r["case"] == case]
        print(
            f"{case}: min {min(trained):.1f}, median {sorted(trained)[len(trained) // 2]:.1f} over {len(trained)} seeds"
        )


if __name__ == "__main__":
    main()
