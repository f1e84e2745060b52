"""The environments pgrad bundles, as plain data.

Kept apart from :mod:`pgrad.envs` (which imports Gymnasium to register them) so that
``pgrad list`` can name them without importing Gymnasium or torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

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


def register_bundled_envs(gymnasium: ModuleType) -> None:
    """Register :data:`BUNDLED_ENVS` with ``gymnasium`` (the imported module); idempotent.

    Entry points are strings, so nothing of pgrad.envs is imported until an env is made.
    """
    for spec in BUNDLED_ENVS:
        # Registering twice (importlib.reload, a registry shared with another copy of pgrad)
        # would only warn; skipping keeps the first registration.
        if spec["id"] not in gymnasium.registry:
            gymnasium.register(**spec)


class _RegisterWhenGymnasiumLoads(importlib.abc.MetaPathFinder):
    """A one-shot import hook: once Gymnasium has been imported, register the bundled envs.

    ``import pgrad`` must make ``gymnasium.make("pgrad/ContinuousCartPole-v0")`` work, yet must
    not import Gymnasium itself (``pgrad --help`` and ``pgrad list`` answer without it). The hook
    lets the normal finders locate Gymnasium and runs the registration right after its module
    has executed.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one shot, and not consulted by the lookup below
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            execute(module)
            register_bundled_envs(module)

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def register_on_gymnasium_import() -> None:
    """Register the bundled envs now if Gymnasium is loaded, else as soon as it is imported."""
    if "gymnasium" in sys.modules:
        register_bundled_envs(sys.modules["gymnasium"])
    elif not any(isinstance(finder, _RegisterWhenGymnasiumLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenGymnasiumLoads())
