"""``EpisodeRecorder``: remembers how each env's current episode began, so it can be replayed.

Exact resume (``pgrad train --resume``) needs every environment back in the state it had when the
checkpoint was written. Gymnasium envs hold that state in arbitrary Python objects (a MuJoCo
``MjData``, a Box2D world, a ``TimeLimit`` counter, the env's ``np_random`` generator), so pgrad
does not try to serialise it. Instead it relies on one property every Gymnasium env is meant to
have: given the state of ``env.np_random`` before ``reset`` (or the reset seed) and the actions
since, the episode is deterministic. Each sub-env of a training vector env is wrapped in an
``EpisodeRecorder`` that keeps exactly that: the reset seed or generator state, the reset options
and the actions of the running episode. Replaying them in a new process rebuilds the env state,
its RNG state and its wrappers' counters (``TimeLimit``) bit for bit; the replay checks itself
against the observation and generator state recorded at checkpoint time and reports a mismatch
(an env that draws from a global RNG, or is not deterministic) instead of hiding it.

Cost: one Python call and one small copy per env step, and memory for one episode of actions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# An episode longer than this (an env without a time limit) stops being recorded; resuming
# from a checkpoint taken during it is then not exact, and says so.
MAX_RECORDED_STEPS = 1_000_000


def _space_rng_state(space: gym.spaces.Space) -> dict[str, Any] | None:
    """The action/observation-space sampler's generator state, None if it was never created."""
    generator = getattr(space, "_np_random", None)
    return None if generator is None else generator.bit_generator.state


def _set_space_rng_state(space: gym.spaces.Space, state: dict[str, Any] | None) -> None:
    if state is not None:
        space.np_random.bit_generator.state = state


class EpisodeRecorder(gym.Wrapper):
    """Records the reset (seed or RNG state, options) and actions of the running episode."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._reset_seed: int | None = None
        self._reset_rng: dict[str, Any] | None = None
        self._reset_options: dict[str, Any] | None = None
        self._actions: list[np.ndarray] = []
        self._complete = False  # True once reset has been recorded and no step was dropped
        self.pgrad_replay_target: dict[str, Any] | None = None  # set (set_attr) before pgrad_replay()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        # Without a seed, reset draws from env.np_random: its state now determines the episode.
        self._reset_rng = None if seed is not None else self.env.np_random.bit_generator.state
        self._reset_seed = seed
        self._reset_options = options
        self._actions = []
        self._complete = True
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        if self._complete:
            if len(self._actions) < MAX_RECORDED_STEPS:
                self._actions.append(np.array(action, copy=True))
            else:
                self._complete, self._actions = False, []
        return self.env.step(action)

    def pgrad_recorder_state(self) -> dict[str, Any]:
        """The running episode's start and actions, and the generator states to check a replay."""
        return {
            "complete": self._complete,
            "reset_seed": self._reset_seed,
            "reset_rng": self._reset_rng,
            "reset_options": self._reset_options,
            "actions": np.stack(self._actions) if self._actions else None,
            "rng_now": self.env.np_random.bit_generator.state,
            "action_space_rng": _space_rng_state(self.env.action_space),
            "observation_space_rng": _space_rng_state(self.env.observation_space),
        }

    def pgrad_replay(self) -> tuple[np.ndarray | None, bool]:
        """Replay ``pgrad_replay_target`` (a recorder state); return (last obs, generator matches)."""
        target, self.pgrad_replay_target = self.pgrad_replay_target, None
        if target is None or not target["complete"]:
            return None, False
        if target["reset_rng"] is not None:
            self.env.np_random.bit_generator.state = target["reset_rng"]
        obs, _ = self.reset(seed=target["reset_seed"], options=target["reset_options"])
        for action in target["actions"] if target["actions"] is not None else ():
            obs = self.step(action)[0]
        _set_space_rng_state(self.env.action_space, target["action_space_rng"])
        _set_space_rng_state(self.env.observation_space, target["observation_space_rng"])
        return obs, self.env.np_random.bit_generator.state == target["rng_now"]


def with_recorder(make: Any) -> EpisodeRecorder:
    """``EpisodeRecorder(make())``: a module-level builder, so it pickles into async workers."""
    return EpisodeRecorder(make())
