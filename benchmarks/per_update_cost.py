"""Wall time per update of one-step actor-critic and REINFORCE: a baseline commit against the
working tree, side by side in one invocation, with Stable-Baselines3's A2C at ``n_steps=1`` (one
update per vector-env step, as one-step actor-critic) as the nearest outside reference.

Run: .venv/bin/python benchmarks/per_update_cost.py --baseline 3d82af7 --repeats 5

The baseline's code is ``git archive``d into a temporary folder; every case runs in a fresh
subprocess whose ``PYTHONPATH`` points at the baseline or at this checkout (each worker prints the
``pgrad`` it imported, checked here). Repetitions are interleaved (baseline and working tree
alternate, their order flipping each round), because on a shared machine the load drifts over
minutes; the speed-up reported per case is the median over rounds of the ratio of the two
measurements of one round. One torch thread everywhere.

Time per update: the time between the first and the last update of one ``learn`` call, taken by
a callback, divided by the updates in between, so building the agent, the first update and the
final checkpoint are left out. The cases:

* ``actor-critic CartPole-v1``: the shipped preset (8 envs, an update per vector step), no run folder.
* ``actor-critic Pendulum-v1 run folder``: defaults (1 env, Gaussian head), ``learn(run_dir=...)``
  as ``pgrad train`` does: metrics.csv, episodes.csv, TensorBoard events, checkpoints.
* ``reinforce CartPole-v1``: the shipped preset (an update per 2 whole episodes); it also reports
  the time per env step, since episodes lengthen as the policy learns.
* ``sb3-a2c CartPole-v1 n_steps=1``: SB3's A2C (its defaults, RMSprop) on 8 envs with ``n_steps=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name -> (kind, env, steps to time after the warm-up)
CASES = {
    "actor-critic CartPole-v1": ("actor-critic", "CartPole-v1", 8_000),
    "actor-critic Pendulum-v1 run folder": ("actor-critic", "Pendulum-v1", 1_500),
    "reinforce CartPole-v1": ("reinforce", "CartPole-v1", 10_000),
}
SB3_CASE = "sb3-a2c CartPole-v1 n_steps=1"

WORKER = """
import json, sys, tempfile, time
import torch
torch.set_num_threads(1)
import pgrad
kind, env, steps, with_run_folder = json.loads(sys.argv[1])
stamps = []
agent = pgrad.ALGORITHMS[kind](env, seed=0)
agent.learn(200, quiet=True)  # warm-up: imports, first allocations
start_steps = agent.total_steps
with tempfile.TemporaryDirectory() as folder:
    def stamp(agent, row):
        stamps.append((time.perf_counter(), agent.total_steps))
    agent.learn(steps, run_dir=folder if with_run_folder else None, quiet=True, callback=stamp)
agent.close()
(first, first_steps), (last, last_steps) = stamps[0], stamps[-1]
print(json.dumps({
    "pgrad": pgrad.__file__,
    "updates": len(stamps) - 1,
    "ms_per_update": 1e3 * (last - first) / (len(stamps) - 1),
    "us_per_step": 1e6 * (last - first) / (last_steps - first_steps),
}))
"""

SB3_WORKER = """
import json, sys, time
import torch
torch.set_num_threads(1)
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
steps, n_envs = json.loads(sys.argv[1])

class Stamp(BaseCallback):
    def __init__(self):
        super().__init__()
        self.stamps = []
    def _on_step(self):
        return True
    def _on_rollout_end(self):  # one rollout of n_steps=1 per update
        self.stamps.append((time.perf_counter(), self.num_timesteps))

