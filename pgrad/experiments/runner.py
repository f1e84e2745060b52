"""Train one run or many seeds of it: the engine behind ``pgrad train``.

A :class:`TrainSpec` is plain data, so it crosses process boundaries; every seed trains in its
own process (``spawn``, one torch thread each), up to ``workers`` at a time, and writes
``RUN/seed_<S>/``. ``RUN/summary.json`` then aggregates the seeds' summaries. With
``backend="ray"`` every seed is a Ray task instead (same code, same results); on a cluster of
several machines RUN must be on a filesystem they share.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, Interrupted, TrainingError
from pgrad.experiments.stats import summarize
from pgrad.io import write_json

DEFAULT_STEPS = 1_000_000


@dataclass(frozen=True)
class TrainSpec:
    """Everything needed to train and save one run."""

    algo: str
    env: str
    seed: int
    out: str
    steps: int | None = None  # None: the preset's recommended budget, else DEFAULT_STEPS
    preset: str | None = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 10
    quiet: bool = False
    checkpoint_every: int | None = None  # also checkpoint every this many steps (None: time-based only)
    eval_every: int | None = None  # periodic deterministic evaluation every this many steps (None: off)
    patience: int | None = None  # early stop after this many evaluations without improvement (None: off)
    min_delta: float = 0.0  # improvement an evaluation needs to reset the patience counter
    periodic_eval_episodes: int = 5  # episodes per periodic evaluation
    resume: bool = False  # continue from out/checkpoint (checked against this spec first)
    allow_changes: bool = False  # resume even if the spec differs from the run
    init: str | None = None  # start from this run's (or policy's, or checkpoint's) weights: pgrad.load(init, env=...)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the env's constructor keywords (--env-kwarg)
    wrappers: tuple[str, ...] = ()  # module:Class[:json] wrappers applied in order (--wrapper)
    stop_at_return: float | None = None  # stop once the mean return reaches this (callbacks.StopOnReward)
    track: str | None = None  # also log to "wandb" or "mlflow" (pgrad.tracking)


def eval_callback_of(spec: TrainSpec):
    """The :class:`pgrad.callbacks.EvalCallback` of ``--eval-every``/``--patience``, or None."""
    from pgrad.callbacks import EvalCallback

    if spec.eval_every is None:
        if spec.patience is not None:
            raise ConfigError("--patience needs --eval-every: early stopping watches the periodic evaluation return")
        return None
    return EvalCallback(spec.eval_every, spec.periodic_eval_episodes, spec.patience, spec.min_delta)


def early_stopping_of(spec: TrainSpec):
    """The :class:`pgrad.early_stopping.EarlyStopping` a spec asks for, or None."""
    callback = eval_callback_of(spec)
    return None if callback is None else callback.stopping


def callbacks_of(spec: TrainSpec, run_name: str | None = None) -> list[Any]:
    """The callbacks ``pgrad train``'s flags ask for: periodic evaluation (``--eval-every``,
    ``--patience``), ``--checkpoint-every``, ``--stop-at-return`` and ``--track``."""
    from pgrad.callbacks import CheckpointCallback, StopOnReward

    evaluation = eval_callback_of(spec)
    callbacks: list[Any] = [] if evaluation is None else [evaluation]
    if spec.checkpoint_every is not None:
        callbacks.append(CheckpointCallback(spec.checkpoint_every))
    if spec.stop_at_return is not None:
        # the evaluation return where there is one: deterministic, on fixed start states
        callbacks.append(StopOnReward(spec.stop_at_return, "training" if evaluation is None else "evaluation"))
    if spec.track is not None:
        from pgrad.tracking import TrackingCallback

        callbacks.append(TrackingCallback(spec.track, run_name=run_name))
    return callbacks


def tracked_run_name(out: Path) -> str:
    """The name a run is tracked under: its folder's, with the multi-seed run's for a seed folder."""
    return f"{out.parent.name}-{out.name}" if out.name.startswith("seed_") else out.name


def prepare_resume(spec: TrainSpec, agent, steps: int) -> None:
    """Check ``--resume`` against the spec and load the checkpoint into ``agent`` (ConfigError if unfit)."""
    from pgrad.experiments.resume import check_resume

    early = early_stopping_of(spec)
    out = Path(spec.out)
    check_resume(out, agent, steps, early.state() if early else None, spec.allow_changes)
    agent.load_checkpoint_state(out / "checkpoint", run_dir=out, keep_hyperparameters=spec.allow_changes)


def build_agent(spec: TrainSpec):
    """Construct the agent a spec describes (validates everything; raises ConfigError)."""
    from pgrad.algos import ALGORITHM_ARGUMENTS, ALGORITHMS

    if spec.algo not in ALGORITHMS:
        import difflib

        close = difflib.get_close_matches(spec.algo, ALGORITHMS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown algorithm {spec.algo!r}{hint}; available: {', '.join(ALGORITHMS)}")
    fixed = ALGORITHM_ARGUMENTS.get(spec.algo, {})
    for key in fixed.keys() & spec.overrides.keys():
        raise ConfigError(
            f"--set {key} is fixed to {fixed[key]!r} by algorithm {spec.algo!r}; choose another algorithm name instead"
        )
    env_options = dict(env_kwargs=spec.env_kwargs or None, wrappers=list(spec.wrappers) or None)
    if spec.init is not None:
        return agent_from_init(spec, env_options)
    return ALGORITHMS[spec.algo](spec.env, seed=spec.seed, preset=spec.preset, **env_options, **fixed, **spec.overrides)


def agent_from_init(spec: TrainSpec, env_options: dict[str, Any]):
    """``--init RUN``: a new agent on the spec's env from RUN's weights, config and normalisers,
    with the spec's ``--set`` on top (:func:`pgrad.loading.load` with an env)."""
    from pgrad.loading import load, read_saved

    if spec.preset not in ("auto", None):
        raise ConfigError("--init starts from the saved run's config; use --set to change it, not --preset")
    saved_algo = read_saved(spec.init)[0].get("algo")
    if saved_algo != spec.algo:
        raise ConfigError(f"--init {spec.init} is a {saved_algo} run; start from it with: pgrad train {saved_algo} ...")
    return load(spec.init, env=spec.env, seed=spec.seed, **env_options, **spec.overrides)


