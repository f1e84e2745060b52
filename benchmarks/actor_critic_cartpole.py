"""One-step actor-critic and A2C on CartPole-v1 with their shipped presets, over many seeds.

Run: .venv/bin/python benchmarks/actor_critic_cartpole.py --seeds 0 1 2 3 4 5 6 7
Each (algorithm, seed) trains in its own process (``--jobs`` at a time) on the preset's budget
and is evaluated deterministically over 20 episodes with ``pgrad.evaluate``, as the learning
tests in tests/learning/test_a2c_learns.py and test_actor_critic_learns.py do, so their
threshold of 475 can be checked against the margin it leaves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CASES = {"actor-critic": 60_000, "a2c": 100_000}  # the presets' `steps`

WORKER = """
import json, sys, time, pgrad
algo, steps, seed = json.loads(sys.argv[1])
agent = pgrad.ALGORITHMS[algo]("CartPole-v1", seed=seed)
before = pgrad.evaluate(agent, episodes=20)["mean_return"]
start = time.perf_counter()
agent.learn(steps, quiet=True)
seconds = time.perf_counter() - start
after = pgrad.evaluate(agent, episodes=20)["mean_return"]
print(json.dumps({"before": before, "after": after, "steps": agent.total_steps, "seconds": seconds}))
"""


def run(algo: str, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([algo, CASES[algo], seed])],
        capture_output=True,
        text=True,
        check=True,
    )
    return {"algo": algo, "seed": seed, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--algos", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    jobs = [(algo, seed) for algo in args.algos for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    print("| algo | seed | untrained | trained | steps | seconds |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['algo']} | {r['seed']} | {r['before']:.1f} | {r['after']:.1f} | {r['steps']:,} | "
            f"{r['seconds']:.1f} |"
        )
    for algo in args.algos:
        trained = sorted(r["after"] for r in results if r["algo"] == algo)
        reached = sum(value >= 475 for value in trained)
        print(
            f"{algo}: {reached}/{len(trained)} seeds >= 475; min {trained[0]:.1f}, median "
            f"{trained[len(trained) // 2]:.1f}"
        )


if __name__ == "__main__":
    main()
