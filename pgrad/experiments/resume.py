"""Checks before ``pgrad train ... --resume RUN``: is RUN a pgrad run, and does the command match it?

A resume continues the run bit for bit only if it is the same experiment: same algorithm, env
spaces, seed, hyperparameters, step budget and early-stopping settings. Anything else is refused
with one line naming every difference, unless ``--allow-changes`` says the change is deliberate
(the network shape and ``n_envs`` can never change: the saved state would not fit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, PolicyFileError
from pgrad.io import read_checkpoint_state, space_from_json, space_to_json


def read_run_checkpoint_state(run: Path) -> dict[str, Any]:
    """``RUN/checkpoint/state.json`` of a pgrad run folder, or ConfigError saying what RUN is not."""
    if not run.is_dir():
        raise ConfigError(f"--resume {run}: no such run folder")
    committed = any((run / "checkpoint" / name).is_file() for name in ("state.json", "state.safetensors"))
    if not (run / "config.json").is_file() or not committed:
        if any(run.glob("seed_*/checkpoint/state.json")):
            raise ConfigError(f"--resume {run} is a multi-seed run; resume it with its --seeds")
        raise ConfigError(f"--resume {run} is not a pgrad run folder (expected config.json and checkpoint/state.json)")
    try:
        return read_checkpoint_state(run / "checkpoint")  # the state the tensor file commits (pgrad/io.py)
    except PolicyFileError as exc:
        raise ConfigError(f"--resume {run}: {exc}") from None


def config_changes(then: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """Every hyperparameter that differs between two resolved configs (``"lr: 0.001 -> 0.0003"``), by name.

    ``defaults``: the values of fields a config saved by an earlier pgrad does not have (added
    since, e.g. ``device``); such a field is a change only if ``now`` differs from its default.
    """
    then = {**(defaults or {}), **then}
    return [
        f"{key}: {then.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(then.keys() | now.keys())
        if then.get(key) != now.get(key)
    ]


def field_defaults(config_class: Any) -> dict[str, Any]:
    """The default of every field of a config class, as ``to_dict`` writes values (tuples as lists)."""
    import dataclasses

    defaults = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    return defaults


def resume_changes(state: dict[str, Any], agent: Any, steps: int, early_stopping: dict[str, Any] | None) -> list[str]:
    """What the command changes compared with the checkpoint (``"lr: 0.001 -> 0.0003"``, ...)."""
    changes = []
    for key, then, now in (("env", state.get("env"), agent.env_id), ("seed", state.get("seed"), agent.seed)):
        if then != now:
            changes.append(f"{key}: {then} -> {now}")
    from pgrad.envs.options import env_options_of

    # env options: checkpoints of runs from before they existed hold none
    for key, now in env_options_of(agent.env).items():
        then = state.get(key, type(now)())
        if then != now:
            changes.append(f"{key}: {then} -> {now}")
    saved = agent.Config.saved_values(state.get("config", {}))
    changes += config_changes(saved, agent.config.to_dict(), field_defaults(agent.Config))
    budget = state.get("learn_budget")
    if budget is not None and budget["total_steps"] != steps:
        changes.append(f"steps: {budget['total_steps']} -> {steps}")
    saved_early = state.get("early_stopping")
    settings = ("eval_every", "patience", "min_delta", "episodes", "seed")
    then = {k: saved_early[k] for k in settings} if saved_early else None
    now = {k: early_stopping[k] for k in settings} if early_stopping else None
    if budget is not None and then != now:
        changes.append(f"early stopping: {then} -> {now}")
    return changes


def check_resume(
    run: Path, agent: Any, steps: int, early_stopping: dict[str, Any] | None, allow_changes: bool
) -> dict[str, Any]:
    """Validate ``--resume RUN`` against the agent the command built; return the checkpoint state."""
    state = read_run_checkpoint_state(run)
    if state.get("algo") != agent.name:
        raise ConfigError(f"--resume {run}: its checkpoint is from algorithm {state.get('algo')!r}, not {agent.name!r}")
    for key in ("observation_space", "action_space"):
        if key in state and state[key] != space_to_json(getattr(agent, key)):
            raise ConfigError(
                f"--resume {run}: its checkpoint is for {key.replace('_', ' ')} {space_from_json(state[key])}, "
                f"env {agent.env_id} has {getattr(agent, key)}"
            )
    changes = resume_changes(state, agent, steps, early_stopping)
    fixed = [
        c
        for c in changes
        if c.split(":")[0]
        in (
            "hidden_sizes",
            "n_envs",
            "activation",
            "action_dist",
            "normalize_obs",
            "normalize_reward",
            "state_dependent_std",
            "baseline",
        )
    ]
    if fixed:
        raise ConfigError(
            f"--resume {run}: these cannot change on resume (the saved state would not fit): {'; '.join(fixed)}"
        )
    if changes and not allow_changes:
        raise ConfigError(
            f"--resume {run}: the command differs from the run ({'; '.join(changes)}); "
            "repeat the run's own settings, or pass --allow-changes to continue with the new ones"
        )
    return state


def run_is_complete(run: Path) -> bool:
    """True for a run whose training finished (its final summary.json was written)."""
    return (run / "summary.json").is_file() and (run / "policy.json").is_file()
