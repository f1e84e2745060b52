"""The deterministic evaluation pgrad runs after training, for a Stable-Baselines3 model (benchmark scripts only)."""

from __future__ import annotations

import gymnasium as gym


def evaluate_like_pgrad(model, venv, env_id: str, episodes: int = 10) -> list[float]:
    """Raw returns of ``episodes`` deterministic episodes on a fresh ``env_id`` with reset seeds
    10000, 10001, ... (as ``pgrad.evaluate``), observations normalised by ``venv``'s frozen
    VecNormalize statistics."""
    venv.training = False
    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(venv.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns
