"""Callbacks: code of yours that ``learn`` runs at fixed points of training.

``agent.learn(n, callback=[...])`` takes a list of :class:`Callback` objects (or one), or, as
before, a single function ``f(agent, row)`` called after every update (returning False stops).
Each hook receives the agent; override the ones you need:

- ``on_training_start(agent, run_dir)``: once, before the first iteration (``run_dir`` may be None);
- ``on_rollout_end(agent)``: after each rollout is collected, before the update that uses it;
- ``on_update_end(agent, row)``: after each update, with its metrics row (the dict written to
  metrics.csv); returning False stops training after this update (the run then ends normally:
  final checkpoint, policy, summary);
- ``on_training_end(agent, run_dir)``: once, when the iterations are over (stopped or not; not
  when training failed with an error).

In a seed-batched group (``--batched``) ``agent`` is the group and ``row`` is its first seed's.

The built-ins: :class:`EvalCallback` (periodic deterministic evaluation, a copy of the best
policy in ``run_dir/best/``, optionally stopping on a plateau), :class:`StopOnNoImprovement`
(the same with the plateau rule required), :class:`CheckpointCallback` (a checkpoint each time the
step count crosses a multiple of ``every``) and :class:`StopOnReward`. ``pgrad train``'s
``--eval-every``/``--patience`` and ``--checkpoint-every`` are these callbacks. The first three
are carried out by the learn loop itself, not by their hooks, because their state must go into
checkpoints (a resumed run evaluates and stops where the uninterrupted one would have) and each
seed of a group evaluates its own policy; the hooks of other callbacks are plain calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pgrad.early_stopping import EarlyStopping
from pgrad.errors import ConfigError


class Callback:
    """Base class: every hook does nothing; subclasses override the ones they need."""

    def on_training_start(self, agent: Any, run_dir: Path | None) -> None:
        """Before the first iteration of ``learn``."""

    def on_rollout_end(self, agent: Any) -> None:
        """After a rollout is collected, before the update that learns from it."""

    def on_update_end(self, agent: Any, row: dict[str, Any]) -> bool | None:
        """After an update, with its metrics row; return False to stop training."""
        return None

    def on_training_end(self, agent: Any, run_dir: Path | None) -> None:
        """When ``learn``'s iterations are over (after the final checkpoint)."""


class FunctionCallback(Callback):
    """The single function ``f(agent, row)`` that ``learn(callback=f)`` has always taken."""

    def __init__(self, function: Callable[[Any, dict[str, Any]], bool | None]) -> None:
        self.function = function

    def on_update_end(self, agent: Any, row: dict[str, Any]) -> bool | None:
        return self.function(agent, row)


class EvalCallback(Callback):
    """Evaluate the deterministic policy every ``eval_every`` steps on a fresh env (episode ``i``
    reset with ``seed + i``); record ``run_dir/evaluations.csv`` and copy the best policy so far to
    ``run_dir/best/``. With ``patience``: stop after that many evaluations in a row that did not
    beat the best by more than ``min_delta`` (:mod:`pgrad.early_stopping`)."""

    def __init__(
        self,
        eval_every: int,
        episodes: int = 5,
        patience: int | None = None,
        min_delta: float = 0.0,
        seed: int = 10_000,
    ) -> None:
        self.stopping = EarlyStopping(eval_every, patience, min_delta, episodes, seed)

    @property
    def best_mean_return(self) -> float:
        """The best evaluation mean so far (-inf before the first)."""
        return self.stopping.best


class StopOnNoImprovement(EvalCallback):
    """Stop when ``patience`` evaluations (every ``eval_every`` steps) in a row did not beat the
    best mean return by more than ``min_delta``; an :class:`EvalCallback` with the plateau rule."""

    def __init__(
        self, eval_every: int, patience: int, min_delta: float = 0.0, episodes: int = 5, seed: int = 10_000
    ) -> None:
        if patience is None:
            raise ConfigError("StopOnNoImprovement needs a patience (evaluations without improvement)")
        super().__init__(eval_every, episodes, patience, min_delta, seed)


class CheckpointCallback(Callback):
    """Write ``run_dir/checkpoint/`` each time the step count crosses a multiple of ``every``
    (besides the time-based ones every ``checkpoint_seconds``, and at the end)."""

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"CheckpointCallback(every={every!r}): every must be a positive number of steps")
        self.every = every


class StopOnReward(Callback):
    """Stop once the mean return reaches ``threshold``: of the last 100 training episodes
    (``source="training"``), or of the latest evaluation of an :class:`EvalCallback` in the same
    list (``source="evaluation"``, the less noisy choice: deterministic and on fixed start states)."""

    def __init__(self, threshold: float, source: str = "training") -> None:
        if source not in ("training", "evaluation"):
            raise ConfigError(f"StopOnReward(source={source!r}): source must be 'training' or 'evaluation'")
        self.threshold, self.source = float(threshold), source
        self.stopped_at: int | None = None

    def on_update_end(self, agent: Any, row: dict[str, Any]) -> bool | None:
        if self.source == "training":
            value = row.get("episode_return_mean", math.nan)
        else:
            history = agent.early_stopping.history if agent.early_stopping is not None else []
            value = history[-1]["mean_return"] if history else math.nan
        if math.isfinite(value) and value >= self.threshold:
            self.stopped_at = row["step"]
            return False
        return None


def as_callbacks(callback: Any) -> list[Callback]:
    """``learn``'s ``callback`` argument as a list of :class:`Callback` objects: None, one callback,
    a function ``f(agent, row)``, or a list of callbacks and functions."""
    if callback is None:
        return []
    items: Iterable[Any] = callback if isinstance(callback, (list, tuple)) else [callback]
    callbacks = []
    for item in items:
        if isinstance(item, Callback):
            callbacks.append(item)
        elif callable(item):
            callbacks.append(FunctionCallback(item))
        else:
            raise ConfigError(f"callback {item!r} is neither a pgrad.callbacks.Callback nor a function f(agent, row)")
    if sum(isinstance(c, EvalCallback) for c in callbacks) > 1:
        raise ConfigError("give at most one EvalCallback (or StopOnNoImprovement) per learn call")
    if sum(isinstance(c, CheckpointCallback) for c in callbacks) > 1:
        raise ConfigError("give at most one CheckpointCallback per learn call")
    return callbacks
