"""``pgrad train ppo ENV --seeds ... --batched``: seed-batched models, one process per core.

The run folder is the one :func:`pgrad.experiments.runner.run_seeds` writes (``RUN/seed_<S>/``
with each seed's ordinary files, ``RUN/summary.json`` aggregating them), so ``pgrad report``,
``pgrad evaluate`` and ``pgrad.load`` treat both alike. See pgrad/algos/ppo_batched.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pgrad.algos.ppo_batched import SeedBatchedPPO, not_in_lockstep, unsupported_for_batching
from pgrad.batched import check_batchable
from pgrad.errors import ConfigError, Interrupted, TrainingError
from pgrad.experiments.runner import (
    TrainSpec,
    callbacks_of,
    resolve_steps,
    summary_with_early_stopping,
    write_failure,
)
from pgrad.io import write_json

BATCHED_ALGORITHMS = ("ppo",)


def check_batched_spec(spec: TrainSpec, seeds: list[int], config: Any = None, policy: Any = None) -> None:
    """ConfigError (one line) for what seed batching does not support yet; with ``config`` and
    ``policy`` (the first seed's resolved PPO config and policy), those too, before any process
    starts."""
    problem = batching_problem(spec, seeds, config, policy)
    if problem is not None:
        raise ConfigError(problem)


def batching_problem(spec: TrainSpec, seeds: list[int], config: Any = None, policy: Any = None) -> str | None:
    """Why ``spec`` cannot train its ``seeds`` seed-batched (one line), or None if it can."""
    if spec.algo not in BATCHED_ALGORITHMS:
        return f"--batched supports {', '.join(BATCHED_ALGORITHMS)}, not {spec.algo!r}"
    if len(seeds) < 2:
        return "--batched needs several --seeds"
    if spec.init is not None:
        return "--init starts each seed from a saved policy in its own process: use --no-batched"
    if spec.track is not None:
        return "--track logs one tracked run per seed process: use --no-batched"
    if policy is not None:
        try:
            check_batchable(policy)
        except ConfigError as exc:
            return str(exc)
    if config is not None:
        return unsupported_for_batching(config)
    return None


def batched_by_default(
    spec: TrainSpec, seeds: list[int], config: Any, workers: int | None = None, policy: Any = None
) -> bool:
    """Whether ``pgrad train`` batches these seeds when neither --batched nor --no-batched is given:
    whenever seed batching supports the settings, and, on resume, the unfinished seeds of each
    group (:func:`seed_groups` with ``workers``) have checkpoints at one step (groups run in
    lockstep; a run trained one process per seed may have stopped its seeds anywhere)."""
    if batching_problem(spec, seeds, config, policy) is not None:
        return False
    if not spec.resume:
        return True
    root = Path(spec.out)
    return all(len(set(resume_positions(root, group)[1].values())) <= 1 for group in seed_groups(seeds, workers))


def checkpoint_steps(folder: Path) -> dict[str, int]:
    """The steps of a seed's checkpoint files in ``folder/checkpoint``: the current one
    (``state.safetensors``) and the one before it a seed-batched group keeps (``previous.safetensors``)."""
    from pgrad.io import checkpoint_file_state, read_checkpoint_state

    steps = {}
    checkpoint = folder / "checkpoint"
    if (checkpoint / "state.safetensors").is_file():  # (moved to previous.safetensors while a new one is written)
        steps["state.safetensors"] = read_checkpoint_state(checkpoint).get("total_steps")
    if (checkpoint / "previous.safetensors").is_file():
        steps["previous.safetensors"] = (checkpoint_file_state(checkpoint / "previous.safetensors") or {}).get(
            "total_steps"
        )
    return steps


def resume_positions(root: Path, seeds: list[int]) -> tuple[list[int], dict[int, int | None]]:
    """On a resume of ``root``: the seeds that had finished, and the step each other seed resumes
    from (None: no checkpoint).

    A group writes its seeds' checkpoints one after the other, each keeping the one before it
    (``previous.safetensors``); a kill in between leaves some seeds a checkpoint ahead. The step
    is then the latest one every unfinished seed has, current or previous (:func:`settle_checkpoints`
    makes it current).
    """
    from pgrad.experiments.resume import run_is_complete

    finished, steps = [], {}
    for seed in seeds:
        folder = root / f"seed_{seed}"
        if run_is_complete(folder):
            finished.append(seed)
        else:
            steps[seed] = checkpoint_steps(folder)
    shared = set.intersection(*(set(s.values()) for s in steps.values())) if steps else set()
    shared.discard(None)
    if shared:
        return finished, {seed: max(shared) for seed in steps}
    return finished, {seed: s.get("state.safetensors") for seed, s in steps.items()}


def settle_checkpoints(root: Path, positions: dict[int, int | None]) -> None:
    """Make each seed's checkpoint at its ``positions`` step the current one: a seed a checkpoint
    ahead of the group goes back to its previous one (whose state.json is written again)."""
    from pgrad.io import checkpoint_file_state, write_json

    for seed, step in positions.items():
        checkpoint = root / f"seed_{seed}" / "checkpoint"
        steps = checkpoint_steps(root / f"seed_{seed}")
        if step is not None and steps.get("state.safetensors") != step and steps.get("previous.safetensors") == step:
            os.replace(checkpoint / "previous.safetensors", checkpoint / "state.safetensors")
            write_json(checkpoint / "state.json", checkpoint_file_state(checkpoint / "state.safetensors"))


def seed_groups(seeds: list[int], workers: int | None) -> list[list[int]]:
    """Split ``seeds`` into contiguous groups as even as possible, one process each.

    ``workers`` given: that many groups. By default one group per core, except when the seeds do
    not split evenly and there are more than two per core: then one group more than cores, so that
    no core idles while the larger groups finish (5 seeds on 2 cores: [2, 2, 1] in three processes
    instead of [3, 2], where one core idles a third of the wall). Measured faster on 5 seeds and not
    on 3, where [2, 1] beats three processes (docs/dev/seed_batched.md, "Groups").
    """
    cores = os.cpu_count() or 1
    if workers is None and len(seeds) % cores and len(seeds) > 2 * cores:
        workers = cores + 1
    n_groups = max(1, min(len(seeds), workers or cores))
    size, extra = divmod(len(seeds), n_groups)
    groups, start = [], 0
    for index in range(n_groups):
        stop = start + size + (index < extra)
        groups.append(seeds[start:stop])
        start = stop
    return groups


def _train_group(spec: TrainSpec, seeds: list[int]) -> dict[int, dict[str, Any]]:
    """One :class:`SeedBatchedPPO` over ``seeds``: train (or resume), evaluate, save; each seed's summary.

    As :func:`pgrad.experiments.runner.run_training` does for one seed: a checkpoint per seed is
    written before training starts, so a failure at any point leaves a good one; on resume, seeds
    that had finished are returned as they are and the others continue from their checkpoints.
    """
    import pgrad
    from pgrad.io import read_json

    root = Path(spec.out)
    summaries: dict[int, dict[str, Any]] = {}
    resuming = False
    if spec.resume:
        finished, positions = resume_positions(root, seeds)
        for seed in finished:
            summaries[seed] = read_json(root / f"seed_{seed}" / "summary.json", "run summary")
        if len(set(positions.values())) > 1:
            raise not_in_lockstep(positions)
        settle_checkpoints(root, positions)
        seeds = list(positions)
        resuming = None not in positions.values()
    if not seeds:
        return summaries
    env_options = dict(env_kwargs=spec.env_kwargs or None, wrappers=list(spec.wrappers) or None)
    batched = SeedBatchedPPO(spec.env, seeds, preset=spec.preset, **env_options, **spec.overrides)
    try:
        steps = resolve_steps(spec, batched.agents[0])
        if resuming:
            batched.load_checkpoints(root, keep_hyperparameters=spec.allow_changes)
        else:
            # each seed's config.json before its step-0 checkpoint, as a single run writes them
            # (runner.py): a group killed at any moment after has what --resume needs
            for seed, agent in zip(seeds, batched.agents):
                write_json(root / f"seed_{seed}" / "config.json", agent.describe_run())
            batched.save_checkpoints(root)
        try:
            batched.learn(steps, run_dir=root, quiet=True, callback=callbacks_of(spec), resume=resuming)
        except TrainingError as exc:
            raise TrainingError(f"{exc}; last good checkpoints kept in {root}/seed_*/checkpoint") from None
        except OSError as exc:  # a full disk or an I/O error while writing the run's files
            raise TrainingError(
                f"{write_failure(exc)}; last good checkpoints kept in {root}/seed_*/checkpoint"
            ) from None
        for seed, agent in zip(seeds, batched.agents):
            agent.save(root / f"seed_{seed}", summary=False)  # the policy before the evaluation (runner.py)
            result = pgrad.evaluate(agent, agent.env, episodes=spec.eval_episodes) if spec.eval_episodes > 0 else None
            agent.save(root / f"seed_{seed}", evaluation=result)
            summaries[seed] = summary_with_early_stopping(agent, agent.summary(result), root / f"seed_{seed}")
    finally:
        batched.close()
    return summaries


def _run_group(job: tuple[TrainSpec, list[int]]) -> dict[str, Any]:
    """A group's outcome as data (errors too), so one group failing cannot lose the others' results."""
    spec, seeds = job
    try:
        return {"ok": True, "summaries": _train_group(spec, seeds)}
    except ConfigError as exc:
        return {"ok": False, "error": str(exc), "bad_input": True}
    except TrainingError as exc:
        return {"ok": False, "error": str(exc)}
    except Interrupted as exc:
        return {"ok": False, "error": str(exc), "interrupted": True}


def run_seeds_batched(
    spec: TrainSpec, seeds: list[int], workers: int | None = None, backend: str = "local"
) -> tuple[dict[str, Any], list[str]]:
    """Train ``seeds`` under ``spec.out`` as seed-batched models; evaluate, save, aggregate.

    The seeds are split into ``workers`` groups (default: one per core), each one
    :class:`SeedBatchedPPO` in its own spawned process, so every core steps envs; with one group
    it runs in this process. ``backend="ray"``: each group is a Ray task (one CPU) instead.
    Every seed trains exactly as it would in any other grouping.
    Returns ``(summary, errors)`` as :func:`pgrad.experiments.runner.run_seeds` does: one line per
    failed or interrupted group, and ``summary["interrupted_seeds"]`` lists the seeds a signal
    stopped (after their checkpoints).
    """
    from pgrad.experiments.runner import _outcomes_local, _outcomes_ray, gather_outcomes

    check_batched_spec(spec, seeds)
    groups = seed_groups(seeds, workers)
    jobs = {tuple(group): (spec, group) for group in groups}
    if backend == "ray":
        outcomes = _outcomes_ray(jobs, len(groups), _run_group)
    elif len(groups) == 1:
        outcomes = [(groups[0], _run_group(jobs[tuple(groups[0])]))]
    else:
        outcomes = _outcomes_local(jobs, len(groups), _run_group)
    return gather_outcomes(spec, seeds, outcomes, batched=True, batched_groups=groups)
