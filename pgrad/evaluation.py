"""Evaluate a trained agent: run whole episodes on a fresh env and report their returns."""

from __future__ import annotations

from typing import Any

import numpy as np

from pgrad.envs import env_id_of, make_env
from pgrad.errors import ConfigError


def evaluate(
    agent: Any,
    env: Any = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 10_000,
    max_steps_per_episode: int | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes with ``agent.predict`` and return the ``pgrad eval --json`` dict.

    The env defaults to the one the agent was trained on. Episode ``i`` is reset with seed
    ``seed + i``, so results are reproducible and differ from the training seeds by default.
    Observation normalisation is applied frozen (``predict`` never updates statistics).
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes={episodes!r} must be a positive int")
    env = env if env is not None else agent.env
    if env is None:
        raise ConfigError("no environment to evaluate on: pass one (the agent does not record its env)")
    env_instance = make_env(env)
    returns: list[float] = []
    lengths: list[int] = []
    try:
        for index in range(episodes):
            obs, _ = env_instance.reset(seed=seed + index)
            episode_return, length, done = 0.0, 0, False
            while not done:
                action = agent.predict(obs, deterministic=deterministic)
                obs, reward, terminated, truncated, _ = env_instance.step(action)
                episode_return += float(reward)
                length += 1
                done = terminated or truncated or (max_steps_per_episode is not None and length >= max_steps_per_episode)
            returns.append(episode_return)
            lengths.append(length)
    finally:
        if env_instance is not env:  # close only what was built here, never the caller's env
            env_instance.close()
    return {
        "env": env_id_of(env),
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": lengths,
    }
