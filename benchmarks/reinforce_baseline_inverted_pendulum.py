"""REINFORCE with a learned baseline on InvertedPendulum-v5: goal >= 950 within 300k steps.

Run: .venv/bin/python benchmarks/reinforce_baseline_inverted_pendulum.py --seeds 0 1 2 3 4
Each seed trains `pgrad.Reinforce("InvertedPendulum-v5", baseline=True)` with the shipped preset
(pgrad/presets/reinforce-baseline.toml) for 300k steps in its own process (--jobs at a time),
the same as `pgrad train reinforce-baseline InvertedPendulum-v5 --steps 300000 --seed S`.
Reported per seed: deterministic evaluation (--eval-episodes episodes) at 100k, 200k and 300k
steps, and the mean return of the last 100 training episodes at 300k. Evaluating mid-run does not
change training (deterministic actions draw no random numbers; the evaluation env is separate).
Too slow for the test suite (~2-3 min per seed on one core), hence this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

WORKER = """
import json, sys, time, torch, pgrad
torch.set_num_threads(1)
seed, steps, checkpoints, eval_episodes = json.loads(sys.argv[1])
agent = pgrad.Reinforce("InvertedPendulum-v5", seed=seed, baseline=True)
evaluations = {}
pending = list(checkpoints)

def callback(agent, row):
    while pending and agent.total_steps >= pending[0]:
        evaluations[pending.pop(0)] = pgrad.evaluate(agent, episodes=eval_episodes)["mean_return"]

start = time.perf_counter()
agent.learn(steps, quiet=True, callback=callback)
seconds = time.perf_counter() - start
evaluations[steps] = pgrad.evaluate(agent, episodes=eval_episodes)["mean_return"]
print(json.dumps({"seed": seed, "steps": agent.total_steps, "seconds": seconds, "evaluations": evaluations,
                  "last_100_training": agent.logger.recent_return, "episodes": len(agent.logger.episodes)}))
"""


def run(seed: int, steps: int, eval_episodes: int) -> dict:
    checkpoints = [steps // 3, 2 * steps // 3]
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([seed, steps, checkpoints, eval_episodes])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda seed: run(seed, args.steps, args.eval_episodes), args.seeds))
    marks = sorted({int(k) for r in results for k in r["evaluations"]})
    print(
        "| seed | " + " | ".join(f"eval at {m // 1000}k" for m in marks) + " | last-100 training | episodes | seconds |"
    )
    print("|---|" + "---|" * len(marks) + "---|---|---|")
    for r in results:
        evals = " | ".join(f"{r['evaluations'][str(m)]:.1f}" for m in marks)
        print(f"| {r['seed']} | {evals} | {r['last_100_training']:.1f} | {r['episodes']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
