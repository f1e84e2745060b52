"""Small environments whose spaces are not a flat Box or Discrete, for tests and examples.

Each is a contextual bandit with short episodes: every step shows a random target and pays 1
only when the whole action matches it, so a policy must get every sub-action right. A random
policy rarely does ((1/n)^k for k entries of n values), a learned one always can: the optimal
return is the episode length.

- :class:`MatchDigitsEnv`: Dict observation (the target as MultiDiscrete, the time left as a
  Box), MultiDiscrete action.
- :class:`MatchBitsEnv`: MultiBinary observation and action.
- :class:`MaskedChoiceEnv`: Discrete action of which only some are valid at each step, with the
  valid ones in ``info["action_mask"]``; an invalid action ends the episode with a penalty.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MatchDigitsEnv(gym.Env):
    """Copy ``k`` digits in ``0 .. n-1``: reward 1 when every digit is right, else 0."""

    def __init__(self, digits: int = 3, values: int = 3, length: int = 8) -> None:
        self.values, self.length = values, length
        self.observation_space = spaces.Dict(
            {
                "target": spaces.MultiDiscrete([values] * digits),
                "time_left": spaces.Box(0.0, 1.0, (1,), dtype=np.float32),
            }
        )
        self.action_space = spaces.MultiDiscrete([values] * digits)
        self._target = np.zeros(digits, dtype=np.int64)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        time_left = np.array([1.0 - self._t / self.length], dtype=np.float32)
        return {"target": self._target.copy(), "time_left": time_left}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._target = self.np_random.integers(0, self.values, size=self._target.shape)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        reward = float(np.array_equal(np.asarray(action), self._target))
        self._t += 1
        self._target = self.np_random.integers(0, self.values, size=self._target.shape)
        return self._obs(), reward, False, self._t >= self.length, {}


class MatchBitsEnv(gym.Env):
    """Copy ``n`` bits: reward 1 when every bit is right, else 0."""

    def __init__(self, bits: int = 4, length: int = 8) -> None:
        self.length = length
        self.observation_space = spaces.MultiBinary(bits)
        self.action_space = spaces.MultiBinary(bits)
        self._target = np.zeros(bits, dtype=np.int8)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._target = self.np_random.integers(0, 2, size=self._target.shape).astype(np.int8)
        return self._target.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(np.array_equal(np.asarray(action, dtype=np.int8), self._target))
        self._t += 1
        self._target = self.np_random.integers(0, 2, size=self._target.shape).astype(np.int8)
        return self._target.copy(), reward, False, self._t >= self.length, {}


class FindTheLightEnv(gym.Env):
    """An image with one lit pixel: say whether it is in the left (0) or the right (1) half.

    ``channels_last``: the image is (H, W, C) as most envs give it, else (C, H, W); ``dtype``
    uint8 (0 or 255) or float32 (0 or 1). The layouts and dtypes pgrad's image encoder accepts.
    """

    def __init__(self, size: int = 8, channels: int = 2, channels_last: bool = True, dtype: str = "uint8") -> None:
        self.size, self.channels_last, self.length = size, channels_last, 8
        self.dtype = np.dtype(dtype)
        high = 255 if self.dtype == np.uint8 else 1.0
        shape = (size, size, channels) if channels_last else (channels, size, size)
        self.observation_space = spaces.Box(0, high, shape, dtype=self.dtype)
        self.action_space = spaces.Discrete(2)
        self._side, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        image = np.zeros(self.observation_space.shape, dtype=self.dtype)
        row = int(self.np_random.integers(0, self.size))
        half = self.size // 2
        column = int(self.np_random.integers(0, half)) + half * self._side
        channel = int(self.np_random.integers(0, image.shape[-1] if self.channels_last else image.shape[0]))
        value = self.observation_space.high.flat[0]
        if self.channels_last:
            image[row, column, channel] = value
        else:
            image[channel, row, column] = value
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._side = int(self.np_random.integers(0, 2))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self._side)
        self._t += 1
        self._side = int(self.np_random.integers(0, 2))
        return self._obs(), reward, False, self._t >= self.length, {}


class MaskedChoiceEnv(gym.Env):
    """Pick the target among ``n`` actions, of which only some are allowed at each step.

    The observation shows the target one-hot; ``info["action_mask"]`` (from reset and step) marks
    the allowed actions, the target always among them. The target pays 1; another allowed action
    pays 0; an action that is not allowed pays -1 and ends the episode. With ``mask_in_observation``
    the mask is an ``action_mask`` key of a Dict observation instead (PettingZoo's convention).
    """

    def __init__(self, n: int = 8, length: int = 8, mask_in_observation: bool = False) -> None:
        self.n, self.length, self.mask_in_observation = n, length, mask_in_observation
        target = spaces.Box(0.0, 1.0, (n,), dtype=np.float32)
        if mask_in_observation:
            self.observation_space = spaces.Dict({"target": target, "action_mask": spaces.MultiBinary(n)})
        else:
            self.observation_space = target
        self.action_space = spaces.Discrete(n)
        self._target, self._mask, self._t = 0, np.ones(n, dtype=np.int8), 0

    def _draw(self) -> tuple[Any, dict]:
        self._target = int(self.np_random.integers(0, self.n))
        self._mask = (self.np_random.random(self.n) < 0.4).astype(np.int8)
        self._mask[self._target] = 1
        target = np.zeros(self.n, dtype=np.float32)
        target[self._target] = 1.0
        if self.mask_in_observation:
            return {"target": target, "action_mask": self._mask.copy()}, {}
        return target, {"action_mask": self._mask.astype(bool)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        action = int(action)
        self._t += 1
        if not self._mask[action]:
            self.invalid_actions = getattr(self, "invalid_actions", 0) + 1
            obs, info = self._draw()
            return obs, -1.0, True, False, info
        reward = float(action == self._target)
        obs, info = self._draw()
        return obs, reward, False, self._t >= self.length, info
