"""``LeanSyncVectorEnv``: Gymnasium's SyncVectorEnv with a cheaper ``step`` for flat spaces.

One ``SyncVectorEnv.step`` around a single HalfCheetah-v5 costs over half the env's own step
again (BENCHMARKS.md, "Speed"): it rebuilds the batched info dict key by key every step
(``VectorEnv._add_info``), concatenates observations through the generic space machinery and
deep-copies them. For Box and Discrete observation spaces this class writes each observation
straight into the batch array and, with ``keep_infos=False``, reports only what ends episodes
(``final_obs`` / ``final_info`` and their masks), which is all pgrad's collector reads.

Everything else (reset, autoreset semantics of both modes, rewards, flags, ``call``,
``set_attr``, close) is the parent's, and with ``keep_infos=True`` the returned info equals the
parent's; tests/unit/test_envs.py steps both side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.async_vector_env import AsyncState


class LeanSyncVectorEnv(SyncVectorEnv):
    """SyncVectorEnv whose ``step`` skips the generic batching work for flat observation spaces."""

    def __init__(self, *args: Any, keep_infos: bool | tuple[str, ...] = True, **kwargs: Any) -> None:
        """``keep_infos``: batch every per-step env info as the parent does; False keeps only the
        episode-end entries (``final_obs``, ``final_info``) of SAME_STEP autoreset; a tuple of
        keys keeps those too (pgrad's collector reads ``action_mask``)."""
        super().__init__(*args, **kwargs)
        self.keep_infos = keep_infos
        self._next_step = self.autoreset_mode is AutoresetMode.NEXT_STEP
        # The parent's buffers this step writes into (Gymnasium 1.x); without them, the parent's step.
        internals = all(hasattr(self, name) for name in ("_env_obs", "_observations", "_autoreset_envs", "_rewards"))
        self._flat = (
            internals
            and isinstance(self.single_observation_space, (spaces.Box, spaces.Discrete))
            and self.autoreset_mode
            in (
                AutoresetMode.NEXT_STEP,
                AutoresetMode.SAME_STEP,
            )
        )

    def step(self, actions: Any):
        if not self._flat:
            return super().step(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"{len(actions)} actions for {self.num_envs} envs")
        infos: dict[str, Any] = {}
        next_step = self._next_step
        observations = self._observations  # (N, *obs_shape), the parent's batch buffer
        for i, env in enumerate(self.envs):
            try:
                if next_step and self._autoreset_envs[i]:
                    obs, env_info = env.reset()
                    self._rewards[i] = 0.0
                    self._terminations[i] = False
                    self._truncations[i] = False
                else:
                    obs, self._rewards[i], self._terminations[i], self._truncations[i], env_info = env.step(actions[i])
                    if not next_step and (self._terminations[i] or self._truncations[i]):
                        infos = self._add_info(infos, {"final_obs": obs, "final_info": env_info}, i)
                        obs, env_info = env.reset()
                self._env_obs[i] = obs
                observations[i] = obs  # a wrong shape or dtype fails here
            except Exception as exc:  # which env failed: the collector's error message names it
                exc.pgrad_env_index = i
                raise
            if self.keep_infos is True:
                infos = self._add_info(infos, env_info, i)
            elif self.keep_infos and env_info:
                for key in self.keep_infos:
                    if key in env_info:
                        infos = self._add_info(infos, {key: env_info[key]}, i)
        np.logical_or(self._terminations, self._truncations, out=self._autoreset_envs)
        return (
            observations.copy() if self.copy else observations,
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )


class TimedAsyncVectorEnv(AsyncVectorEnv):
    """Gymnasium's AsyncVectorEnv whose ``reset`` and ``step`` give up after ``step_timeout``
    seconds (None: wait for ever, Gymnasium's behaviour): a worker whose env hangs then fails the
    run with a one-line error instead of hanging it (``env_timeout``)."""

    def __init__(self, env_fns: Any, step_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(env_fns, **kwargs)
        self.step_timeout = step_timeout
        self.failed = False  # a call timed out or a worker died: close must not wait for the workers

    def reset(self, *, seed: Any = None, options: Any = None):
        self.reset_async(seed=seed, options=options)
        return self._wait(self.reset_wait)

    def step(self, actions: Any):
        self.step_async(actions)
        return self._wait(self.step_wait)

    def _wait(self, wait: Any):
        try:
            return wait(timeout=self.step_timeout)
        except Exception:
            self.failed = True
            raise


def close_vector_env(envs: Any) -> None:
    """Close ``envs``; if that fails (an async worker died mid-step, so Gymnasium's close waits on
    a pipe that only raises), kill the worker processes and close the pipes: no process is left
    behind after a failed run."""
    # a worker that hangs or died: Gymnasium's close would wait on its pipe for ever
    failed = getattr(envs, "failed", False) or (
        isinstance(envs, AsyncVectorEnv) and envs._state is not AsyncState.DEFAULT
    )
    try:
        envs.close(terminate=True) if failed else envs.close()
    except Exception:
        for process in getattr(envs, "processes", ()):
            if process.is_alive():
                process.kill()
            process.join(timeout=10)
        for pipe in getattr(envs, "parent_pipes", ()):
            if pipe is not None:
                pipe.close()
        envs.closed = True
