"""The ``pgrad`` command line: train, eval, plot, list.

Exit status: 0 on success, 2 on bad usage or bad input (before any work starts where possible),
1 on a failure during training (one line on stderr; the last good checkpoint is kept).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and a one-line message for usage errors (its default too)."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def one_line(message: str) -> str:
    """``message`` on one line: a newline or carriage return a user typed (in a path, say) shown escaped."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _fail(message: str, status: int) -> int:
    print(f"pgrad: error: {one_line(message)}", file=sys.stderr)
    return status


# the largest training seed: numpy and torch take seeds of up to 64 bits
MAX_SEED = 2**63 - 1
# the largest moving-average window: more episodes than any run has
MAX_SMOOTH = 10**9
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _default_out(algo: str, env_id: str, seed: int) -> Path:
    safe_env = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id)
    return Path("runs") / f"{algo}-{safe_env}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- train -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    # ARS parallelises the rollouts of one run: for a single seed, --workers and --backend go to
    # its config; for several seeds they distribute the seeds, as for every algorithm.
    from pgrad.algos import ALGORITHMS
    from pgrad.config import parse_set_args
    from pgrad.envs.options import parse_env_kwargs, parse_wrappers
    from pgrad.errors import ConfigError, TrainingError
    from pgrad.experiments.run_folder import never_checkpointed
    from pgrad.experiments.runner import (
        TrainSpec,
        build_agent,
        callbacks_of,
        check_seed_resumes,
        import_ray,
        prepare_resume,
        resolve_steps,
    )
    from pgrad.startup import skip_optimizer_dynamo_import

    skip_optimizer_dynamo_import()  # ~1.2 s of start-up (pgrad.startup)
    runs_workers = args.algo in ALGORITHMS and "n_workers" in ALGORITHMS[args.algo].Config.keys()
    for flag, value in (
        ("--workers", args.workers),
        ("--checkpoint-every", args.checkpoint_every),
        ("--eval-every", args.eval_every),
        ("--patience", args.patience),
        ("--periodic-eval-episodes", args.periodic_eval_episodes),
    ):
        if value is not None and value < 1:
            return _fail(f"{flag} {value} must be at least 1", EXIT_USAGE)
    if args.min_delta < 0:
        return _fail(f"--min-delta {args.min_delta} must be >= 0", EXIT_USAGE)
    if args.resume is not None and args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        return _fail("--resume RUN continues RUN in place; drop --out or give the same folder", EXIT_USAGE)
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds else [args.seed]
    start_over = False  # --resume of a run killed before its first checkpoint
    if any(seed < 0 or seed > MAX_SEED for seed in seeds):
        return _fail(f"seeds must be ints from 0 to 2**63-1, got {seeds}", EXIT_USAGE)
    try:
        if args.backend == "ray":
            import_ray()
        overrides = parse_set_args(args.set or [])
        if runs_workers and len(seeds) == 1:
            overrides.setdefault("backend", args.backend)
            if args.workers is not None:
                overrides.setdefault("n_workers", str(args.workers))
        elif runs_workers:
            # --workers counts seed processes here; each seed rolls out in its own process.
            overrides.setdefault("n_workers", "0")
        spec = TrainSpec(
            algo=args.algo,
            env=args.env,
            seed=seeds[0],
            out=args.resume or "",
            steps=args.steps,
            preset=args.preset if args.preset is not None else "auto",
            overrides=overrides,
            eval_episodes=args.eval_episodes,
            quiet=args.quiet,
            checkpoint_every=args.checkpoint_every,
            eval_every=args.eval_every,
            patience=args.patience,
            min_delta=args.min_delta,
            periodic_eval_episodes=args.periodic_eval_episodes or 5,
            resume=args.resume is not None,
            allow_changes=args.allow_changes,
            init=args.init,
            env_kwargs=parse_env_kwargs(args.env_kwarg or []),
            wrappers=tuple(args.wrapper or []),
            stop_at_return=args.stop_at_return,
            track=args.track,
        )
        parse_wrappers(spec.wrappers)  # a malformed --wrapper is an error before anything is built
        callbacks_of(spec)  # --patience without --eval-every, before anything is built
        # Build the first seed's agent here: every input error surfaces before any work starts.
        agent = build_agent(spec)
        steps = resolve_steps(spec, agent)
        spec = replace(spec, steps=steps)
        if args.batched:
            from pgrad.experiments.seed_batched import check_batched_spec

            check_batched_spec(spec, seeds, agent.config, agent.policy)
        elif args.batched is None:  # not asked either way: batch wherever it trains the seeds exactly as alone
            from pgrad.experiments.seed_batched import batched_by_default

            args.batched = args.backend == "local" and batched_by_default(
                spec, seeds, agent.config, args.workers, agent.policy
            )
        if spec.resume and len(seeds) == 1 and never_checkpointed(Path(spec.out)):
            # killed before its first checkpoint: nothing to continue, so the run starts over
            print(f"pgrad: note: {spec.out} has no checkpoint yet; starting the run over", file=sys.stderr)
            spec, start_over = replace(spec, resume=False), True
        elif spec.resume and len(seeds) == 1:
            if args.seeds is None and any(Path(spec.out).glob("seed_*/checkpoint/state.json")):
                raise ConfigError(f"--resume {spec.out} is a multi-seed run; resume it with its --seeds")
            prepare_resume(spec, agent, steps)
        elif spec.resume:
            agent.close()
            check_seed_resumes(spec, seeds)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TrainingError as exc:  # the env failed while the agent was being built
        return _fail(f"training failed: {exc}", EXIT_FAILURE)
    out = Path(args.resume or args.out or _default_out(agent.name, agent.env_id, seeds[0]))
    spec = replace(spec, out=str(out))
    from pgrad.experiments.run_folder import RunFolderLock, check_new_run_folder, remove_stale_temp_files

    lock = RunFolderLock(out)
    try:
        lock.acquire()  # first: --overwrite must not clear a folder another run is writing
        if not spec.resume:
            check_new_run_folder(out, overwrite=args.overwrite or start_over)
        remove_stale_temp_files(out)  # half-written files of a killed run (the complete ones are kept)
    except ConfigError as exc:
        lock.release()
        agent.close()
        return _fail(str(exc), EXIT_USAGE)
    try:
        return _train_in_folder(args, spec, agent, seeds, steps, out, runs_workers)
    finally:
        lock.release()


