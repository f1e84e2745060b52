"""What a resumable checkpoint holds beyond weights and optimisers: the collector, the envs, signals.

Design (README, "Resuming"): checkpoints are written between two training iterations, and
resuming from one gives bit-for-bit the run that was never stopped. Everything that carries
state from one iteration to the next is saved:

* the collector: current observations, running episode returns and lengths, NEXT_STEP pending
  resets, the transition counter and REINFORCE's buffer of unfinished episodes;
* the envs, by replay (:mod:`pgrad.envs.recorder`): each sub-env's running episode is replayed
  from its recorded reset seed or generator state, which restores the simulator, ``TimeLimit``
  counters and ``env.np_random``; the vector env's own pending-autoreset flags and the samplers
  of its action and observation spaces are restored directly;
* torch's and numpy's generators, counters, the logger's row counts and the learn budget, in
  :meth:`pgrad.algos.base.Algorithm.save_checkpoint`.

Everything here is tensors (safetensors) or JSON; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from pgrad.errors import Interrupted, PolicyFileError
from pgrad.io import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    space_from_json,
    space_to_json,
)
from pgrad.observations import env_row, observation_arrays, observation_arrays_keys, observation_from_arrays, stack_rows
from pgrad.rollout import RolloutCollector, StepRecord


class ResumeNotExactWarning(UserWarning):
    """A resumed run cannot reproduce the uninterrupted one exactly (the reason is in the message)."""


def _to_tensor(value: Any) -> torch.Tensor:
    return value.detach().clone() if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))


# -- collector ---------------------------------------------------------------------------------
# Reads and writes RolloutCollector's between-rollout attributes (see its __init__): obs,
# pending_reset, episode_return, episode_length, total_transitions, _episode_buffer, _episode_starts.


def collector_state(
    collector: RolloutCollector, rows: slice | None = None, total_transitions: int | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(json, tensors)`` of everything the collector carries between two rollouts.

    ``rows`` and ``total_transitions``: the state of one seed's envs in a seed-batched collector
    (pgrad/rollout.py, SeedBatchedCollector), as that seed's own collector would hold it.
    """
    rows = slice(None) if rows is None else rows
    space = collector.policy.observation_space
    tensors = {
        _obs_name("collector.obs", key): _to_tensor(values[rows])
        for key, values in observation_arrays(collector.obs, space).items()
    }
    tensors |= {
        "collector.pending_reset": _to_tensor(collector.pending_reset[rows]),
        "collector.episode_return": _to_tensor(collector.episode_return[rows]),
        "collector.episode_length": _to_tensor(collector.episode_length[rows]),
    }
    if collector.action_mask is not None:  # the allowed actions of the current observations
        tensors["collector.action_mask"] = _to_tensor(collector.action_mask[rows])
    total = collector.total_transitions if total_transitions is None else total_transitions
    state: dict[str, Any] = {"total_transitions": total, "episode_buffer": None}
    buffer = collector._episode_buffer
    if buffer is not None:
        if rows != slice(None):
            raise ValueError("a collector holding unfinished episodes (collect_episodes) cannot be split by rows")
        state["episode_buffer"] = {
            "length": len(buffer),
            "starts": list(collector._episode_starts),
            "none_fields": [],
            "numpy_fields": [],
        }
        finals = []
        for f in dataclasses.fields(StepRecord):
            values = [getattr(step, f.name) for step in buffer]
            if f.name == "truncated_final_obs":
                state["episode_buffer"]["truncated_final_obs"] = [
                    [k, env] for k, step in enumerate(values) for env, _ in step
                ]
                finals = [final for step in values for _, final in step]
            elif not values or values[0] is None:
                state["episode_buffer"]["none_fields"].append(f.name)
            else:
                if isinstance(values[0], np.ndarray):
                    state["episode_buffer"]["numpy_fields"].append(f.name)
                tensors[f"collector.buffer.{f.name}"] = torch.stack([_to_tensor(v) for v in values])
        if finals:
            for key, values in observation_arrays(stack_rows(finals), space).items():
                tensors[_obs_name("collector.buffer.final_obs", key)] = _to_tensor(values)
    return state, tensors


def _obs_name(name: str, key: str) -> str:
    """The tensor name of one observation key (the name itself for a Box or Discrete observation)."""
    return f"{name}.{key}" if key else name


