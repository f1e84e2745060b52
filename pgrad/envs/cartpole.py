"""Cart-pole with a continuous force: the bounded-action benchmark of the seed notebooks.

The physics, constants and observation are those of Gymnasium's CartPole (Barto, Sutton &
Anderson 1983, with the frictionless equations of motion as corrected by Florian 2007, "Correct
equations for the dynamics of the cart-pole system"). Only three things differ:

- the action is a force in [-1, 1] x 10 N instead of a choice between -10 N and +10 N, so the
  task exercises Gaussian / truncated-normal policies on a problem that trains in seconds;
- the episode fails past 20 degrees instead of 12, the seed notebooks' threshold, which leaves a
  continuous controller room to recover;
- there is no Sutton-Barto reward option: the reward is 1 per step, the failing step included.

Registered as ``pgrad/ContinuousCartPole-v0`` with a 500-step time limit (``pgrad.envs``).
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

FORCE_PER_UNIT_ACTION = 10.0  # newtons at action = 1, CartPole's force_mag
POLE_ANGLE_LIMIT_DEGREES = 20.0


class ContinuousCartPoleEnv(CartPoleEnv):
    """CartPole whose action is a continuous force, ``Box(-1, 1, (1,), float32)``.

    Observation ``[x (m), x_dot (m/s), theta (rad), theta_dot (rad/s)]``, float32, as CartPole.
    The action is clipped to [-1, 1] before use (policies with unbounded distributions may
    sample outside); force = 10 N x action, positive pushes the cart towards +x. The episode
    terminates when |theta| > 20 degrees or |x| > 2.4 m. Subclassing CartPoleEnv keeps its
    reset distribution and its ``render()``.
    """

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self.theta_threshold_radians = math.radians(POLE_ANGLE_LIMIT_DEGREES)
        # Like CartPole, the observation bounds are twice the failure thresholds so that the
        # failing observation itself still lies inside the space.
        high = np.array(
            [2 * self.x_threshold, np.inf, 2 * self.theta_threshold_radians, np.inf], dtype=np.float32
        )  # (4,)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        unit_force = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        force = FORCE_PER_UNIT_ACTION * unit_force

        x, x_dot, theta, theta_dot = self.state
        x_acc, theta_acc = _cart_pole_accelerations(self, force, theta, theta_dot)
        # Explicit Euler, CartPole's default integrator: positions advance with the old velocities.
        self.state = np.array(
            (
                x + self.tau * x_dot,
                x_dot + self.tau * x_acc,
                theta + self.tau * theta_dot,
                theta_dot + self.tau * theta_acc,
            ),
            dtype=np.float64,
        )  # (4,)
        x, _, theta, _ = self.state
        terminated = bool(abs(x) > self.x_threshold or abs(theta) > self.theta_threshold_radians)

        if self.render_mode == "human":
            self.render()
        # Truncation is left to the TimeLimit wrapper that gymnasium.make adds.
        return np.array(self.state, dtype=np.float32), 1.0, terminated, False, {}


def _cart_pole_accelerations(env: CartPoleEnv, force: float, theta: float, theta_dot: float) -> tuple[float, float]:
    """Cart and pole accelerations of the frictionless cart-pole (Florian 2007, friction-free case).

    ``theta`` is measured from upright; a push towards +x gives the pole a negative angular
    acceleration. ``env.length`` is half the pole's length, as in Gymnasium.
    """
    # numpy's sin, cos and square rather than math's or `**`: the same routines as CartPole's, so
    # states agree bit for bit with CartPole-v1 under the same pushes (tests/unit/test_envs.py
    # relies on it; numpy's scalar `x**2` differs from x*x in the last bit for some x).
    sin_theta, cos_theta = np.sin(theta), np.cos(theta)
    # The force on the cart plus the pole's centripetal reaction, per unit of total mass.
    common = (force + env.polemass_length * np.square(theta_dot) * sin_theta) / env.total_mass
    theta_acc = (env.gravity * sin_theta - cos_theta * common) / (
        env.length * (4.0 / 3.0 - env.masspole * np.square(cos_theta) / env.total_mass)
    )
    x_acc = common - env.polemass_length * theta_acc * cos_theta / env.total_mass
    return x_acc, theta_acc