def _train_in_folder(
    args: argparse.Namespace, spec: Any, agent: Any, seeds: list[int], steps: int, out: Path, runs_workers: bool
) -> int:
    """The rest of ``pgrad train``, once the run folder is ours (checked and locked)."""
    from pgrad.errors import ConfigError, Interrupted, TrainingError
    from pgrad.experiments.runner import run_seeds, run_training

    if not args.quiet:
        preset = f" (preset {agent.preset})" if agent.preset else ""
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {' '.join(map(str, seeds))}"
        seed_text += " as seed-batched models" if args.batched else ""
        verb = "resuming" if spec.resume else "training"
        seed_text += f", starting from {spec.init}" if spec.init and not spec.resume else ""
        print(
            f"{verb} {agent.name} on {agent.env_id}{preset} for {steps:,} steps, {seed_text} -> {out}", file=sys.stderr
        )
        problem = agent.fast_path_problem()
        if problem is not None:
            print(
                f"pgrad: note: the numpy fast path does not cover {problem}; training runs on torch throughout "
                "(same maths, slower)",
                file=sys.stderr,
            )

    if args.batched:
        agent.close()
        from pgrad.experiments.seed_batched import run_seeds_batched

        try:
            summary, errors = run_seeds_batched(spec, seeds, args.workers, backend=args.backend)
        except KeyboardInterrupt:
            return _fail(f"interrupted; checkpoints are in {out}/seed_*/checkpoint (resume with --resume {out})", 130)
        except ConfigError as exc:
            return _fail(str(exc), EXIT_USAGE)
    if len(seeds) > 1:
        agent.close()
        try:
            if not args.batched:
                summary, errors = run_seeds(spec, seeds, args.workers, backend=args.backend)
        except KeyboardInterrupt:
            return _fail(f"interrupted; checkpoints are in {out}/seed_*/checkpoint (resume with --resume {out})", 130)
        except ConfigError as exc:
            return _fail(str(exc), EXIT_USAGE)
        if summary.get("interrupted_seeds"):
            return _fail(
                f"interrupted; seeds {summary['interrupted_seeds']} wrote checkpoints, finished seeds are kept; "
                f"continue with the same command and --resume {out}",
                128 + signal.SIGTERM,
            )
        if errors:
            return _fail(
                f"training failed for {len(errors)} of {len(seeds)} seeds: " + " | ".join(errors), EXIT_FAILURE
            )
        if not args.quiet:
            stats = summary["eval_mean_return"]
            if stats["n"]:
                print(
                    f"done: {len(seeds)} seeds; evaluation mean {stats['mean']:.1f}, IQM {stats['iqm']:.1f}, "
                    f"min {stats['min']:.1f}, max {stats['max']:.1f}",
                    file=sys.stderr,
                )
        return EXIT_OK
    if args.backend == "ray" and not runs_workers:
        print("pgrad: note: --backend ray distributes seeds; a single seed trains here", file=sys.stderr)
    if spec.resume:
        from pgrad.experiments.resume import run_is_complete

        if run_is_complete(out):
            agent.close()
            print(f"{out} has already finished training; nothing to resume", file=sys.stderr)
            return EXIT_OK

    try:
        summary = run_training(spec, agent, resumed=spec.resume)
    except TrainingError as exc:
        return _fail(f"training failed: {exc}", EXIT_FAILURE)
    except Interrupted as exc:
        return _fail(f"{exc}; continue with the same command and --resume {out}", 128 + exc.signum)
    except KeyboardInterrupt:
        return _fail(f"interrupted; last good checkpoint kept in {out / 'checkpoint'}", 130)
    if not args.quiet:
        line = f"done: {summary['steps']:,} steps in {summary['wall_seconds']:.1f} s"
        if summary["eval_mean_return"] is not None:
            line += (
                f"; evaluation over {summary['eval_episodes']} episodes: "
                f"{summary['eval_mean_return']:.1f} +/- {summary['eval_std_return']:.1f}"
            )
        if summary.get("early_stopping", {}).get("stopped"):
            line += f"; {summary['early_stopping']['stopped']}"
        if summary.get("eval_cut_episodes"):
            from pgrad.evaluation import DEFAULT_MAX_EPISODE_STEPS

            line += (
                f" (the env has no time limit: {summary['eval_cut_episodes']} evaluation episodes were cut at "
                f"{DEFAULT_MAX_EPISODE_STEPS} steps)"
            )
        print(line, file=sys.stderr)
    return EXIT_OK


