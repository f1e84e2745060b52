"""Several PPO seeds: seed-batched processes against one process per seed (issue 7).

Two ways to train the same seeds with the same settings, each timed as the user would see it:

* ``batched``: :class:`pgrad.algos.ppo_batched.SeedBatchedPPO`, the seeds split into
  ``--batched-workers`` groups (default: the cores), one process each, as
  ``pgrad train ppo ENV --seeds ... --batched`` runs them;
* ``separate``: one process per seed (``pgrad.PPO``), ``--workers`` at a time (default: the
  cores), as ``pgrad train ppo ENV --seeds ...`` runs them without ``--batched``.

For each it prints the total steps per second over all seeds, two ways: ``learn`` only (summed
transitions / the ``learn`` call, for batched only; for separate each process's own ``learn``
rate is printed, as the processes overlap) and over the whole wall time, including interpreter
start, imports and agent construction. It also prints each seed's mean
return over its last 100 training episodes, so a long run compares the learning of the two ways
(the issue asks that final returns be compared; short runs only show speed).

Settings: ``paper`` is benchmarks/speed.py's (PPO paper MuJoCo settings, 2x64 tanh, 2048 steps,
10 epochs, batch 64), ``preset`` is the env's shipped preset (HalfCheetah-v5: 512 steps, 20
epochs, 2x256 ReLU, observation and reward normalisation).

    nice -n 5 .venv/bin/python benchmarks/seed_batched.py --env HalfCheetah-v5 --seeds 1 2 3 4 5 --steps 8192
    nice -n 5 .venv/bin/python benchmarks/seed_batched.py --settings preset --steps 1000000   # learning comparison

The machine may be shared: wall-clock figures are only comparable within one invocation, and
the load average before each mode is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def settings_of(name: str) -> dict:
    if name == "preset":
        return {}
    from speed import PGRAD_KWARGS  # benchmarks/speed.py: one spelling of the paper settings

    return dict(PGRAD_KWARGS["ppo"])


def _worker(mode: str, env: str, seeds: list[int], steps: int, settings: str) -> dict:
    import math

    import torch

    torch.set_num_threads(1)
    kwargs = settings_of(settings)
    if mode == "batched":
        from pgrad.algos.ppo_batched import SeedBatchedPPO

        agent = SeedBatchedPPO(env, seeds, **kwargs)
        start = time.perf_counter()
        agent.learn(steps)
        learn_s = time.perf_counter() - start
        agents = agent.agents
    else:
        import pgrad

        (seed,) = seeds
        single = pgrad.PPO(env, seed=seed, **kwargs)
        start = time.perf_counter()
        single.learn(steps, quiet=True)
        learn_s = time.perf_counter() - start
        agents = [single]
    returns = [a.logger.recent_return for a in agents]
    return {
        "learn_s": learn_s,
        "steps": sum(a.total_steps for a in agents),
        "recent_return": [r if math.isfinite(r) else None for r in returns],
    }


def _spawn(mode: str, env: str, seeds: list[int], steps: int, settings: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--env",
        env,
        "--steps",
        str(steps),
        "--settings",
        settings,
        "--seeds",
        *map(str, seeds),
    ]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=8192, help="steps per seed")
    parser.add_argument("--settings", choices=("paper", "preset"), default="paper")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="separate: processes at a time")
    parser.add_argument(
        "--batched-workers",
        type=int,
        default=os.cpu_count(),
        help="batched: processes, each a seed-batched model over its share of the seeds "
        "(pgrad train --batched --workers)",
    )
    parser.add_argument("--modes", nargs="+", default=["batched", "separate"], choices=("batched", "separate"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, args.env, args.seeds, args.steps, args.settings)))
        return

    print(
        f"{args.env}, seeds {args.seeds}, {args.steps} steps each, settings {args.settings}; "
        f"{os.cpu_count()} cores, load before: {os.getloadavg()[0]:.2f}"
    )
    for mode in args.modes:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        if mode == "batched":
            from pgrad.experiments.seed_batched import seed_groups

            groups = seed_groups(args.seeds, args.batched_workers)
            with ThreadPoolExecutor(max_workers=len(groups)) as pool:
                results = list(pool.map(lambda g: _spawn("batched", args.env, g, args.steps, args.settings), groups))
            learn_wall = max(r["learn_s"] for r in results)  # the groups run at once: the slowest one's learn()
            print(
                f"batched: groups {groups}, one process each; learn() of each "
                f"{[round(r['steps'] / r['learn_s']) for r in results]} steps/s"
            )
        else:
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                results = list(
                    pool.map(lambda s: _spawn("separate", args.env, [s], args.steps, args.settings), args.seeds)
                )
            learn_wall = None  # the processes overlap; only the whole wall time is meaningful
            per_process = [r["steps"] / r["learn_s"] for r in results]
            print(
                f"separate: learn() of each process alone {[round(x) for x in per_process]} steps/s, "
                f"{args.workers} at a time"
            )
        wall = time.perf_counter() - start
        steps = sum(r["steps"] for r in results)
        returns = [x for r in results for x in r["recent_return"]]
        learn_text = f"{steps / learn_wall:8.0f} steps/s in learn()" if learn_wall else " " * 24
        print(
            f"{mode:9s} load {load:4.2f}: {steps} steps, {steps / wall:8.0f} steps/s whole wall ({wall:.1f} s), "
            f"{learn_text}; "
            f"last-100 returns {[None if x is None else round(x, 1) for x in returns]}"
        )


if __name__ == "__main__":
    main()
