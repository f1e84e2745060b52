"""Velocity-masked CartPole and Pendulum: partially observable tasks for recurrent policies.

Dropping the velocities from the observation makes the task a POMDP that a memoryless policy
cannot solve well: velocities must be inferred from successive observations. These are the
``CartPoleNoVel-v1`` and ``PendulumNoVel-v1`` benchmarks of sb3-contrib's RecurrentPPO tests and
the RL Baselines3 Zoo (its ``MaskVelocityWrapper``), registered by ``pgrad.envs`` as
``pgrad/CartPoleNoVel-v1`` and ``pgrad/PendulumNoVel-v1`` with the originals' time limits.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

CARTPOLE_KEPT = (0, 2)  # [x, x_dot, theta, theta_dot] -> [x, theta]
PENDULUM_KEPT = (0, 1)  # [cos theta, sin theta, theta_dot] -> [cos theta, sin theta]


class KeepObservationEntries(gym.ObservationWrapper):
    """Keeps only the listed entries of a flat Box observation, with the matching Box bounds."""

    def __init__(self, env: gym.Env, kept_indices: Sequence[int]):
        super().__init__(env)
        inner = env.observation_space
        if not isinstance(inner, spaces.Box) or len(inner.shape) != 1:
            raise TypeError(f"KeepObservationEntries needs a flat Box observation space, got {inner}")
        self.kept_indices = np.asarray(kept_indices, dtype=np.intp)  # (n_kept,)
        self.observation_space = spaces.Box(
            inner.low[self.kept_indices], inner.high[self.kept_indices], dtype=inner.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.kept_indices]

    @property
    def spec(self):
        # The mask is part of the registered env, not a wrapper added on top of it. Wrapper.spec
        # would list it in additional_wrappers (with kwargs=None, as this class does not record
        # its constructor arguments), so env.spec would no longer equal gymnasium.spec(id) and
        # saved specs (spec.to_json()) would describe an extra wrapper that is not there.
        return self.env.spec


def cartpole_no_velocity(render_mode: str | None = None, **kwargs) -> gym.Env:
    """CartPole observing only ``[x, theta]`` (entry point of ``pgrad/CartPoleNoVel-v1``)."""
    return KeepObservationEntries(CartPoleEnv(render_mode=render_mode, **kwargs), CARTPOLE_KEPT)


def pendulum_no_velocity(render_mode: str | None = None, **kwargs) -> gym.Env:
    """Pendulum observing only ``[cos theta, sin theta]`` (entry point of ``pgrad/PendulumNoVel-v1``)."""
    return KeepObservationEntries(PendulumEnv(render_mode=render_mode, **kwargs), PENDULUM_KEPT)