def _saved_observations(tensors: dict[str, torch.Tensor], name: str, space: Any) -> Any:
    """The observations saved under ``name`` by :func:`collector_state`, as the env gave them."""
    keys = observation_arrays_keys(space)
    return observation_from_arrays({key: tensors[_obs_name(name, key)].numpy().copy() for key in keys}, space)


def restore_collector_state(
    collector: RolloutCollector, state: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Inverse of :func:`collector_state`."""
    space = collector.policy.observation_space
    collector.obs = _saved_observations(tensors, "collector.obs", space)
    mask = tensors.get("collector.action_mask")
    collector.action_mask = None if mask is None else mask.numpy().copy()
    collector.pending_reset = tensors["collector.pending_reset"].numpy().copy()
    collector.episode_return = tensors["collector.episode_return"].numpy().copy()
    collector.episode_length = tensors["collector.episode_length"].numpy().copy()
    collector.total_transitions = state["total_transitions"]
    saved = state["episode_buffer"]
    if saved is None:
        collector._episode_buffer = None
        return
    finals: dict[int, list[tuple[int, np.ndarray]]] = {}
    saved_finals = saved.get("truncated_final_obs", [])
    final_obs = _saved_observations(tensors, "collector.buffer.final_obs", space) if saved_finals else None
    for index, (k, env) in enumerate(saved_finals):
        finals.setdefault(k, []).append((env, env_row(final_obs, index)))
    buffer = []
    for k in range(saved["length"]):
        values: dict[str, Any] = {}
        for f in dataclasses.fields(StepRecord):
            if f.name == "truncated_final_obs":
                values[f.name] = finals.get(k, [])
            elif f.name in saved["none_fields"]:
                values[f.name] = None
            else:
                stored = tensors[f"collector.buffer.{f.name}"][k]
                values[f.name] = stored.numpy().copy() if f.name in saved["numpy_fields"] else stored.clone()
        buffer.append(StepRecord(**values))
    collector._episode_buffer = buffer
    collector._episode_starts = list(saved["starts"])


# -- envs ----------------------------------------------------------------------------------------


def _space_samplers(envs: VectorEnv) -> dict[str, Any]:
    return {"action_space": envs.action_space, "observation_space": envs.observation_space}


def envs_state(envs: VectorEnv) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Each sub-env's replay record, and the vector env's space samplers."""
    spaces = {name: getattr(space, "_np_random", None) for name, space in _space_samplers(envs).items()}
    state: dict[str, Any] = {
        "space_rng": {n: (g.bit_generator.state if g is not None else None) for n, g in spaces.items()}
    }
    tensors: dict[str, torch.Tensor] = {}
    try:
        records = envs.call("pgrad_recorder_state")
    except AttributeError:
        state["sub_envs"] = None  # envs built without EpisodeRecorder: cannot be replayed
        return state, tensors
    state["sub_envs"] = []
    for index, record in enumerate(records):
        actions = record.pop("actions")
        if actions is not None:
            tensors[f"envs.{index}.actions"] = _to_tensor(actions)
        state["sub_envs"].append(record)
    return state, tensors


def restore_envs_state(
    envs: VectorEnv, state: dict[str, Any], tensors: dict[str, torch.Tensor], collector: RolloutCollector
) -> list[str]:
    """Replay every sub-env's episode; return the reasons the restore is not exact (empty: exact)."""
    problems: list[str] = []
    for name, space in _space_samplers(envs).items():
        if state["space_rng"].get(name) is not None:
            space.np_random.bit_generator.state = state["space_rng"][name]
    records = state.get("sub_envs")
    if records is None:
        return ["the checkpoint's envs were built without pgrad's EpisodeRecorder, so their state was not saved"]
    if len(records) != envs.num_envs:
        raise PolicyFileError(
            f"checkpoint has {len(records)} envs, this run {envs.num_envs}; n_envs cannot change on resume"
        )
    targets = []
    for index, record in enumerate(records):
        actions = tensors.get(f"envs.{index}.actions")
        targets.append({**record, "actions": None if actions is None else actions.numpy()})
    envs.set_attr("pgrad_replay_target", targets)
    results = envs.call("pgrad_replay")
    for index, (obs, rng_matches) in enumerate(results):
        if obs is None:
            problems.append(f"env {index}'s episode was too long to record")
        elif not (rng_matches and _same_observation(obs, env_row(collector.obs, index), collector.policy)):
            problems.append(f"env {index} did not replay to the same state (it is not deterministic given its seed)")
    if collector.mode is AutoresetMode.NEXT_STEP:
        # The vector env resets an env on the step after its episode ended; it keeps that flag itself.
        if isinstance(envs, SyncVectorEnv):
            envs._autoreset_envs = collector.pending_reset.copy()
        elif collector.pending_reset.any():
            problems.append(
                "an async NEXT_STEP vector env was due to reset an env; its worker's flag cannot be restored"
            )
    return problems


def _same_observation(replayed: Any, saved: Any, policy: Any) -> bool:
    """Whether a replayed env's observation is the saved one, in every key the policy reads."""
    space = policy.observation_space
    replayed_arrays, saved_arrays = observation_arrays(replayed, space), observation_arrays(saved, space)
    return all(np.array_equal(replayed_arrays[key], saved_arrays[key]) for key in saved_arrays)


def warn_if_not_exact(problems: list[str]) -> None:
    if problems:
        warnings.warn(
            "resume will not reproduce the uninterrupted run exactly: " + "; ".join(problems),
            ResumeNotExactWarning,
            stacklevel=3,
        )


# -- stopping on SIGINT / SIGTERM ------------------------------------------------------------------


# The first SIGINT/SIGTERM a pool worker received, during a learn() or not (only set in workers).
_worker_stop_signal: int | None = None
_in_worker = False


def worker_stop_signal() -> int | None:
    """In a pool worker (:func:`defer_signals`): the SIGINT/SIGTERM it received, if any; it starts no new seed then."""
    return _worker_stop_signal


def defer_signals() -> None:
    """Process-pool initializer: SIGINT/SIGTERM outside ``learn`` stop the next ``learn`` instead of the process.

    A multi-seed parent forwards SIGTERM to all its workers; one that is evaluating or saving a
    finished seed completes that work, and one that is about to start a seed stops it after
    its first iteration with a checkpoint, instead of dying and breaking the pool. Once a worker
    has received a signal (here or inside a ``learn``), :func:`worker_stop_signal` says so and
    every later ``learn`` in it stops after its first iteration.
    """
    global _in_worker

    def remember(signum: int, frame: Any) -> None:
        global _worker_stop_signal
        _worker_stop_signal = _worker_stop_signal or signum

    _in_worker = True
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, remember)


