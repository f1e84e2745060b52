"""``pgrad train ppo ENV --seeds ... --batched``: seed-batched models, one process per core.

The run folder is the one :func:`pgrad.experiments.runner.run_seeds` writes (``RUN/seed_<S>/``
with each seed's ordinary files, ``RUN/summary.json`` aggregating them), so ``pgrad report``,
``pgrad evaluate`` and ``pgrad.load`` treat both alike. See pgrad/algos/ppo_batched.py.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, NonFiniteError, TrainingError
from pgrad.experiments.runner import TrainSpec, aggregate, resolve_steps
from pgrad.io import write_json

BATCHED_ALGORITHMS = ("ppo",)


def check_batched_spec(spec: TrainSpec, seeds: list[int], config: Any = None) -> None:
    """ConfigError (one line) for what seed batching does not support yet; with ``config`` (the
    resolved PPO config of the first seed), its hyperparameters too, before any process starts."""
    if spec.algo not in BATCHED_ALGORITHMS:
        raise ConfigError(f"--batched supports {', '.join(BATCHED_ALGORITHMS)}, not {spec.algo!r}")
    if len(seeds) < 2:
        raise ConfigError("--batched needs several --seeds")
    for flag, unsupported in (("--resume", spec.resume), ("--checkpoint-every", spec.checkpoint_every is not None),
                              ("--eval-every", spec.eval_every is not None)):
        if unsupported:
            raise ConfigError(f"{flag} is not supported with --batched yet")
    if config is not None:
        from pgrad.algos.ppo_batched import unsupported_for_batching

        problem = unsupported_for_batching(config)
        if problem is not None:
            raise ConfigError(problem)


def seed_groups(seeds: list[int], workers: int | None) -> list[list[int]]:
    """Split ``seeds`` into ``workers`` (default: the cores) contiguous groups as even as possible."""
    n_groups = max(1, min(len(seeds), workers or os.cpu_count() or 1))
    size, extra = divmod(len(seeds), n_groups)
    groups, start = [], 0
    for index in range(n_groups):
        stop = start + size + (index < extra)
        groups.append(seeds[start:stop])
        start = stop
    return groups


def _train_group(spec: TrainSpec, seeds: list[int]) -> dict[int, dict[str, Any]]:
    """One :class:`SeedBatchedPPO` over ``seeds``: train, evaluate, save; each seed's summary."""
    import pgrad
    from pgrad.algos.ppo_batched import SeedBatchedPPO

    root = Path(spec.out)
    batched = SeedBatchedPPO(spec.env, seeds, preset=spec.preset, **spec.overrides)
    try:
        steps = resolve_steps(spec, batched.agents[0])
        try:
            batched.learn(steps, run_dir=root)
        except NonFiniteError as exc:
            raise TrainingError(str(exc)) from None
        summaries = {}
        for seed, agent in zip(seeds, batched.agents):
            result = pgrad.evaluate(agent, agent.env, episodes=spec.eval_episodes) if spec.eval_episodes > 0 else None
            agent.save(root / f"seed_{seed}", evaluation=result)
            summaries[seed] = agent.summary(result)
            if not spec.quiet:
                evaluation = f", eval {result['mean_return']:.1f}" if result else ""
                print(f"seed {seed} done: {agent.total_steps:,} steps in {agent.wall_seconds:.1f} s{evaluation}", file=sys.stderr)
    finally:
        batched.close()
    return summaries


def run_seeds_batched(spec: TrainSpec, seeds: list[int], workers: int | None = None) -> dict[str, Any]:
    """Train ``seeds`` under ``spec.out`` as seed-batched models; evaluate, save, aggregate.

    The seeds are split into ``workers`` groups (default: one per core), each one
    :class:`SeedBatchedPPO` in its own spawned process, so every core steps envs; with one group
    it runs in this process. Every seed trains exactly as it would in any other grouping.
    """
    check_batched_spec(spec, seeds)
    groups = seed_groups(seeds, workers)
    summaries: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    if len(groups) == 1:
        summaries.update(_train_group(spec, groups[0]))
    else:
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=get_context("spawn")) as pool:
            futures = [(group, pool.submit(_train_group, spec, group)) for group in groups]
            for group, future in futures:
                try:
                    summaries.update(future.result())
                except ConfigError:  # bad input: every group refuses it alike
                    raise
                except Exception as exc:  # one group failing must not lose the others' results
                    failures.append(f"seeds {group}: {exc}")
    summary = aggregate(spec, seeds, summaries)
    summary["batched"] = True
    summary["batched_groups"] = groups
    write_json(Path(spec.out) / "summary.json", summary)
    if failures:
        raise TrainingError("; ".join(failures))
    return summary