def budget(algo: str, preset: str | None, steps: int | None) -> int:
    """The training budget: ``steps`` if given, else the preset's, else DEFAULT_STEPS."""
    from pgrad.config import preset_steps

    return steps if steps is not None else (preset_steps(algo, preset) or DEFAULT_STEPS)


def resolve_steps(spec: TrainSpec, agent) -> int:
    """The run's training budget (:func:`budget`), checked to be positive."""
    steps = budget(agent.name, agent.preset, spec.steps)
    if steps <= 0:
        raise ConfigError(f"--steps {steps} must be a positive number of environment steps")
    return steps


def summary_with_early_stopping(agent, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """``summary`` with what the periodic evaluation decided (written again to ``out``), if there was one."""
    if agent.early_stopping is not None:
        summary["early_stopping"] = {
            "stopped": agent.early_stopping.stopped_reason,
            "best_eval_return": agent.early_stopping.best,
            "best_step": agent.early_stopping.best_step,
        }
        write_json(out / "summary.json", summary)
    return summary


def run_training(spec: TrainSpec, agent=None, resumed: bool = False) -> dict[str, Any]:
    """Train, evaluate and save one run into ``spec.out``; return its summary.

    A checkpoint is written before training starts, so a failure at any point leaves a good one.
    With ``spec.resume`` the run continues from ``spec.out/checkpoint`` (``resumed``: the caller
    already loaded it into ``agent``); a run that had finished is returned as it is.
    Raises TrainingError (with the checkpoint location) if training fails, Interrupted on
    SIGINT/SIGTERM (after writing a checkpoint).
    """
    import torch

    import pgrad
    from pgrad.experiments.resume import run_is_complete

    torch.set_num_threads(1)
    out = Path(spec.out)
    if spec.resume and not resumed and run_is_complete(out):
        from pgrad.io import read_json

        return read_json(out / "summary.json", "run summary")
    agent = agent if agent is not None else build_agent(spec)
    steps = resolve_steps(spec, agent)
    callbacks = callbacks_of(spec, tracked_run_name(out))
    finished = False
    try:
        if spec.resume and not resumed:
            prepare_resume(spec, agent, steps)
        if not spec.resume:
            # config.json first, then the step-0 checkpoint: a run killed at any moment after
            # this has both files --resume needs (killed before it, --resume starts it over)
            write_json(out / "config.json", agent.describe_run())
            agent.save_checkpoint(out / "checkpoint")
        agent.learn(steps, run_dir=out, quiet=spec.quiet, callback=callbacks, resume=spec.resume)
        # the policy first: a final evaluation that fails or is stopped cannot lose it (summary.json,
        # which marks the run as finished, comes after the evaluation)
        agent.save(out, summary=False)
        result = pgrad.evaluate(agent, agent.env, episodes=spec.eval_episodes) if spec.eval_episodes > 0 else None
        agent.save(out, evaluation=result)
        summary = summary_with_early_stopping(agent, agent.summary(result), out)
        for callback in callbacks:
            if hasattr(callback, "log_final"):  # a tracker: the final evaluation beside the curves
                callback.log_final(summary)
        finished = True
        return summary
    except TrainingError as exc:
        raise TrainingError(f"{exc}; last good checkpoint kept in {out / 'checkpoint'}") from None
    except OSError as exc:  # a full disk or an I/O error while writing the run's files
        raise TrainingError(f"{write_failure(exc)}; last good checkpoint kept in {out / 'checkpoint'}") from None
    finally:
        for callback in callbacks:
            if hasattr(callback, "finish"):  # a tracker: its run ends, marked failed unless training finished
                callback.finish(failed=not finished)
        agent.close()


def write_failure(exc: OSError) -> str:
    """One line for an OSError writing run files: what failed, where, and the system's reason."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {exc.strerror or exc}"


def _run_in_worker(spec: TrainSpec) -> dict[str, Any]:
    """Process-pool and Ray entry point: errors come back as data so one seed cannot hide another's.

    A pool worker that was already told to stop (a signal during an earlier seed) does not start this one.
    """
    from pgrad.checkpointing import worker_stop_signal

    if worker_stop_signal() is not None:
        return {"ok": False, "error": f"not started: stopped by signal {worker_stop_signal()}", "interrupted": True}
    try:
        return {"ok": True, "summary": run_training(spec)}
    except (TrainingError, ConfigError) as exc:
        return {"ok": False, "error": str(exc)}
    except Interrupted as exc:
        return {"ok": False, "error": str(exc), "interrupted": True}


def seed_specs(spec: TrainSpec, seeds: list[int]) -> dict[int, TrainSpec]:
    """One spec per seed under ``spec.out/seed_<S>``; on resume, seeds never started start afresh."""
    root = Path(spec.out)
    specs = {}
    for seed in seeds:
        folder = root / f"seed_{seed}"
        resume = spec.resume and (folder / "checkpoint" / "state.json").is_file()
        specs[seed] = replace(spec, seed=seed, out=str(folder), quiet=True, resume=resume)
    return specs


def check_seed_resumes(spec: TrainSpec, seeds: list[int]) -> None:
    """Validate every seed folder a multi-seed ``--resume`` continues, before any work starts."""
    from pgrad.experiments.resume import check_resume

    early = early_stopping_of(spec)
    for seed_spec in seed_specs(spec, seeds).values():
        if seed_spec.resume:
            agent = build_agent(seed_spec)
            try:
                check_resume(
                    Path(seed_spec.out),
                    agent,
                    resolve_steps(seed_spec, agent),
                    early.state() if early else None,
                    spec.allow_changes,
                )
            finally:
                agent.close()


def run_seeds(
    spec: TrainSpec, seeds: list[int], workers: int | None = None, backend: str = "local"
) -> tuple[dict[str, Any], list[str]]:
    """Train ``seeds`` in parallel under ``spec.out/seed_<S>/``; write and return the aggregate.

    Returns ``(summary, errors)``; ``errors`` holds one line per failed or interrupted seed, and
    ``summary["interrupted_seeds"]`` lists the seeds a signal stopped (after their checkpoint).
    ``backend``: ``"local"`` (processes here) or ``"ray"`` (Ray tasks, one CPU each).
    """
    run = _outcomes_ray if backend == "ray" else _outcomes_local
    outcomes = (
        ([seed], {**outcome, "summaries": {seed: outcome["summary"]}} if outcome["ok"] else outcome)
        for seed, outcome in run(seed_specs(spec, seeds), workers)
    )
    return gather_outcomes(spec, seeds, outcomes)


def gather_outcomes(
    spec: TrainSpec, seeds: list[int], outcomes: Iterable[tuple[list[int], dict[str, Any]]], **extra: Any
) -> tuple[dict[str, Any], list[str]]:
    """Write and return the multi-seed summary of ``(seeds of one job, outcome)`` pairs, as they come.

    A job is one seed's process or one seed-batched group. An ``ok`` outcome carries
    ``summaries`` (seed -> summary); a failed one an ``error`` line, ``interrupted`` if a signal
    stopped it (after its checkpoints), and ``bad_input`` if every job would refuse it alike (then
    raised as :class:`ConfigError`). ``extra`` goes into the summary as it is.
    Returns ``(summary, errors)``: one line per failed or interrupted job.
    """
    summaries: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    interrupted: list[int] = []
    for job_seeds, outcome in outcomes:
        if outcome["ok"]:
            summaries.update(outcome["summaries"])
            if not spec.quiet:
                for seed, s in sorted(outcome["summaries"].items()):
                    evaluation = f", eval {s['eval_mean_return']:.1f}" if s.get("eval_mean_return") is not None else ""
                    print(
                        f"seed {seed} done: {s['steps']:,} steps in {s['wall_seconds']:.1f} s{evaluation}",
                        file=sys.stderr,
                    )
            continue
        if outcome.get("bad_input"):
            raise ConfigError(outcome["error"])
        label = f"seed {job_seeds[0]}" if len(job_seeds) == 1 else f"seeds {list(job_seeds)}"
        errors.append(f"{label}: {outcome['error']}")
        if outcome.get("interrupted"):
            interrupted += list(job_seeds)
    summary = {**aggregate(spec, seeds, summaries), **extra}
    if interrupted:
        summary["interrupted_seeds"] = sorted(interrupted)
    write_json(Path(spec.out) / "summary.json", summary)
    return summary, errors


def die_with_parent(parent_pid: int) -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (``prctl
    PR_SET_PDEATHSIG``). A seed process outliving a ``kill -9`` of ``pgrad train`` would go on
    writing its seed folder, no longer guarded by the run folder's lock, while a ``--resume`` may
    write the same files; killed at once, it leaves its last complete checkpoint instead."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _start_pool_worker(cores_per_worker: int, parent_pid: int) -> None:
    """Initializer of a multi-seed pool worker: death with the parent, deferred stop signals, its
    share of the cores (so an ARS seed with default ``n_workers`` starts one rollout worker per core
    it has, not per core of the machine while other seeds run beside it), and pgrad's start-up
    savings (pgrad.startup)."""
    from pgrad.checkpointing import defer_signals
    from pgrad.parallel import share_cores
    from pgrad.startup import skip_optimizer_dynamo_import

    die_with_parent(parent_pid)
    defer_signals()
    share_cores(cores_per_worker)
    skip_optimizer_dynamo_import()


def _outcomes_local(specs: dict[Any, Any], workers: int | None, work: Callable[[Any], dict[str, Any]] = _run_in_worker):
    """Yield ``(key, outcome)`` as spawned worker processes finish ``work(specs[key])``
    (default: one seed's :class:`TrainSpec` each; seed batching passes its groups).

    A SIGTERM to this process is forwarded to the workers, which checkpoint and stop like a
    single run does (a Ctrl-C in a terminal reaches them directly, as one process group). A
    worker that received the signal starts no queued seed afterwards (:func:`_run_in_worker`).
    """
    workers = max(1, min(len(specs), workers or os.cpu_count() or 1))
    from pgrad.parallel import available_cores

    cores_per_worker = max(1, available_cores() // workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_start_pool_worker,
        initargs=(cores_per_worker, os.getpid()),
    ) as pool:

        def forward(signum: int, frame: Any) -> None:
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)

        previous = signal.signal(signal.SIGTERM, forward) if _in_main_thread() else None
        try:
            futures = {pool.submit(work, s): key for key, s in specs.items()}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as exc:  # a worker that died (killed, out of memory) must not hang the run
                    outcome = {"ok": False, "error": f"worker process failed: {type(exc).__name__}: {exc}"}
                yield futures[future], outcome
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def import_ray():
    """``ray``, or ConfigError naming the extra to install (ray is optional, imported lazily)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'pgrad[ray]' (or use --backend local)") from None
    return ray


def init_ray(ray) -> None:
    """Join the cluster RAY_ADDRESS names, else start a local one, unless already connected."""
    from pgrad.parallel import connect_ray

    # Workers must import this pgrad: pass its location on (an editable install needs nothing).
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    connect_ray(ray, log_to_driver=False, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


def ray_completed(submit: Callable[[], tuple[Any, Any] | None], limit: int, failed: Callable[[str], Any]):
    """Keep up to ``limit`` Ray tasks running; yield ``(key, result)`` as each finishes.

    ``submit()`` starts the next task and returns ``(key, object_ref)``, or None when there is
    none left; a task whose worker died yields ``failed(one-line reason)`` as its result.
    """
    ray = import_ray()
    running: dict[Any, Any] = {}
    exhausted = False
    while not exhausted or running:
        while not exhausted and len(running) < limit:
            started = submit()
            if started is None:
                exhausted = True
            else:
                running[started[1]] = started[0]
        if not running:
            break
        done, _ = ray.wait(list(running), num_returns=1)
        key = running.pop(done[0])
        try:
            result = ray.get(done[0])
        except Exception as exc:
            result = failed(f"ray task failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}")
        yield key, result


def _absolute_out(job: Any) -> Any:
    """``job`` (a TrainSpec, or a ``(TrainSpec, seeds)`` group) with an absolute run folder: a Ray
    worker's working directory is not this process's."""
    if isinstance(job, TrainSpec):
        return replace(job, out=str(Path(job.out).resolve()))
    return (_absolute_out(job[0]), *job[1:])


def _outcomes_ray(specs: dict[Any, Any], workers: int | None, work: Callable[[Any], dict[str, Any]] = _run_in_worker):
    """Yield ``(key, outcome)`` as Ray tasks of ``work`` over ``specs``' jobs finish (at most
    ``workers`` at once if given): one task per seed, or per seed-batched group."""
    ray = import_ray()
    init_ray(ray)
    task = ray.remote(num_cpus=1, max_retries=0)(work)
    waiting = iter(specs.items())

    def submit():
        key, job = next(waiting, (None, None))
        return None if job is None else (key, task.remote(_absolute_out(job)))

    yield from ray_completed(submit, workers or len(specs), lambda reason: {"ok": False, "error": reason})


def aggregate(spec: TrainSpec, seeds: list[int], summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The multi-seed ``summary.json``: per-seed summaries and statistics across seeds."""
    ordered = [summaries[s] for s in seeds if s in summaries]
    return {
        "algo": spec.algo,
        "env": spec.env,
        "seeds": seeds,
        "completed_seeds": [s for s in seeds if s in summaries],
        "eval_mean_return": summarize([s.get("eval_mean_return") for s in ordered]),
        "last_100_episode_return_mean": summarize([s.get("last_100_episode_return_mean") for s in ordered]),
        "wall_seconds": summarize([s.get("wall_seconds") for s in ordered]),
        "runs": {f"seed_{s}": summaries[s] for s in seeds if s in summaries},
    }
