"""The environments pgrad bundles, as plain data.

Kept apart from :mod:`pgrad.envs` (which imports Gymnasium to register them) so that
``pgrad list`` can name them without importing Gymnasium or torch.
"""

from __future__ import annotations

# Time limits and reward thresholds are those of the originals (CartPole-v1: 500 steps, solved
# at 475; Pendulum-v1: 200 steps), so that results compare with published ones.
BUNDLED_ENVS: tuple[dict, ...] = (
    {
        "id": "pgrad/ContinuousCartPole-v0",
        "entry_point": "pgrad.envs.cartpole:ContinuousCartPoleEnv",
        "max_episode_steps": 500,
        "reward_threshold": 475.0,
    },
    {
        "id": "pgrad/CartPoleNoVel-v1",
        "entry_point": "pgrad.envs.novel:cartpole_no_velocity",
        "max_episode_steps": 500,
        "reward_threshold": 475.0,
    },
    {
        "id": "pgrad/PendulumNoVel-v1",
        "entry_point": "pgrad.envs.novel:pendulum_no_velocity",
        "max_episode_steps": 200,
    },
)
REGISTERED_IDS: tuple[str, ...] = tuple(spec["id"] for spec in BUNDLED_ENVS)