# -- eval ------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    import pgrad
    from pgrad.envs.options import parse_env_kwargs, parse_wrappers, with_options
    from pgrad.errors import ConfigError, TrainingError

    if args.seed < 0 or args.seed > MAX_SEED:
        return _fail(f"--seed {args.seed} must be an int from 0 to 2**63-1", EXIT_USAGE)
    if args.episodes < 1:
        return _fail(f"--episodes {args.episodes} must be at least 1", EXIT_USAGE)
    try:
        env_kwargs, wrappers = parse_env_kwargs(args.env_kwarg or []), parse_wrappers(args.wrapper or [])
        agent = pgrad.load(args.run, env_kwargs=env_kwargs, wrappers=wrappers)  # with the run's env options
        result = pgrad.evaluate(
            agent,
            with_options(args.env, env_kwargs, wrappers) if args.env else agent.env,
            episodes=args.episodes,
            deterministic=not args.stochastic,
            seed=args.seed,
            video_path=args.video,
        )
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TrainingError as exc:  # the env failed during the evaluation
        return _fail(f"evaluation failed: {exc}", EXIT_FAILURE)
    except OSError as exc:  # --video: a folder, or a path under a file
        return _fail(f"cannot write {exc.filename or args.video}: {exc.strerror or exc}", EXIT_USAGE)
    if args.video and not args.json:
        print(f"wrote {args.video}", file=sys.stderr)
    if result.get("cut_episodes"):
        print(
            f"pgrad: note: the env has no time limit; {result['cut_episodes']} of {result['episodes']} episodes were "
            f"cut at {result['max_steps_per_episode']} steps",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result))
    else:
        mode = "stochastic" if args.stochastic else "deterministic"
        print(
            f"{result['env']}: mean return {result['mean_return']:.2f} +/- {result['std_return']:.2f} "
            f"over {result['episodes']} {mode} episodes (mean length "
            f"{sum(result['lengths']) / len(result['lengths']):.1f})"
        )
    return EXIT_OK