model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=n_envs, seed=0), n_steps=1, seed=0, device="cpu")
model.learn(200)  # warm-up
stamp = Stamp()
model.learn(steps, callback=stamp)
(first, first_steps), (last, last_steps) = stamp.stamps[0], stamp.stamps[-1]
print(json.dumps({
    "updates": len(stamp.stamps) - 1,
    "ms_per_update": 1e3 * (last - first) / (len(stamp.stamps) - 1),
    "us_per_step": 1e6 * (last - first) / (last_steps - first_steps),
}))
"""


def run_worker(code: str, argument: list, pythonpath: Path, cwd: Path) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argument)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def export_tree(revision: str, folder: Path) -> str:
    """``git archive`` of ``revision`` unpacked into ``folder``; its full commit hash."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", revision], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="3d82af7", help="the commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--cases", nargs="*", default=[*CASES, SB3_CASE], help="a subset of the cases")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        baseline_tree = Path(scratch) / "baseline"
        baseline_tree.mkdir()
        commit = export_tree(args.baseline, baseline_tree)
        trees = {"baseline": baseline_tree, "working": REPO}
        runs: dict[str, dict[str, list[dict]]] = {case: {"baseline": [], "working": []} for case in args.cases}
        for round_index in range(args.repeats):
            order = ["baseline", "working"] if round_index % 2 == 0 else ["working", "baseline"]
            for case in args.cases:
                if case == SB3_CASE:
                    result = run_worker(SB3_WORKER, [8_000, 8], REPO, Path(scratch))
                    runs[case]["working"].append(result)  # one column: SB3 is the same code in both
                    print(f"round {round_index} {case}: {result['ms_per_update']:.3f} ms/update", flush=True)
                    continue
                kind, env, steps = CASES[case]
                for side in order:
                    result = run_worker(WORKER, [kind, env, steps, "run folder" in case], trees[side], Path(scratch))
                    expected = trees[side] / "pgrad" / "__init__.py"
                    if Path(result["pgrad"]).resolve() != expected.resolve():
                        raise RuntimeError(f"the {side} worker imported {result['pgrad']}, not {expected}")
                    runs[case][side].append(result)
                    print(
                        f"round {round_index} {case} {side}: {result['ms_per_update']:.3f} ms/update, "
                        f"{result['us_per_step']:.1f} us/step",
                        flush=True,
                    )

    print(f"\nbaseline {commit[:12]} ({args.baseline}) vs the working tree, {args.repeats} interleaved rounds")
    print(f"{'case':40} {'baseline ms':>12} {'working ms':>11} {'speed-up':>9} {'per step':>9}")
    summary = {}
    working_ac = None
    for case in args.cases:
        working = runs[case]["working"]
        working_ms = statistics.median(r["ms_per_update"] for r in working)
        if case == SB3_CASE:
            summary[case] = {"ms_per_update": working_ms}
            print(f"{case:40} {'':>12} {working_ms:11.3f}")
            continue
        baseline = runs[case]["baseline"]
        baseline_ms = statistics.median(r["ms_per_update"] for r in baseline)
        # one ratio per round (the two runs of a round saw the same load), then their median
        update_ratio = statistics.median(b["ms_per_update"] / w["ms_per_update"] for b, w in zip(baseline, working))
        step_ratio = statistics.median(b["us_per_step"] / w["us_per_step"] for b, w in zip(baseline, working))
        summary[case] = {
            "baseline_ms_per_update": baseline_ms,
            "working_ms_per_update": working_ms,
            "speedup_per_update": update_ratio,
            "speedup_per_step": step_ratio,
        }
        if case == "actor-critic CartPole-v1":
            working_ac = working_ms
        print(f"{case:40} {baseline_ms:12.3f} {working_ms:11.3f} {update_ratio:8.2f}x {step_ratio:8.2f}x")
    if SB3_CASE in summary and working_ac is not None:
        ratio = statistics.median(
            s["ms_per_update"] / w["ms_per_update"]
            for s, w in zip(runs[SB3_CASE]["working"], runs["actor-critic CartPole-v1"]["working"])
        )
        print(f"SB3 A2C (n_steps=1, 8 envs) per update / pgrad actor-critic (preset, 8 envs) per update: {ratio:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"baseline": commit, "runs": runs, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
