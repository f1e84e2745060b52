"""Train one run or many seeds of it: the engine behind ``pgrad train``.

A :class:`TrainSpec` is plain data, so it crosses process boundaries; every seed trains in its
own process (``spawn``, one torch thread each), up to ``workers`` at a time, and writes
``RUN/seed_<S>/``. ``RUN/summary.json`` then aggregates the seeds' summaries.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, TrainingError
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
        raise ConfigError(f"--set {key} is fixed to {fixed[key]!r} by algorithm {spec.algo!r}; choose another algorithm name instead")
    return ALGORITHMS[spec.algo](spec.env, seed=spec.seed, preset=spec.preset, **fixed, **spec.overrides)


def resolve_steps(spec: TrainSpec, agent) -> int:
    """The training budget: explicit, else the preset's, else DEFAULT_STEPS."""
    from pgrad.config import preset_steps

    steps = spec.steps if spec.steps is not None else (preset_steps(agent.name, agent.preset) or DEFAULT_STEPS)
    if steps <= 0:
        raise ConfigError(f"--steps {steps} must be a positive number of environment steps")
    return steps


def run_training(spec: TrainSpec, agent=None) -> dict[str, Any]:
    """Train, evaluate and save one run into ``spec.out``; return its summary.

    A checkpoint is written before training starts, so a failure at any point leaves a good one.
    Raises TrainingError (with the checkpoint location) if training fails.
    """
    import torch

    import pgrad

    torch.set_num_threads(1)
    agent = agent if agent is not None else build_agent(spec)
    out = Path(spec.out)
    steps = resolve_steps(spec, agent)
    try:
        agent.save_checkpoint(out / "checkpoint")
        agent.learn(steps, run_dir=out, quiet=spec.quiet)
        result = pgrad.evaluate(agent, agent.env, episodes=spec.eval_episodes) if spec.eval_episodes > 0 else None
        agent.save(out, evaluation=result)
        return agent.summary(result)
    except TrainingError as exc:
        raise TrainingError(f"{exc}; last good checkpoint kept in {out / 'checkpoint'}") from None
    finally:
        agent.close()


def _run_in_worker(spec: TrainSpec) -> dict[str, Any]:
    """Process-pool entry point: errors come back as data so one seed cannot hide another's."""
    try:
        return {"ok": True, "summary": run_training(spec)}
    except (TrainingError, ConfigError) as exc:
        return {"ok": False, "error": str(exc)}


def run_seeds(spec: TrainSpec, seeds: list[int], workers: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """Train ``seeds`` in parallel under ``spec.out/seed_<S>/``; write and return the aggregate.

    Returns ``(summary, errors)``; ``errors`` holds one line per failed seed.
    """
    workers = max(1, min(len(seeds), workers or os.cpu_count() or 1))
    root = Path(spec.out)
    specs = {seed: replace(spec, seed=seed, out=str(root / f"seed_{seed}"), quiet=True) for seed in seeds}
    summaries: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_worker, s): seed for seed, s in specs.items()}
        for future in as_completed(futures):
            seed = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a worker that died (killed, out of memory) must not hang the run
                outcome = {"ok": False, "error": f"worker process failed: {type(exc).__name__}: {exc}"}
            if outcome["ok"]:
                summaries[seed] = outcome["summary"]
                if not spec.quiet:
                    s = outcome["summary"]
                    evaluation = f", eval {s['eval_mean_return']:.1f}" if s.get("eval_mean_return") is not None else ""
                    print(f"seed {seed} done: {s['steps']:,} steps in {s['wall_seconds']:.1f} s{evaluation}", file=sys.stderr)
            else:
                errors.append(f"seed {seed}: {outcome['error']}")
    summary = aggregate(spec, seeds, summaries)
    write_json(root / "summary.json", summary)
    return summary, errors


def aggregate(spec: TrainSpec, seeds: list[int], summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The multi-seed ``summary.json``: per-seed summaries and statistics across seeds."""
    ordered = [summaries[s] for s in seeds if s in summaries]
    return {
        "algo": spec.algo, "env": spec.env, "seeds": seeds,
        "completed_seeds": [s for s in seeds if s in summaries],
        "eval_mean_return": summarize([s.get("eval_mean_return") for s in ordered]),
        "last_100_episode_return_mean": summarize([s.get("last_100_episode_return_mean") for s in ordered]),
        "wall_seconds": summarize([s.get("wall_seconds") for s in ordered]),
        "runs": {f"seed_{s}": summaries[s] for s in seeds if s in summaries},
    }