# -- plot ------------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> int:
    from pgrad.errors import ConfigError
    from pgrad.plotting import plot_runs

    if not 1 <= args.smooth <= MAX_SMOOTH:
        return _fail(f"--smooth {args.smooth} must be a number of episodes from 1 to {MAX_SMOOTH:,}", EXIT_USAGE)
    out = (
        Path(args.out)
        if args.out
        else (Path(args.runs[0]) / "learning_curve.png" if len(args.runs) == 1 else Path("learning_curves.png"))
    )
    if out.suffix.lower() not in PLOT_SUFFIXES:
        return _fail(
            f"--out {out}: the figure's format comes from its suffix, one of {', '.join(PLOT_SUFFIXES)}", EXIT_USAGE
        )
    try:
        plot_runs([Path(r) for r in args.runs], out, smooth=args.smooth)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}", EXIT_USAGE)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


# -- report ----------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from pgrad.errors import ConfigError
    from pgrad.experiments.report import write_report

    if not 1 <= args.smooth <= MAX_SMOOTH:
        return _fail(f"--smooth {args.smooth} must be a number of episodes from 1 to {MAX_SMOOTH:,}", EXIT_USAGE)
    try:
        paths = write_report([Path(r) for r in args.runs], Path(args.out), smooth=args.smooth)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}", EXIT_USAGE)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return EXIT_OK


# -- export ----------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    import pgrad
    from pgrad.errors import ConfigError
    from pgrad.export import export_onnx

    try:
        agent = pgrad.load(args.run)
        path = export_onnx(agent, args.onnx)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # --onnx: a folder, or a path under a file
        return _fail(f"cannot write {exc.filename or args.onnx}: {exc.strerror or exc}", EXIT_USAGE)
    if getattr(agent, "recurrent", False):
        print(
            f"wrote {path} (inputs 'obs' (batch, *obs_shape), 'h', 'c' (layers, batch, hidden) float32 -> outputs "
            "'action', 'h_out', 'c_out', deterministic; zero h, c at episode starts)",
            file=sys.stderr,
        )
        return EXIT_OK
    print(f"wrote {path} (input 'obs' (batch, *obs_shape) float32 -> output 'action', deterministic)", file=sys.stderr)
    return EXIT_OK


# -- tune ------------------------------------------------------------------------------------


