"""Training speed of pgrad next to Stable-Baselines3, and both next to the bare simulator.

For each case (algorithm x env) one invocation runs, as fresh subprocesses, alternating A B A B:

* ``pgrad``: ``pgrad.<ALGO>(env, preset=None, ...).learn(steps)``;
* ``sb3``: Stable-Baselines3's same algorithm with the same settings;
* ``raw``: the same env stepped ``steps`` times with random actions (pre-drawn from the action
  space, so only the env is timed), resetting at episode ends: the ceiling for any trainer.

and prints medians, the pgrad/SB3 ratio of steps per second, and the overhead factor of each
trainer, ``training time / raw stepping time`` for the same number of steps (1.0 would mean the
trainer costs nothing beyond the simulator).

Settings, the same on both sides (``--set KEY=VALUE`` adds pgrad-only overrides on top):

* PPO: the PPO paper's MuJoCo settings (Schulman et al. 2017, Table 3): 1 env, 2048 steps per
  rollout, 10 epochs, 32 minibatches of 64, Adam 3e-4 (eps 1e-5), gamma 0.99, lambda 0.95, clip
  0.2, no entropy bonus, vf_coef 0.5, max grad norm 0.5, constant lr, no observation
  normalisation (SB3 does neither without VecNormalize and a schedule), separate 2x64 tanh actor
  and critic, state-independent log-std starting at 0.
* A2C: SB3's defaults, which pgrad's A2C also uses: 1 env, 5 steps per update, RMSprop 7e-4
  (alpha 0.99, eps 1e-5), gamma 0.99, lambda 1, vf_coef 0.5, max grad norm 0.5, 2x64 tanh.
* One torch thread per process, CPU.

The clock covers the whole ``learn()`` call (rollouts, returns, updates, logging), not imports
or agent construction. The machine may be shared, so the order alternates and every figure is a
median over ``--repeats``; ratios are computed from medians taken in the same session.

    .venv/bin/python benchmarks/speed.py                          # all cases, 3 repeats
    .venv/bin/python benchmarks/speed.py --cases ppo:HalfCheetah-v5 --repeats 5
    .venv/bin/python benchmarks/speed.py --cases ppo:HalfCheetah-v5 --profile cprofile   # where pgrad's time goes
    .venv/bin/python benchmarks/speed.py --commit HEAD            # benchmark a commit, not the working tree

``--commit REV`` benchmarks ``git archive REV pgrad`` instead of the working tree, so edits made
while the benchmark runs cannot leak into some of its runs.

SB3 is the ``bench`` extra (``pip install -e .[bench]``), never a pgrad dependency; without it the
SB3 runs are skipped.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ("ppo:HalfCheetah-v5", "ppo:CartPole-v1", "a2c:HalfCheetah-v5", "a2c:CartPole-v1")
NET = dict(hidden_sizes=(64, 64), activation="tanh")

# The same settings spelled once for each library (see the module docstring).
PGRAD_KWARGS = {
    "ppo": dict(
        preset=None,
        n_envs=1,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        lr=3e-4,
        adam_eps=1e-5,
        gamma=0.99,
        gae_lambda=0.95,
        clip_coef=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        anneal_lr=False,
        normalize_obs=False,
        log_std_init=0.0,
        **NET,
    ),
    "a2c": dict(
        preset=None,
        n_envs=1,
        n_steps=5,
        lr=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        optimizer="rmsprop",
        rmsprop_alpha=0.99,
        optimizer_eps=1e-5,
        anneal_lr=False,
        normalize_advantage=False,
        normalize_obs=False,
        log_std_init=0.0,
        **NET,
    ),
}
SB3_KWARGS = {
    "ppo": dict(
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
    ),
    "a2c": dict(
        n_steps=5,
        learning_rate=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        rms_prop_eps=1e-5,
        use_rms_prop=True,
        normalize_advantage=False,
    ),
}


# -- one timed run, in its own process ---------------------------------------------------------


def _run_pgrad(algo: str, env_id: str, steps: int, seed: int, overrides: dict, profiler: str | None) -> dict:
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.ALGORITHMS[algo](env_id, seed=seed, **{**PGRAD_KWARGS[algo], **overrides})
    result = _timed(lambda: agent.learn(steps, quiet=True), profiler)
    result.update(
        steps_done=agent.total_steps,
        recent_return=_finite_or_none(agent.logger.recent_return),
        torch_threads=torch.get_num_threads(),
        pgrad_file=pgrad.__file__,
    )
    agent.close()
    return result


def _run_parts(algo: str, env_id: str, seed: int, overrides: dict) -> dict:
    """pgrad's parts, timed apart: a rollout (us per env step), a whole iteration minus its rollout
    (ms per minibatch for PPO, per update for A2C) and ``predict`` on one observation (us)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.ALGORITHMS[algo](env_id, seed=seed, **{**PGRAD_KWARGS[algo], **overrides})
    c = agent.config
    agent.learn(c.n_steps * c.n_envs, quiet=True)  # warm up: first rollout, first update
    # Each iteration's rollout is timed inside the iteration (a wrapper around collect), so its
    # update is the iteration minus its own rollout; medians over at least 8 iterations and
    # 16k steps. (Timing rollouts and iterations in separate loops and subtracting the means
    # varied 2x between invocations: a single PPO iteration per loop at 2048 steps.)
    collect, rollout_seconds = agent.collector.collect, []

    def timed_collect(*args, **kwargs):
        start = time.perf_counter()
        result = collect(*args, **kwargs)
        rollout_seconds.append(time.perf_counter() - start)
        return result

    agent.collector.collect = timed_collect
    update_seconds = []
    for _ in range(max(8, 16384 // (c.n_steps * c.n_envs))):
        start = time.perf_counter()
        agent.train_iteration(1.0)
        update_seconds.append(time.perf_counter() - start - rollout_seconds[-1])
    collect_s, update_s = float(np.median(rollout_seconds)), float(np.median(update_seconds))
    updates = c.n_epochs * max(1, round(c.n_steps * c.n_envs / c.batch_size)) if algo == "ppo" else 1
    obs = agent.observation_space.sample()
    agent.predict(obs)
    start = time.perf_counter()
    for _ in range(2000):
        agent.predict(obs)
    predict_s = (time.perf_counter() - start) / 2000
    agent.close()
    return {
        "wall_s": 1.0,
        "steps_done": 0,
        "collect_us_per_step": collect_s / (c.n_steps * c.n_envs) * 1e6,
        "update_ms_per_minibatch": update_s / updates * 1e3,
        "predict_us": predict_s * 1e6,
        "load1_before": os.getloadavg()[0],
        "pgrad_file": pgrad.__file__,
    }


def _run_sb3(algo: str, env_id: str, steps: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    # Monitor records episode returns, as pgrad's collector does; it costs next to nothing.
    env = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    cls = {"ppo": stable_baselines3.PPO, "a2c": stable_baselines3.A2C}[algo]
    model = cls(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        **SB3_KWARGS[algo],
    )
    result = _timed(lambda: model.learn(total_timesteps=steps), None)
    returns = [info["r"] for info in model.ep_info_buffer]
    result.update(
        steps_done=int(model.num_timesteps),
        recent_return=statistics.fmean(returns) if returns else None,
        torch_threads=torch.get_num_threads(),
    )
    env.close()
    return result


def _run_raw(env_id: str, steps: int, seed: int) -> dict:
    import gymnasium as gym

    import pgrad.envs  # noqa: F401  the same MuJoCo warning filter pgrad's runs get

    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(min(steps, 10_000))]

    def stepping() -> None:
        env.reset(seed=seed)
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            if terminated or truncated:
                env.reset()

    result = _timed(stepping, None)
    result.update(steps_done=steps)
    env.close()
    return result


def _timed(work, profiler: str | None) -> dict:
    """Run ``work()`` under the wall clock and the process CPU clock (and a profiler if asked)."""
    load_before = os.getloadavg()[0]
    extra: dict = {}
    if profiler == "cprofile":
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    elif profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.001)
        prof.start()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler == "cprofile":
        import pstats

        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    elif profiler == "pyinstrument":
        prof.stop()
        print(prof.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
    return {"wall_s": wall, "cpu_s": cpu, "load1_before": load_before, "load1_after": os.getloadavg()[0], **extra}


def _finite_or_none(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


# -- the driver ---------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "gymnasium", "mujoco", "numpy", "stable_baselines3"):
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _export(commit: str) -> tuple[tempfile.TemporaryDirectory, Path]:
    """``git archive COMMIT pgrad`` into a temporary directory, to be put first on PYTHONPATH."""
    folder = tempfile.TemporaryDirectory(prefix="pgrad_speed_src_")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "pgrad"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", folder.name], input=archive.stdout, check=True)
    return folder, Path(folder.name)


def _spawn(impl: str, case: str, args: argparse.Namespace, snapshot: Path | None, profiler: str | None = None) -> dict:
    """One run in a fresh process. ``base`` is pgrad from the ``--baseline`` snapshot."""
    worker = "parts" if args.parts else "pgrad" if impl == "base" else impl
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        worker,
        "--cases",
        case,
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        *sum((["--set", kv] for kv in args.set), []),
    ]
    if profiler:
        command += ["--profile", profiler]
    env = dict(os.environ)
    if snapshot is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(snapshot), env.get("PYTHONPATH")]))
    # A scratch working directory: MuJoCo appends its warnings to ./MUJOCO_LOG.TXT.
    with tempfile.TemporaryDirectory(prefix="pgrad_speed_") as scratch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, env=env)
    if done.returncode != 0:
        sys.exit(f"{impl} {case} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    if profiler:
        print(done.stderr, file=sys.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(impl=impl, case=case, steps_per_s=result["steps_done"] / result["wall_s"])
    if snapshot is not None and worker in ("pgrad", "parts") and not result["pgrad_file"].startswith(str(snapshot)):
        sys.exit(f"--commit: the worker imported {result['pgrad_file']}, not the exported snapshot in {snapshot}")
    return result


def _parse_set(items: list[str]) -> dict:
    from pgrad.config import parse_set_args

    return parse_set_args(items)


def _summarise(runs: list[dict], impls: list[str]) -> dict:
    summary: dict = {}
    for impl in impls:
        mine = [r for r in runs if r["impl"] == impl]
        if mine:
            summary[impl] = {
                "median_steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                "all_steps_per_s": [round(r["steps_per_s"]) for r in mine],
                "recent_returns": [
                    None if r.get("recent_return") is None else round(r["recent_return"], 1) for r in mine
                ],
            }
    raw = summary.get("raw", {}).get("median_steps_per_s")
    for impl in ("pgrad", "sb3"):
        if impl in summary and raw:
            summary[impl]["overhead_factor"] = raw / summary[impl]["median_steps_per_s"]
    if "pgrad" in summary and "sb3" in summary:
        summary["pgrad_over_sb3"] = summary["pgrad"]["median_steps_per_s"] / summary["sb3"]["median_steps_per_s"]
    if "pgrad" in summary and "base" in summary:
        summary["pgrad_over_base"] = summary["pgrad"]["median_steps_per_s"] / summary["base"]["median_steps_per_s"]
    return summary


def _print_parts(args, session, impls, snapshot, base_snapshot) -> None:
    keys = ("collect_us_per_step", "update_ms_per_minibatch", "predict_us")
    print("| case | impl | rollout us/step | update ms/minibatch (PPO) or per update (A2C) | predict us | load1 |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        runs = []
        for repeat in range(args.repeats):
            for impl in impls if repeat % 2 == 0 else impls[::-1]:
                runs.append(_spawn(impl, case, args, base_snapshot if impl == "base" else snapshot))
        for impl in impls:
            mine = [r for r in runs if r["impl"] == impl]
            medians = [statistics.median(r[k] for r in mine) for k in keys]
            loads = [r["load1_before"] for r in mine]
            name = f"base ({session['baseline_commit']})" if impl == "base" else f"pgrad ({session['pgrad_commit']})"
            print(
                f"| {case} | {name} | {medians[0]:.0f} | {medians[1]:.3f} | {medians[2]:.0f} | "
                f"{min(loads):.1f}-{max(loads):.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="ALGO:ENV pairs (algos: ppo, a2c)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument(
        "--steps", type=int, default=40_960, help="env steps per run (20 PPO rollouts of 2048 by default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="pgrad-only override (repeatable)"
    )
    parser.add_argument("--no-sb3", action="store_true", help="skip SB3 even if it is importable")
    parser.add_argument("--json", metavar="PATH", help="also write every run and the summary to this JSON file")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile one pgrad run per case (after an unprofiled one) instead of benchmarking",
    )
    parser.add_argument("--commit", help="benchmark this commit (git archive) instead of the working tree")
    parser.add_argument(
        "--baseline", metavar="REV", help="also run pgrad at this commit ('base'), alternating with the rest"
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="time pgrad's parts (rollout per step, update per minibatch, predict) instead of whole runs",
    )
    parser.add_argument("--worker", choices=("pgrad", "sb3", "raw", "parts"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    for case in args.cases:
        algo, _, env_id = case.partition(":")
        if algo not in PGRAD_KWARGS or not env_id:
            parser.error(f"case {case!r}: expected ALGO:ENV with ALGO one of {', '.join(PGRAD_KWARGS)}")

    if args.worker:
        algo, _, env_id = args.cases[0].partition(":")
        if args.worker == "pgrad":
            result = _run_pgrad(algo, env_id, args.steps, args.seed, _parse_set(args.set), args.profile)
        elif args.worker == "parts":
            result = _run_parts(algo, env_id, args.seed, _parse_set(args.set))
        elif args.worker == "sb3":
            result = _run_sb3(algo, env_id, args.steps, args.seed)
        else:
            result = _run_raw(env_id, args.steps, args.seed)
        print(json.dumps(result))
        return

    snapshot_dir, snapshot = None, None
    if args.commit:
        commit = _git("rev-parse", "--short", args.commit)
        if not commit:
            sys.exit(f"--commit {args.commit}: not a commit of {REPO}")
        snapshot_dir, snapshot = _export(commit)
    else:
        commit = _git("rev-parse", "--short", "HEAD")
    uncommitted = [] if snapshot else _git("status", "--porcelain", "--", "pgrad").splitlines()
    session = {
        "command": " ".join(["python", "benchmarks/speed.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "pgrad_commit": commit + (" + uncommitted changes" if uncommitted else ""),
        "versions": _versions(),
        "cpus": os.cpu_count(),
        "steps": args.steps,
        "pgrad_overrides": args.set,
    }

    if args.profile:
        for case in args.cases:
            plain = _spawn("pgrad", case, args, snapshot)
            profiled = _spawn("pgrad", case, args, snapshot, profiler=args.profile)
            print(
                f"{case}: unprofiled {plain['steps_per_s']:.0f} steps/s ({plain['wall_s']:.2f} s); "
                f"profiled ({args.profile}) {profiled['steps_per_s']:.0f} steps/s ({profiled['wall_s']:.2f} s)"
            )
        return

    impls = ["pgrad", "raw"]
    if args.parts:
        impls = ["pgrad"]
    elif not args.no_sb3 and importlib.util.find_spec("stable_baselines3") is not None:
        impls.insert(1, "sb3")
    base_dir, base_snapshot = None, None
    if args.baseline:
        session["baseline_commit"] = _git("rev-parse", "--short", args.baseline)
        if not session["baseline_commit"]:
            sys.exit(f"--baseline {args.baseline}: not a commit of {REPO}")
        base_dir, base_snapshot = _export(session["baseline_commit"])
        impls.insert(1, "base")
    results: dict = {}
    if args.parts:
        _print_parts(args, session, impls, snapshot, base_snapshot)
        return
    for case in args.cases:
        runs: list[dict] = []
        for repeat in range(args.repeats):
            order = impls if repeat % 2 == 0 else impls[::-1]
            for impl in order:
                run = _spawn(impl, case, args, base_snapshot if impl == "base" else snapshot)
                run["repeat"] = repeat
                runs.append(run)
                print(
                    f"{case:<22} repeat {repeat} {impl:<5} {run['steps_per_s']:8.0f} steps/s  wall "
                    f"{run['wall_s']:6.2f} s  "
                    f"load1 {run['load1_before']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
        results[case] = {"runs": runs, "summary": _summarise(runs, impls)}

    print(
        f"\npgrad {session['pgrad_commit']}, {args.steps:,} steps per run, medians of {args.repeats} alternating "
        f"repeats, {session['date']}"
    )
    v = session["versions"]
    print(
        f"torch {v['torch']}, gymnasium {v['gymnasium']}, mujoco {v['mujoco']}, numpy {v['numpy']}, "
        f"SB3 {v['stable_baselines3']}, python {v['python']}, {session['cpus']} cpus"
    )
    if args.baseline:
        print(f"baseline ('base'): pgrad at {session['baseline_commit']}")
        for case, result in results.items():
            s = result["summary"]
            print(
                f"  {case}: pgrad {s['pgrad']['median_steps_per_s']:,.0f} steps/s, base "
                f"{s['base']['median_steps_per_s']:,.0f}"
                f" steps/s, pgrad / base {s['pgrad_over_base']:.2f}"
            )
    print(
        "| case | pgrad steps/s | SB3 steps/s | pgrad / SB3 | raw env steps/s | overhead pgrad | overhead SB3 | load1 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case, result in results.items():
        s, runs = result["summary"], result["runs"]
        loads = [r["load1_before"] for r in runs]
        sb3 = s.get("sb3", {})
        print(
            f"| {case} | {s['pgrad']['median_steps_per_s']:,.0f} | {sb3['median_steps_per_s']:,.0f} | "
            if sb3
            else f"| {case} | {s['pgrad']['median_steps_per_s']:,.0f} | - | ",
            end="",
        )
        print(f"{s['pgrad_over_sb3']:.2f} | " if "pgrad_over_sb3" in s else "- | ", end="")
        print(
            f"{s['raw']['median_steps_per_s']:,.0f} | {s['pgrad']['overhead_factor']:.1f} | "
            + (f"{sb3['overhead_factor']:.1f} | " if sb3 else "- | ")
            + f"{min(loads):.1f}-{max(loads):.1f} |"
        )
    print("\nper run (steps/s) and mean return of recent training episodes:")
    for case, result in results.items():
        for impl in impls:
            s = result["summary"][impl]
            returns = f"  returns {s['recent_returns']}" if impl != "raw" else ""
            print(f"  {case:<22} {impl:<5} {s['all_steps_per_s']}{returns}")
    if args.json:
        Path(args.json).write_text(json.dumps({**session, "results": results}, indent=2))


if __name__ == "__main__":
    main()