class StopSignals:
    """Turns the first SIGINT or SIGTERM into a request to stop after the current iteration.

    ``learn`` then writes a checkpoint and raises :class:`pgrad.errors.Interrupted`. A second
    SIGINT interrupts at once (its previous handler is back by then). Only the main thread can
    install handlers; elsewhere this does nothing and signals keep their default behaviour.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        global _worker_stop_signal
        self.received = self.received or signum
        if _in_worker:  # the pool may hand this worker another seed next: it must not start
            _worker_stop_signal = _worker_stop_signal or signum
        # A second Ctrl-C interrupts at once; repeated SIGTERMs (a multi-seed parent forwards its
        # own to the workers) only repeat the request.
        if signal.SIGINT in self._previous:
            signal.signal(signal.SIGINT, self._previous.pop(signal.SIGINT))

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        self.received = _worker_stop_signal
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def interrupted(self, step: int, saved: str) -> Interrupted:
        """The error ``learn`` raises once the checkpoint after the received signal is written
        (``saved`` says where)."""
        return Interrupted(f"stopped by signal {self.received} at step {step}; {saved}", self.received)


class CheckpointSchedule:
    """When ``learn`` writes its periodic checkpoints: every ``seconds`` of wall time, and each
    time the step count crosses a multiple of ``every`` (None: only by time)."""

    def __init__(self, seconds: float, every: int | None, step: int, now: float) -> None:
        self.seconds, self.every = seconds, every
        self.written(now, step)

    def due(self, now: float, step: int) -> bool:
        return now - self.last_time >= self.seconds or (self.next_step is not None and step >= self.next_step)

    def written(self, now: float, step: int) -> None:
        """Note a checkpoint written at ``now`` and ``step``."""
        self.last_time = now
        self.next_step = (step // self.every + 1) * self.every if self.every else None


# -- an agent's checkpoint: weights, optimisers, generators, counters, collector, envs -----------


def save_agent(
    agent: Any,
    folder: str | Path,
    *,
    collector: tuple[dict, dict] | None = None,
    torch_rng_state: torch.Tensor | None = None,
) -> None:
    """Write ``agent``'s checkpoint to ``folder`` (:meth:`pgrad.algos.base.Algorithm.save_checkpoint`)."""
    tensors = {f"policy.{k}": v for k, v in agent.policy.state_dict().items()}
    optimizer_meta = {}
    for name, optimizer in agent.optimizers().items():
        optimizer_tensors, optimizer_meta[name] = optimizer_to_tensors(optimizer, prefix=f"optimizer.{name}.")
        tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state() if torch_rng_state is None else torch_rng_state
    collector_json = envs_json = None
    if collector is None and agent.collector is not None:  # before the first learn() the envs have not been reset yet
        collector = collector_state(agent.collector)
    if collector is not None:
        collector_json, collector_tensors = collector
        envs_json, envs_tensors = envs_state(agent.envs)
        tensors.update(collector_tensors)
        tensors.update(envs_tensors)
    extra_state, extra_tensors = agent.checkpoint_extra()
    tensors.update({f"extra.{k}": v for k, v in extra_tensors.items()})
    state = {
        **agent.describe_run(),
        "total_steps": agent.total_steps,
        "updates": agent.updates,
        "wall_seconds": agent.wall_seconds,
        "optimizers": optimizer_meta,
        "numpy_rng": agent.rng.bit_generator.state,
        "observation_space": space_to_json(agent.observation_space),
        "action_space": space_to_json(agent.action_space),
        "policy": agent.policy.spec,  # what pgrad.load(checkpoint, env=...) rebuilds (a custom encoder's name)
        "learn_budget": asdict(agent.learn_budget) if agent.learn_budget is not None else None,
        "logger": {"metrics_rows": len(agent.logger.metrics), "episode_rows": len(agent.logger.episodes)},
        "early_stopping": agent.early_stopping.state() if agent.early_stopping is not None else None,
        "collector": collector_json,
        "envs": envs_json,
        "extra": extra_state,
    }
    save_checkpoint(folder, state, tensors)


