"""``pgrad train ppo ENV --seeds ... --batched``: every seed in this process, one batched model.

The run folder is the one :func:`pgrad.experiments.runner.run_seeds` writes (``RUN/seed_<S>/``
with each seed's ordinary files, ``RUN/summary.json`` aggregating them), so ``pgrad report``,
``pgrad evaluate`` and ``pgrad.load`` treat both alike. See pgrad/algos/ppo_batched.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, NonFiniteError, TrainingError
from pgrad.experiments.runner import TrainSpec, aggregate, resolve_steps
from pgrad.io import write_json

BATCHED_ALGORITHMS = ("ppo",)


def check_batched_spec(spec: TrainSpec, seeds: list[int]) -> None:
    """ConfigError (one line) for what seed batching does not support yet."""
    if spec.algo not in BATCHED_ALGORITHMS:
        raise ConfigError(f"--batched supports {', '.join(BATCHED_ALGORITHMS)}, not {spec.algo!r}")
    if len(seeds) < 2:
        raise ConfigError("--batched needs several --seeds")
    for flag, unsupported in (("--resume", spec.resume), ("--checkpoint-every", spec.checkpoint_every is not None),
                              ("--eval-every", spec.eval_every is not None)):
        if unsupported:
            raise ConfigError(f"{flag} is not supported with --batched yet")


def run_seeds_batched(spec: TrainSpec, seeds: list[int]) -> dict[str, Any]:
    """Train ``seeds`` as one :class:`SeedBatchedPPO` under ``spec.out``; evaluate, save, aggregate."""
    import pgrad
    from pgrad.algos.ppo_batched import SeedBatchedPPO

    check_batched_spec(spec, seeds)
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
    summary = aggregate(spec, seeds, summaries)
    summary["batched"] = True
    write_json(root / "summary.json", summary)
    return summary
