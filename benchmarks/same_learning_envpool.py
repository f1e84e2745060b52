"""Does PPO learn the same with ``vectorization=envpool`` as with Gymnasium's envs? (issue 25)

Two parts, each selected with ``--part`` (``both`` by default, in one invocation):

* ``learning``: PPO with the shipped preset for ``--env`` (``pgrad list ppo``), trained for
  ``--steps`` per run at every seed of ``--seeds``, once with ``vectorization=sync`` (Gymnasium's
  envs, pgrad's default) and once with ``vectorization=envpool``, one fresh subprocess per run, one
  run at a time, alternating the two backends seed by seed. Each run's score is the mean raw return
  of its last 100 training episodes (episodes.csv). The two sets of scores are compared with an
  exact two-sided permutation test on the difference of means (every split of the pooled scores)
  and Welch's t-test. The two backends cannot give the same numbers for one seed (EnvPool's C++
  envs draw their initial states from their own generators), so the question is whether the
  scores are samples of one distribution; a p-value far from 0 says no difference was found, not
  that none exists, at this many seeds.
* ``stepping``: the bare simulator, stepped with pre-drawn random actions, ``--stepping-steps``
  steps per env, at 1 and 8 envs: pgrad's Gymnasium sync vector env (what ``vectorization=sync``
  steps) next to the EnvPool pool behind ``vectorization=envpool``, each in a fresh subprocess,
  alternating, median of ``--repeats``; steps per second count env steps summed over envs.

    .venv/bin/python benchmarks/same_learning_envpool.py --env Hopper-v5 --steps 150000 --seeds 0 1 2 3 4

Needs the ``envpool`` extra (``pip install -e '.[envpool]'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from same_learning import _curve  # noqa: E402  (the 100-episode running mean, spelled once)

from pgrad.experiments.stats import permutation_p_value  # noqa: E402

BACKENDS = ("sync", "envpool")


def _train(backend: str, env_id: str, steps: int, seed: int) -> dict:
    """One PPO run with the shipped preset; its training episodes and speed."""
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.PPO(env_id, seed=seed, vectorization=backend)
    start = time.perf_counter()
    agent.learn(steps, quiet=True)
    wall = time.perf_counter() - start
    episodes = agent.logger.episodes
    agent.close()
    return {
        "steps": [int(row["step"]) for row in episodes],
        "returns": [float(row["return"]) for row in episodes],
        "sps": agent.total_steps / wall,
        "wall": wall,
        "preset": agent.preset,
    }


def _step_raw(backend: str, env_id: str, n_envs: int, steps: int, seed: int) -> dict:
    """Steps per second of the bare vector env (random actions drawn beforehand)."""
    import numpy as np

    from pgrad.envs import make_vector_env

    keywords = {} if backend == "envpool" else {"keep_infos": False}  # the training collector's setting
    envs = make_vector_env(env_id, n_envs, seed=seed, vectorization=backend, **keywords)
    envs.reset(seed=seed)
    actions = np.stack([envs.action_space.sample() for _ in range(steps)])  # (steps, n_envs, *action_shape)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    wall = time.perf_counter() - start
    threads = envs._pool.config["num_threads"] if backend == "envpool" else None
    envs.close()
    return {"sps": steps * n_envs / wall, "num_threads": threads}


def _worker(command: list[str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, *command], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def learning(args: argparse.Namespace) -> list[dict]:
    runs = []
    for seed in args.seeds:
        for backend in BACKENDS:
            command = ["--worker", "train", "--backend", backend, "--env", args.env]
            run = _worker([*command, "--steps", str(args.steps), "--seeds", str(seed)])
            runs.append({"backend": backend, "seed": seed, **run})
            final = statistics.fmean(run["returns"][-100:])
            print(f"  {backend} seed {seed}: last-100 return {final:.1f}, {run['sps']:,.0f} steps/s", flush=True)
    print(f"\nPPO {args.env} (preset {runs[0]['preset']}), {args.steps:,} steps per run, seeds {args.seeds}")
    print("| backend | seed | last-100 training return | episodes | steps/s | wall s |")
    print("|---|---|---|---|---|---|")
    finals: dict[str, list[float]] = {}
    for backend in BACKENDS:
        for run in (run for run in runs if run["backend"] == backend):
            final = statistics.fmean(run["returns"][-100:])
            finals.setdefault(backend, []).append(final)
            print(
                f"| {backend} | {run['seed']} | {final:.1f} | {len(run['returns'])} | {run['sps']:,.0f} "
                f"| {run['wall']:.0f} |"
            )
        scores = finals[backend]
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        print(f"| {backend} | mean (sd) | {statistics.fmean(scores):.1f} ({spread:.1f}) | | | |")
    sync, envpool = finals["sync"], finals["envpool"]
    print(f"\nexact permutation test, difference of means: p = {permutation_p_value(sync, envpool):.3f}")
    if len(sync) > 1 and len(envpool) > 1:
        from scipy.stats import ttest_ind

        result = ttest_ind(sync, envpool, equal_var=False)
        print(f"Welch's t-test: t = {result.statistic:.2f}, p = {result.pvalue:.3f}")
    if args.out:
        _figure(args, runs)
    return runs


def _figure(args: argparse.Namespace, runs: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0, args.steps, 200)
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for backend, colour in zip(BACKENDS, ("tab:blue", "tab:green")):
        curves = np.array([_curve(r["steps"], r["returns"], grid) for r in runs if r["backend"] == backend])
        with warnings.catch_warnings():  # grid points before the first 100 episodes are NaN in every run
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        axes.plot(grid, mean, color=colour, label=f"vectorization={backend}")
        axes.fill_between(grid, low, high, color=colour, alpha=0.2)
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return (mean of the last 100 training episodes)")
    axes.set_title(f"PPO on {args.env}, shipped preset, range over {len(args.seeds)} seeds shaded")
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"figure: {args.out}")


def stepping(args: argparse.Namespace) -> None:
    results: dict[tuple[str, int], list[float]] = {}
    threads: dict[int, int | None] = {}
    for n_envs in (1, 8):
        for _ in range(args.repeats):
            for backend in BACKENDS:
                command = ["--worker", "step", "--backend", backend, "--env", args.stepping_env]
                run = _worker([*command, "--n-envs", str(n_envs), "--steps", str(args.stepping_steps)])
                results.setdefault((backend, n_envs), []).append(run["sps"])
                if backend == "envpool":
                    threads[n_envs] = run["num_threads"]
    print(f"\nraw stepping, {args.stepping_env}, random actions, {args.stepping_steps:,} steps per env")
    print(f"median of {args.repeats}, steps/s summed over envs")
    print("| n_envs | Gymnasium sync | EnvPool | EnvPool / sync |")
    print("|---|---|---|---|")
    for n_envs in (1, 8):
        sync = statistics.median(results[("sync", n_envs)])
        envpool = statistics.median(results[("envpool", n_envs)])
        print(f"| {n_envs} | {sync:,.0f} | {envpool:,.0f} | {envpool / sync:.2f} |")
    print(f"EnvPool num_threads as configured: {threads} (0: EnvPool's default)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("learning", "stepping", "both"), default="both")
    parser.add_argument("--env", default="Hopper-v5", help="the learning part's env (a MuJoCo id with a PPO preset)")
    parser.add_argument("--steps", type=int, default=150_000, help="learning: env steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", help="learning: also draw both backends' curves into this PNG")
    parser.add_argument("--json", help="learning: also write every run's episodes to this JSON file")
    parser.add_argument("--stepping-env", default="HalfCheetah-v5")
    parser.add_argument("--stepping-steps", type=int, default=20_000, help="stepping: steps per env")
    parser.add_argument("--repeats", type=int, default=3, help="stepping: runs per backend and n_envs")
    parser.add_argument("--worker", choices=("train", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--n-envs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "train":
        print(json.dumps(_train(args.backend, args.env, args.steps, args.seeds[0])))
        return
    if args.worker == "step":
        print(json.dumps(_step_raw(args.backend, args.env, args.n_envs, args.steps, args.seeds[0])))
        return

    start = time.perf_counter()
    if args.part in ("learning", "both"):
        runs = learning(args)
        if args.json:
            Path(args.json).write_text(json.dumps(runs))
    if args.part in ("stepping", "both"):
        stepping(args)
    print(f"\nwall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