def cmd_tune(args: argparse.Namespace) -> int:
    import shlex

    from pgrad.config import parse_set_args, preset_steps
    from pgrad.envs.options import parse_env_kwargs, parse_wrappers
    from pgrad.errors import ConfigError
    from pgrad.experiments.runner import TrainSpec, build_agent, import_ray
    from pgrad.experiments.tune import TuneSpec, default_out, import_optuna, tune
    from pgrad.startup import skip_optimizer_dynamo_import

    skip_optimizer_dynamo_import()
    for flag, value in (
        ("--trials", args.trials),
        ("--evaluations", args.evaluations),
        ("--eval-episodes", args.eval_episodes),
        ("--workers", args.workers),
    ):
        if value is not None and value < 1:
            return _fail(f"{flag} {value} must be at least 1", EXIT_USAGE)
    try:
        import_optuna()
        if args.backend == "ray":
            import_ray()
        overrides = parse_set_args(args.set or [])
        preset = args.preset if args.preset is not None else "auto"
        env_kwargs, wrappers = parse_env_kwargs(args.env_kwarg or []), tuple(args.wrapper or [])
        parse_wrappers(wrappers)
        probe = TrainSpec(
            algo=args.algo,
            env=args.env,
            seed=args.seed,
            out="",
            steps=args.steps,
            preset=preset,
            overrides=overrides,
            env_kwargs=env_kwargs,
            wrappers=wrappers,
        )
        agent = build_agent(probe)  # the algorithm, env, preset and --set values are valid
        steps = args.steps if args.steps is not None else (preset_steps(agent.name, agent.preset) or 100_000)
        agent.close()
        if steps < args.evaluations:
            raise ConfigError(f"--steps {steps} is less than --evaluations {args.evaluations}")
        out = Path(args.out) if args.out else default_out(agent.name, agent.env_id)
        spec = TuneSpec(
            algo=args.algo,
            env=args.env,
            out=str(out),
            trials=args.trials,
            steps=steps,
            seed=args.seed,
            preset=preset,
            overrides=overrides,
            env_kwargs=env_kwargs,
            wrappers=wrappers,
            evaluations=args.evaluations,
            eval_episodes=args.eval_episodes,
            command="pgrad " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["tune"] else "",
        )
        log = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
        if not args.quiet:
            print(
                f"tuning {args.algo} on {args.env}: {args.trials} trials of {steps:,} steps -> {out}", file=sys.stderr
            )
        summary = tune(spec, backend=args.backend, workers=args.workers, log=log)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail(f"interrupted; run the same command again to continue the study in {out / 'study.db'}", 130)
    counts = summary["trials"]
    if summary["best"] is None:
        return _fail(
            f"no trial completed ({counts['pruned']} pruned, {counts['fail']} failed); see {out}", EXIT_FAILURE
        )
    best = summary["best"]
    print(
        f"best: trial {best['trial']}, evaluation return {best['value']:.2f} ({counts['complete']} complete, "
        f"{counts['pruned']} pruned, {counts['fail']} failed); wrote {best['preset']}",
        file=sys.stderr,
    )
    return EXIT_OK


# -- list ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from pgrad.algos import ALGORITHMS, algorithm_summary
    from pgrad.config import preset_names
    from pgrad.env_ids import REGISTERED_IDS

    if args.algo is not None:
        if args.algo not in ALGORITHMS:
            return _fail(f"unknown algorithm {args.algo!r}; available: {', '.join(ALGORITHMS)}", EXIT_USAGE)
        print(f"{args.algo} hyperparameters (--set KEY=VALUE):")
        for name, type_name, default, doc in ALGORITHMS[args.algo].Config.describe():
            print(f"  {name:<20} {type_name:<22} default {default!r:<12} {doc}")
        presets = preset_names(args.algo)
        print(
            f"presets (applied automatically for their env; --preset none to disable): {', '.join(presets) or 'none'}"
        )
        return EXIT_OK
    print("algorithms:")
    for name in ALGORITHMS:
        print(f"  {name:<20} {algorithm_summary(name)}")
    print("presets (applied automatically for their env; --preset none to disable):")
    for name in ALGORITHMS:
        for preset in preset_names(name):
            print(f"  {name:<20} {preset}")
    print("extra environments:")
    for env_id in REGISTERED_IDS:
        print(f"  {env_id}")
    print("hyperparameters of an algorithm: pgrad list ALGO")
    return EXIT_OK


