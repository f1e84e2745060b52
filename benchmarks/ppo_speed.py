"""Training speed of pgrad PPO next to Stable-Baselines3 PPO on HalfCheetah-v5.

Both sides use the PPO paper's MuJoCo settings (Schulman et al. 2017, Table 3): one env,
horizon 2048, 10 epochs, minibatch 64, Adam 3e-4, gamma 0.99, lambda 0.95, clip 0.2, separate
2x64 tanh actor and critic, one torch thread, CPU. Every run is a fresh subprocess; the timer
covers the whole ``learn()`` call (env reset, rollouts, GAE, updates, logging), not the
construction of the agent or the imports. The machine may be busy with other work, so pgrad and
SB3 runs alternate (the side that goes first swaps every repeat) and the ratio is reported next
to the absolute numbers: both sides see the same background load.

    .venv/bin/python benchmarks/ppo_speed.py --repeats 3 --commit HEAD   # the table in BENCHMARKS.md
    .venv/bin/python benchmarks/ppo_speed.py --repeats 3 --json          # working tree, as JSON
    .venv/bin/python benchmarks/ppo_speed.py --profile pyinstrument      # where one pgrad run's time goes
    .venv/bin/python benchmarks/ppo_speed.py --profile cprofile          # pstats, with call counts

``--commit REV`` benchmarks ``git archive REV pgrad`` instead of the working tree, so that edits
made while the benchmark runs cannot leak into some of its runs (the digest of the imported
sources is checked before and after every run and reported either way).

SB3 is never a pgrad dependency: it is used only if importable (install it into the venv for
benchmarking with ``pip install stable-baselines3``, checking that torch is left alone). Known
differences in work done, not in settings: pgrad normalises observations by default (a running
mean/std update per step) and anneals the learning rate; SB3 with these settings does neither.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
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

ENV_ID = "HalfCheetah-v5"
REPO = Path(__file__).resolve().parents[1]

# The PPO paper's settings (Table 3), spelled once for each library.
PGRAD_KWARGS = dict(
    preset=None, n_envs=1, n_steps=2048, batch_size=64, n_epochs=10, lr=3e-4,
    hidden_sizes=(64, 64), activation="tanh",
)
SB3_KWARGS = dict(
    n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95,
    clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, device="cpu", verbose=0,
)


# -- one timed run, in its own process ---------------------------------------------------------

def _run_pgrad(steps: int, seed: int, profiler: str | None, profile_out: str | None) -> dict:
    import torch

    torch.set_num_threads(1)
    import pgrad

    agent = pgrad.PPO(ENV_ID, seed=seed, **PGRAD_KWARGS)
    result = _timed(lambda: agent.learn(steps, quiet=True), profiler, profile_out)
    result.update(steps_done=agent.total_steps, updates=agent.updates, torch_threads=torch.get_num_threads(),
                  recent_return=_finite_or_none(agent.logger.recent_return), pgrad_file=pgrad.__file__)
    agent.close()
    return result


def _run_sb3(steps: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    # Monitor records episode returns, as pgrad's collector does; it costs next to nothing.
    env = DummyVecEnv([lambda: Monitor(gym.make(ENV_ID))])
    model = PPO(
        "MlpPolicy", env, seed=seed,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh),
        **SB3_KWARGS,
    )
    result = _timed(lambda: model.learn(total_timesteps=steps), None, None)
    returns = [info["r"] for info in model.ep_info_buffer]
    result.update(steps_done=int(model.num_timesteps), torch_threads=torch.get_num_threads(),
                  recent_return=statistics.fmean(returns) if returns else None)
    env.close()
    return result


def _timed(learn, profiler: str | None, profile_out: str | None) -> dict:
    """Run ``learn()`` under the wall clock and the process CPU clock (and a profiler if asked)."""
    load_before = os.getloadavg()[0]
    extra: dict = {}
    if profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.001)
        prof.start()
    elif profiler == "cprofile":
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    wall, cpu = time.perf_counter(), time.process_time()
    learn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler == "pyinstrument":
        session = prof.stop()
        extra["profile"] = _pyinstrument_breakdown(session.root_frame(trim_stem=False))
        if profile_out:
            Path(profile_out).write_text(prof.output_text(unicode=False, color=False, show_all=False))
    elif profiler == "cprofile":
        import pstats

        prof.disable()
        out = profile_out or str(Path(tempfile.gettempdir()) / "ppo_speed.prof")
        prof.dump_stats(out)
        pstats.Stats(out, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        extra["profile_file"] = out
    return {"wall_s": wall, "cpu_s": cpu, "load1_before": load_before, "load1_after": os.getloadavg()[0], **extra}


def _finite_or_none(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


# -- the profile breakdown ---------------------------------------------------------------------

def _match(path_suffix: str | None = None, function: str | None = None, path_contains: str | None = None,
           not_function: str | None = None):
    def predicate(frame) -> bool:
        path = (frame.file_path or "").replace("\\", "/")
        return ((path_suffix is None or path.endswith(path_suffix))
                and (path_contains is None or path_contains in path)
                and (function is None or frame.function == function)
                and (not_function is None or frame.function != not_function))
    return predicate


LEARN = _match("pgrad/algos/base.py", "learn")
ITERATION = _match("pgrad/algos/ppo.py", "train_iteration")
COLLECT = _match("pgrad/rollout.py", "collect")
ACT = _match("pgrad/policy.py", "act")
NORMALIZE = _match("pgrad/policy.py", "normalize")
GAE = _match("pgrad/returns.py", "gae")

# (label, predicate, must be under, must not be under). Time is summed over the top-most frames
# that match, so recursion and nested matches are never counted twice.
CATEGORIES = [
    ("learn() total", LEARN, None, None),
    ("  train_iteration", ITERATION, LEARN, None),
    ("    rollout.collect (2048 steps x 20)", COLLECT, ITERATION, None),
    ("      env.step (SyncVectorEnv, wrappers, MuJoCo)", _match("gymnasium/vector/sync_vector_env.py", "step"), COLLECT, None),
    ("        HalfCheetahEnv.step (physics + obs + reward)", _match("half_cheetah_v5.py", "step"), COLLECT, None),
    ("          mujoco_env._step_mujoco_simulation", _match("mujoco_env.py", "_step_mujoco_simulation"), COLLECT, None),
    ("      policy.act (actor+critic forward, sample, log_prob)", ACT, COLLECT, None),
    ("        policy.distribution (actor MLP + Normal)", _match("pgrad/policy.py", "distribution"), ACT, None),
    ("        policy.value (critic MLP)", _match("pgrad/policy.py", "value"), ACT, None),
    ("        Distribution.sample", _match(path_contains="torch/distributions/", function="sample"), ACT, None),
    ("        Distribution.log_prob", _match(path_contains="torch/distributions/", function="log_prob"), ACT, None),
    ("      policy.normalize (obs normaliser)", NORMALIZE, COLLECT, None),
    ("        RunningMeanStd.update (float64 stats)", _match("pgrad/normalize.py", "update"), NORMALIZE, None),
    ("        ObservationNormalizer.forward", _match("pgrad/normalize.py", "forward"), NORMALIZE, None),
    ("      policy.obs_to_tensor (numpy->torch)", _match("pgrad/policy.py", "obs_to_tensor"), COLLECT, None),
    ("      policy.env_action (torch->numpy, clip, rescale)", _match("pgrad/policy.py", "env_action"), COLLECT, None),
    ("      RolloutCollector._check_finite", _match("pgrad/rollout.py", "_check_finite"), COLLECT, None),
    ("    returns.gae", GAE, ITERATION, None),
    ("    update: policy.distribution (actor fwd)", _match("pgrad/policy.py", "distribution"), ITERATION, COLLECT),
    ("    update: Distribution.log_prob", _match(path_contains="torch/distributions/", function="log_prob"), ITERATION, COLLECT),
    ("    update: Distribution.entropy", _match(path_contains="torch/distributions/", function="entropy"), ITERATION, COLLECT),
    ("    update: policy.value (critic fwd)", _match("pgrad/policy.py", "value"), ITERATION, COLLECT),
    ("    update: losses (surrogate, value, .item())", _match("pgrad/losses.py", path_contains=None), ITERATION, COLLECT),
    ("    update: loss.backward", _match("torch/_tensor.py", "backward"), ITERATION, COLLECT),
    ("    update: clip_grad_norm_", _match(path_contains="torch/nn/utils/", function="clip_grad_norm_"), ITERATION, COLLECT),
    ("    update: optimizer.step (Adam)", _match(path_contains="torch/optim/", not_function="zero_grad"), ITERATION, COLLECT),
    ("    update: optimizer.zero_grad", _match(path_contains="torch/optim/", function="zero_grad"), ITERATION, COLLECT),
    ("    update: np.array_split (minibatch indices)", _match(path_contains="numpy/", function="array_split"), ITERATION, COLLECT),
    ("  Algorithm._check_finite_weights", _match("pgrad/algos/base.py", "_check_finite_weights"), LEARN, None),
]


def _pyinstrument_breakdown(root) -> dict[str, float]:
    totals = {label: 0.0 for label, *_ in CATEGORIES}

    def visit(frame, ancestors: list) -> None:
        for label, predicate, under, not_under in CATEGORIES:
            if (predicate(frame)
                    and (under is None or any(under(a) for a in ancestors))
                    and (not_under is None or not any(not_under(a) for a in ancestors))
                    and not any(predicate(a) for a in ancestors)):
                totals[label] += frame.time
        ancestors.append(frame)
        for child in frame.children:
            visit(child, ancestors)
        ancestors.pop()

    sys.setrecursionlimit(10_000)
    visit(root, [])
    return totals


def _print_breakdown(profile: dict[str, float], steps: int, minibatches: int, iterations: int,
                     unprofiled_wall: float | None, profiled_wall: float) -> None:
    total = profile["learn() total"]
    iteration = profile["  train_iteration"]
    collect = profile["    rollout.collect (2048 steps x 20)"]
    gae = profile["    returns.gae"]
    update = iteration - collect - gae
    rows = list(profile.items())
    # Derived rows: what the named pieces leave over.
    named_in_collect = sum(v for k, v in profile.items() if k.startswith("      ") and not k.startswith("       "))
    named_in_update = sum(v for k, v in profile.items() if k.startswith("    update:"))
    rows.insert(rows.index(("    returns.gae", gae)),
                ("      rest of collect (buffer writes, flags, bookkeeping)", collect - named_in_collect))
    rows.append(("    update total (train_iteration - collect - gae)", update))
    rows.append(("    update: rest (indexing, adv norm, metrics, .item())", update - named_in_update))
    print(f"\nwhere one pgrad run's learn() time goes (pyinstrument, 1 ms sampling; "
          f"profiled wall {profiled_wall:.2f} s" + (f", same run unprofiled {unprofiled_wall:.2f} s" if unprofiled_wall else "")
          + ")")
    print("(rows under rollout.collect are reliable: Python events are dense there. The 'update:' rows are\n"
          " not: a sampling profiler hands long C++ calls such as backward time that belongs to the many short\n"
          " ops before them, so trust only 'update total' and time the pieces of a minibatch separately.)")
    print(f"{'part':<62} {'s':>7} {'%':>6}  per call")
    for label, seconds in rows:
        if label.lstrip().startswith("update"):
            per = f"{seconds / minibatches * 1e6:7.1f} us/minibatch"
        elif "gae" in label:
            per = f"{seconds / iterations * 1e3:7.2f} ms/rollout"
        elif label.startswith("      ") or "collect" in label:
            per = f"{seconds / steps * 1e6:7.1f} us/step"
        else:
            per = ""
        print(f"{label:<62} {seconds:7.2f} {100 * seconds / total:5.1f}%  {per}")


# -- the driver ---------------------------------------------------------------------------------

def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "gymnasium", "mujoco", "numpy", "stable_baselines3", "pgrad"):
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# Set by --commit: a directory holding ``git archive <commit> pgrad``, imported instead of the
# working tree, so that edits made to the repo while the benchmark runs cannot leak into it.
_SNAPSHOT: Path | None = None


def _source_digest() -> str:
    """Digest of the pgrad sources the workers import, to show they did not change during the session."""
    root = _SNAPSHOT or REPO
    digest = hashlib.sha256()
    for path in sorted((root / "pgrad").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _export_snapshot(commit: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "pgrad"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def _spawn(impl: str, args: argparse.Namespace, profiler: str | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--steps", str(args.steps),
               "--seed", str(args.seed)]
    if profiler:
        command += ["--profile", profiler]
        if args.profile_out:
            command += ["--profile-out", str(Path(args.profile_out).resolve())]
    env = dict(os.environ)
    if _SNAPSHOT is not None and impl == "pgrad":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SNAPSHOT), env.get("PYTHONPATH")]))
    digest_before = _source_digest()
    # A scratch working directory: MuJoCo appends its warnings to ./MUJOCO_LOG.TXT (SB3 does not
    # filter the harmless settotalmass one as pgrad does), and that file must not land in the repo.
    with tempfile.TemporaryDirectory(prefix="ppo_speed_") as scratch:
        done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, env=env)
    if done.returncode != 0:
        sys.exit(f"{impl} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    if profiler == "cprofile":
        print(done.stderr, file=sys.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["impl"] = impl
    result["steps_per_s"] = result["steps_done"] / result["wall_s"]
    result["steps_per_cpu_s"] = result["steps_done"] / result["cpu_s"]
    result["pgrad_source_changed_during_run"] = _source_digest() != digest_before
    if _SNAPSHOT is not None and impl == "pgrad" and not result["pgrad_file"].startswith(str(_SNAPSHOT)):
        sys.exit(f"--commit: the worker imported {result['pgrad_file']}, not the exported snapshot in {_SNAPSHOT}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pgrad/SB3 pairs; medians are reported")
    parser.add_argument("--steps", type=int, default=40_960, help="env steps per run (20 rollouts of 2048 by default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--no-sb3", action="store_true", help="skip SB3 even if it is importable")
    parser.add_argument("--profile", choices=("pyinstrument", "cprofile"),
                        help="profile one pgrad run (after one unprofiled run for comparison) instead of benchmarking")
    parser.add_argument("--profile-out", help="pyinstrument: text call tree; cprofile: pstats file")
    parser.add_argument("--commit", help="benchmark this commit (exported with git archive) instead of the working "
                        "tree; use it when the repo may change while the benchmark runs")
    parser.add_argument("--worker", choices=("pgrad", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "pgrad":
            result = _run_pgrad(args.steps, args.seed, args.profile, args.profile_out)
        else:
            result = _run_sb3(args.steps, args.seed)
        print(json.dumps(result))
        return

    global _SNAPSHOT
    if args.commit:
        snapshot_dir = tempfile.TemporaryDirectory(prefix="ppo_speed_pgrad_")
        _SNAPSHOT = Path(snapshot_dir.name)
        commit = _git("rev-parse", "--short", args.commit).strip()
        if not commit:
            sys.exit(f"--commit {args.commit}: not a commit of {REPO}")
        _export_snapshot(commit, _SNAPSHOT)
    else:
        commit = _git("rev-parse", "--short", "HEAD").strip()
    session = {
        "benchmark": f"PPO speed, {ENV_ID}, {args.steps} steps, PPO-paper settings",
        "command": " ".join([Path(sys.executable).relative_to(REPO).as_posix() if sys.executable.startswith(str(REPO)) else sys.executable,
                             Path(__file__).resolve().relative_to(REPO).as_posix(), *sys.argv[1:]]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "pgrad_commit": commit,
        "pgrad_source": f"git archive {commit}" if _SNAPSHOT else "working tree",
        "pgrad_uncommitted_changes": [] if _SNAPSHOT else _git("status", "--porcelain", "--", "pgrad").splitlines(),
        "pgrad_source_digest": _source_digest(),
        "versions": _versions(),
        "cpus": os.cpu_count(),
    }

    if args.profile:
        iterations = args.steps // PGRAD_KWARGS["n_steps"]
        minibatches = iterations * PGRAD_KWARGS["n_epochs"] * -(-PGRAD_KWARGS["n_steps"] // PGRAD_KWARGS["batch_size"])
        plain = _spawn("pgrad", args)
        profiled = _spawn("pgrad", args, profiler=args.profile)
        session.update(unprofiled=plain, profiled=profiled)
        if args.json:
            print(json.dumps(session, indent=2))
            return
        print(f"{session['benchmark']}; commit {session['pgrad_commit']}"
              f"{' + uncommitted changes' if session['pgrad_uncommitted_changes'] else ''}")
        print(f"unprofiled: {plain['steps_per_s']:.0f} steps/s ({plain['wall_s']:.2f} s); "
              f"profiled ({args.profile}): {profiled['steps_per_s']:.0f} steps/s ({profiled['wall_s']:.2f} s)")
        if "profile" in profiled:
            _print_breakdown(profiled["profile"], profiled["steps_done"], minibatches, iterations,
                             plain["wall_s"], profiled["wall_s"])
        return

    with_sb3 = not args.no_sb3 and importlib.util.find_spec("stable_baselines3") is not None
    runs: list[dict] = []
    for repeat in range(args.repeats):
        order = ["pgrad", "sb3"] if repeat % 2 == 0 else ["sb3", "pgrad"]
        for impl in order:
            if impl == "sb3" and not with_sb3:
                continue
            result = _spawn(impl, args)
            result["repeat"] = repeat
            runs.append(result)
            if not args.json:
                print(f"repeat {repeat} {impl:<5} {result['steps_per_s']:7.0f} steps/s  wall {result['wall_s']:6.2f} s  "
                      f"cpu {result['cpu_s']:6.2f} s  load1 {result['load1_before']:.2f}  "
                      f"steps {result['steps_done']}", file=sys.stderr, flush=True)

    summary: dict = {}
    for impl in ("pgrad", "sb3"):
        mine = [r for r in runs if r["impl"] == impl]
        if mine:
            summary[impl] = {
                "median_steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                "median_steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in mine),
                "all_steps_per_s": [round(r["steps_per_s"], 1) for r in mine],
            }
    if "sb3" in summary:
        pairs = [(next(r for r in runs if r["impl"] == "pgrad" and r["repeat"] == i),
                  next(r for r in runs if r["impl"] == "sb3" and r["repeat"] == i)) for i in range(args.repeats)]
        summary["ratio_of_medians"] = summary["pgrad"]["median_steps_per_s"] / summary["sb3"]["median_steps_per_s"]
        summary["median_of_pair_ratios"] = statistics.median(p["steps_per_s"] / s["steps_per_s"] for p, s in pairs)
        summary["ratio_of_median_cpu_rates"] = (summary["pgrad"]["median_steps_per_cpu_s"]
                                                / summary["sb3"]["median_steps_per_cpu_s"])
    session["source_changed_during_session"] = _source_digest() != session["pgrad_source_digest"] or any(
        r["pgrad_source_changed_during_run"] for r in runs)
    session.update(runs=runs, summary=summary)

    if args.json:
        print(json.dumps(session, indent=2))
        return
    print(f"\n{session['benchmark']}  ({args.repeats} repeat{'s' if args.repeats != 1 else ''}, median)")
    print(f"  pgrad: {summary['pgrad']['median_steps_per_s']:7.0f} steps/s   (per CPU second: "
          f"{summary['pgrad']['median_steps_per_cpu_s']:.0f})   runs {summary['pgrad']['all_steps_per_s']}")
    if "sb3" in summary:
        print(f"  SB3:   {summary['sb3']['median_steps_per_s']:7.0f} steps/s   (per CPU second: "
              f"{summary['sb3']['median_steps_per_cpu_s']:.0f})   runs {summary['sb3']['all_steps_per_s']}")
        print(f"  pgrad/SB3: {summary['ratio_of_medians']:.2f} (ratio of medians), "
              f"{summary['median_of_pair_ratios']:.2f} (median of per-repeat ratios), "
              f"{summary['ratio_of_median_cpu_rates']:.2f} (CPU-time rates)")
    else:
        print("  SB3: skipped (--no-sb3)" if args.no_sb3 else "  SB3: not importable, skipped")
    v = session["versions"]
    print(f"  pgrad from {'an exported snapshot (git archive) of' if _SNAPSHOT else 'the working tree at'} commit {session['pgrad_commit']}"
          f"{' + uncommitted changes in ' + ', '.join(l[3:] for l in session['pgrad_uncommitted_changes']) if session['pgrad_uncommitted_changes'] else ''}"
          f"; pgrad sources changed during session: {session['source_changed_during_session']}")
    print(f"  torch {v['torch']}, gymnasium {v['gymnasium']}, mujoco {v['mujoco']}, numpy {v['numpy']}, "
          f"SB3 {v['stable_baselines3']}, python {v['python']}; {session['date']}")
    print(f"  command: {session['command']}")


if __name__ == "__main__":
    main()
