"""Periodic deterministic evaluation during training, and early stopping on its plateau.

Every ``eval_every`` environment steps, ``learn`` runs :func:`pgrad.evaluate` (deterministic
actions, a fresh env, episode ``i`` reset with ``seed + i``, so every evaluation sees the same
start states and the curve compares policies, not luck). With ``patience`` set, training stops
once ``patience`` evaluations in a row failed to beat the best mean return so far by more than
``min_delta`` (Prechelt 1998, "Early Stopping - But When?", the "patience" criterion). Off by
default: with ``patience=None`` the evaluations are only recorded.

The evaluations never touch the training envs or the torch/numpy generators training uses, so a
run with evaluations learns exactly what the same run without them learns. Their state (best
so far, evaluations without improvement, history) goes into checkpoints, so a resumed run stops
where the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgrad.errors import ConfigError


@dataclass
class EarlyStopping:
    """Evaluate every ``eval_every`` steps; with ``patience``, stop on a plateau of the evaluation return."""

    eval_every: int
    """environment steps between two evaluations (evaluations happen after the update that crosses a multiple)"""
    patience: int | None = None
    """stop after this many evaluations in a row without improvement (None: never stop, only evaluate)"""
    min_delta: float = 0.0
    """an evaluation improves only if it beats the best mean return by more than this"""
    episodes: int = 5
    """deterministic episodes per evaluation"""
    seed: int = 10_000
    """episode i of every evaluation is reset with seed + i"""
    listener: Callable[[int, float], bool | None] | None = None
    """called as listener(step, mean_return) after each evaluation; returning False stops training (tuning's pruner)"""

    best: float = -math.inf
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    next_step: int | None = None
    stopped_reason: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ConfigError(f"eval_every={self.eval_every!r} must be a positive number of environment steps")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ConfigError(f"patience={self.patience!r} must be a positive number of evaluations, or None")
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise ConfigError(f"min_delta={self.min_delta!r} must be a number >= 0")
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r} must be a positive int")

    def fresh_copy(self) -> EarlyStopping:
        """The same settings with no evaluations yet (one per seed of a seed-batched group)."""
        return EarlyStopping(self.eval_every, self.patience, self.min_delta, self.episodes, self.seed, self.listener)

    @property
    def should_stop(self) -> bool:
        return self.stopped_reason is not None

    def due(self, step: int) -> bool:
        if self.next_step is None:
            self.next_step = self.eval_every
        return step >= self.next_step

    def evaluate(self, agent: Any, step: int) -> dict[str, float]:
        """Evaluate ``agent`` now, update the plateau counter; return the history row."""
        from pgrad.evaluation import evaluate

        result = evaluate(agent, agent.env, episodes=self.episodes, deterministic=True, seed=self.seed)
        mean = result["mean_return"]
        improved = mean > self.best + self.min_delta
        if improved:
            self.best, self.best_step, self.evaluations_without_improvement = mean, step, 0
        else:
            self.evaluations_without_improvement += 1
        while self.next_step <= step:
            self.next_step += self.eval_every
        row = {"step": step, "mean_return": mean, "std_return": result["std_return"], "best": self.best}
        self.history.append(row)
        if self.patience is not None and self.evaluations_without_improvement >= self.patience:
            self.stopped_reason = (
                f"early stop at step {step}: {self.patience} evaluations without improving on {self.best:.2f} "
                f"(step {self.best_step}) by more than {self.min_delta}"
            )
        if self.listener is not None and self.listener(step, mean) is False:
            self.stopped_reason = f"stopped by the evaluation listener at step {step}"
        return {**row, "improved": improved}

    # -- checkpoints -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON state for checkpoints (the settings are recorded too, to detect changes on resume)."""
        return {
            "eval_every": self.eval_every,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "episodes": self.episodes,
            "seed": self.seed,
            "best": self.best if math.isfinite(self.best) else None,
            "best_step": self.best_step,
            "evaluations_without_improvement": self.evaluations_without_improvement,
            "next_step": self.next_step,
            "stopped_reason": self.stopped_reason,
            "history": self.history,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.best = -math.inf if state["best"] is None else state["best"]
        self.best_step = state["best_step"]
        self.evaluations_without_improvement = state["evaluations_without_improvement"]
        self.next_step = state["next_step"]
        self.stopped_reason = state["stopped_reason"]
        self.history = list(state["history"])