# -- check -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    import functools

    from pgrad.doctor import run_doctor
    from pgrad.envs import env_id_of, make_env
    from pgrad.envs.options import parse_env_kwargs, with_options
    from pgrad.errors import ConfigError

    try:
        env = with_options(args.env, parse_env_kwargs(args.env_kwarg or []), args.wrapper or None)
        make_env(env).close()  # an unknown id or a bad option is bad input (exit 2), not a finding
        return run_doctor(functools.partial(make_env, env), env_id_of(env), steps=args.steps, seed=args.seed)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)


# -- entry point -----------------------------------------------------------------------------


def add_env_option_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env-kwarg`` and ``--wrapper`` (pgrad/envs/options.py)."""
    parser.add_argument(
        "--env-kwarg",
        action="append",
        metavar="KEY=VALUE",
        help="env constructor keyword, VALUE as JSON (continuous=true); repeatable; recorded with the run",
    )
    parser.add_argument(
        "--wrapper",
        action="append",
        metavar="MODULE:CLASS[:JSON]",
        help='wrap the env: gymnasium.wrappers:ClipReward:{"min_reward": -1}; repeatable, applied in order',
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pgrad", description="Policy-gradient reinforcement learning for Gymnasium.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an agent and write a run folder")
    train.add_argument("algo", help="algorithm (pgrad list)")
    train.add_argument("env", help="Gymnasium id, pgrad/ id, or module:Class")
    train.add_argument(
        "--steps",
        type=int,
        help="environment steps to train, at least: rounded up to whole rollouts "
        "(default: the preset's, else 1,000,000)",
    )
    seeds = train.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0)
    seeds.add_argument("--seeds", type=int, nargs="+")
    train.add_argument("--out", help="run folder (default runs/ALGO-ENV-seedS-TIME)")
    train.add_argument(
        "--preset",
        help="preset name, a preset FILE.toml (pgrad tune writes one) or 'none' (default: the env's preset if shipped)",
    )
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyperparameter (repeatable)")
    train.add_argument("--backend", choices=("local", "ray"), default="local")
    train.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel seed processes; for one ars seed, rollout workers (default: all cores)",
    )
    batching = train.add_mutually_exclusive_group()
    batching.add_argument(
        "--batched",
        action="store_true",
        default=None,
        help="ppo, several --seeds: train them as seed-batched models, split over --workers processes "
        "(the default for ppo wherever its settings allow; this makes it an error when they do not)",
    )
    batching.add_argument(
        "--no-batched",
        dest="batched",
        action="store_false",
        help="ppo, several --seeds: one process per seed instead of seed-batched models",
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue RUN_DIR from its checkpoint (same command otherwise)"
    )
    train.add_argument(
        "--allow-changes", action="store_true", help="with --resume: accept settings that differ from the run's"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="clear --out first if it holds a run (without it, a folder that holds a run is refused)",
    )
    train.add_argument(
        "--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps (default: every 60 s)"
    )
    train.add_argument(
        "--eval-every", type=int, metavar="N", help="deterministic evaluation every N steps (RUN/evaluations.csv)"
    )
    train.add_argument(
        "--patience", type=int, metavar="P", help="with --eval-every: stop after P evaluations without improvement"
    )
    train.add_argument(
        "--min-delta", type=float, default=0.0, metavar="D", help="improvement needed to reset --patience (default 0)"
    )
    train.add_argument(
        "--periodic-eval-episodes", type=int, metavar="N", help="episodes per --eval-every evaluation (default 5)"
    )
    train.add_argument(
        "--eval-episodes", type=int, default=10, help="deterministic evaluation episodes after training (0: none)"
    )
    train.add_argument(
        "--init",
        metavar="RUN",
        help="start from RUN's trained policy (or a policy file, or RUN/checkpoint with its optimiser state); "
        "a new run, with the saved config and --set on top",
    )
    add_env_option_arguments(train)
    train.add_argument(
        "--stop-at-return",
        type=float,
        metavar="R",
        help="stop once the mean return reaches R (the --eval-every evaluation's if given, else the last 100 "
        "training episodes')",
    )
    train.add_argument(
        "--track", choices=("wandb", "mlflow"), help="also log config, metrics and the final evaluation there"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

    check = sub.add_parser(
        "check", help="the env doctor: what would break training on ENV (exit 1 on an error, 0 otherwise)"
    )
    check.add_argument("env", help="Gymnasium id, pgrad/ id, or module:Class")
    check.add_argument("--steps", type=int, default=2000, help="random steps to examine (default 2000)")
    check.add_argument("--seed", type=int, default=0, help="seed of the resets and random actions")
    add_env_option_arguments(check)
    check.set_defaults(func=cmd_check)

    evaluate = sub.add_parser("eval", help="evaluate a saved policy")
    evaluate.add_argument("run", help="run folder, policy.json or policy.safetensors")
    evaluate.add_argument("--episodes", type=int, default=10)
    mode = evaluate.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", action="store_true", help="act with the distribution's mode (default)")
    mode.add_argument("--stochastic", action="store_true", help="sample actions")
    evaluate.add_argument("--seed", type=int, default=10_000, help="episode i is reset with seed+i")
    evaluate.add_argument("--env", help="evaluate on another env than the one trained on")
    add_env_option_arguments(evaluate)
    evaluate.add_argument("--video", metavar="PATH.mp4", help="render the evaluated episodes into this MP4")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(func=cmd_eval)

    plot = sub.add_parser("plot", help="plot learning curves from run folders")
    plot.add_argument("runs", nargs="+", metavar="RUN")
    plot.add_argument("--out", help="PNG path (default RUN/learning_curve.png)")
    plot.add_argument("--smooth", type=int, default=20, help="moving-average window in episodes")
    plot.set_defaults(func=cmd_plot)

    report = sub.add_parser("report", help="Markdown + HTML report (IQM, bootstrap CIs, figures) of runs")
    report.add_argument("runs", nargs="+", metavar="RUN")
    report.add_argument("--out", default="report.md", help="Markdown path; the .html and PNGs go beside it")
    report.add_argument("--smooth", type=int, default=20, help="moving-average window in episodes")
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="export a saved policy (ONNX)")
    export.add_argument("run", help="run folder, policy.json or policy.safetensors")
    export.add_argument("--onnx", required=True, metavar="PATH.onnx", help="where to write the ONNX model")
    export.set_defaults(func=cmd_export)

    tuning = sub.add_parser("tune", help="Optuna hyperparameter search; writes a preset file of the best trial")
    tuning.add_argument("algo", help="algorithm (pgrad list)")
    tuning.add_argument("env", help="Gymnasium id, pgrad/ id, or module:Class")
    tuning.add_argument(
        "--trials", type=int, required=True, help="finished trials the study should hold (resumes count)"
    )
    tuning.add_argument("--steps", type=int, help="steps per trial (default: the preset's, else 100,000)")
    tuning.add_argument("--backend", choices=("local", "ray"), default="local")
    tuning.add_argument("--workers", type=int, help="with --backend ray: trials at once (default: the cluster's CPUs)")
    tuning.add_argument(
        "--out", help="study folder: study.db, trial_<N>/, best_preset.toml (default runs/tune-ALGO-ENV)"
    )
    tuning.add_argument("--seed", type=int, default=0, help="training seed of every trial, and the sampler's seed")
    tuning.add_argument("--preset", help="preset the trials start from (default: the env's if shipped; 'none')")
    tuning.add_argument("--set", action="append", metavar="KEY=VALUE", help="fix a hyperparameter for every trial")
    tuning.add_argument("--evaluations", type=int, default=4, help="evaluations per trial, each reported to the pruner")
    tuning.add_argument("--eval-episodes", type=int, default=5, help="deterministic episodes per evaluation")
    add_env_option_arguments(tuning)
    tuning.add_argument("--quiet", action="store_true")
    tuning.set_defaults(func=cmd_tune)

    listing = sub.add_parser("list", help="algorithms, presets and extra envs")
    listing.add_argument("algo", nargs="?", help="show this algorithm's hyperparameters")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