def load_agent(agent: Any, folder: str | Path, run_dir: str | Path | None, keep_hyperparameters: bool) -> dict | None:
    """Restore ``agent`` from the checkpoint in ``folder`` (:meth:`pgrad.algos.base.Algorithm.load_checkpoint_state`);
    return the interrupted ``learn`` call's budget as saved (None if there was none)."""
    state, tensors = load_checkpoint(folder)
    if state.get("algo") != agent.name:
        raise PolicyFileError(f"checkpoint {folder} is for {state.get('algo')!r}, not {agent.name!r}")
    for key, space in (("observation_space", agent.observation_space), ("action_space", agent.action_space)):
        if key in state and state[key] != space_to_json(space):
            raise PolicyFileError(
                f"checkpoint {folder} was written for {key.replace('_', ' ')} {space_from_json(state[key])}, "
                f"this env has {space}"
            )
    try:
        agent.policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy.")})
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise PolicyFileError(
            f"checkpoint {folder} does not fit this policy (network shape changed?): {first_line}"
        ) from None
    for name, optimizer in agent.optimizers().items():
        fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        optimizer_from_tensors(optimizer, tensors, state["optimizers"][name], prefix=f"optimizer.{name}.")
        if keep_hyperparameters:
            for group, values in zip(optimizer.param_groups, fresh):
                group.update(values)
    torch.set_rng_state(tensors["rng.torch"])
    agent.rng.bit_generator.state = state["numpy_rng"]
    agent.total_steps, agent.updates, agent.wall_seconds = (
        state["total_steps"],
        state["updates"],
        state["wall_seconds"],
    )
    agent._early_stopping_state = state.get("early_stopping")
    if state.get("collector") is not None:
        collector = agent._ensure_collector()
        restore_collector_state(collector, state["collector"], tensors)
        warn_if_not_exact(restore_envs_state(agent.envs, state["envs"], tensors, collector))
    if run_dir is not None:
        logged = state.get("logger", {"metrics_rows": 0, "episode_rows": 0})
        agent.logger.restore(Path(run_dir), logged["metrics_rows"], logged["episode_rows"])
    agent.restore_checkpoint_extra(
        state.get("extra", {}), {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    )
    return state.get("learn_budget")
