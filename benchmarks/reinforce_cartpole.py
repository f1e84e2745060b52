"""REINFORCE on CartPole-v1: the goal is a deterministic evaluation >= 475 within 500 episodes.

Run: .venv/bin/python benchmarks/reinforce_cartpole.py --seeds 0 1 2 3 4 5
Each seed trains with the shipped preset (pgrad/presets/reinforce.toml) for exactly 500 episodes,
in its own process (--jobs at a time). Two numbers per seed:

- the deterministic evaluation (20 episodes) after all 500 episodes: what
  tests/learning/test_reinforce_learns.py checks;
- "solved at": the first episode at which the last 20 training episodes averaged >= 475, and the
  same evaluation at that moment (an early-stopping rule that would make the test faster, but
  that a policy can pass in training and still fail in deterministic evaluation).

Evaluating mid-run changes nothing in training: deterministic actions draw no random numbers and
the evaluation env is a separate one.
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
seed, episodes, window, solved_return = json.loads(sys.argv[1])
agent = pgrad.Reinforce("CartPole-v1", seed=seed)
result = {"seed": seed, "solved_at": None, "eval_at_solved": None, "steps_at_solved": None}

def callback(agent, row):
    returns = [e["return"] for e in agent.logger.episodes]
    if result["solved_at"] is None and len(returns) >= window and sum(returns[-window:]) / window >= solved_return:
        result["solved_at"], result["steps_at_solved"] = len(returns), agent.total_steps
        result["seconds_at_solved"] = time.perf_counter() - start
        result["eval_at_solved"] = pgrad.evaluate(agent, episodes=20)["mean_return"]
    return len(returns) < episodes

start = time.perf_counter()
agent.learn(episodes * 500, quiet=True, callback=callback)
result["seconds"] = time.perf_counter() - start
result["episodes"] = len(agent.logger.episodes)
result["steps"] = agent.total_steps
result["eval_at_end"] = pgrad.evaluate(agent, episodes=20)["mean_return"]
print(json.dumps(result))
"""


def run(seed: int, episodes: int, window: int, solved_return: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps([seed, episodes, window, solved_return])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda seed: run(seed, args.episodes, 20, 475.0), args.seeds))
    print("| seed | solved at (episode) | steps then | eval then | eval after 500 episodes | steps | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        solved = r["solved_at"] if r["solved_at"] is not None else "-"
        steps_then = f"{r['steps_at_solved']:,}" if r["steps_at_solved"] is not None else "-"
        eval_then = f"{r['eval_at_solved']:.1f}" if r["eval_at_solved"] is not None else "-"
        print(
            f"| {r['seed']} | {solved} | {steps_then} | {eval_then} | {r['eval_at_end']:.1f} | {r['steps']:,} | "
            f"{r['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
