"""The environments pgrad bundles, and the packages that register other families of ids, as plain data.

Kept apart from :mod:`pgrad.envs` (which imports Gymnasium to register them) so that
``pgrad list`` can name them without importing Gymnasium or torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, NamedTuple

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
# Small envs of other spaces (pgrad/envs/spaces_demo.py): a random policy rarely scores, a learned
# one scores on every step, so the optimal return is the episode length (8).
BUNDLED_ENVS += (
    {"id": "pgrad/MatchDigits-v0", "entry_point": "pgrad.envs.spaces_demo:MatchDigitsEnv", "reward_threshold": 7.5},
    {"id": "pgrad/MatchBits-v0", "entry_point": "pgrad.envs.spaces_demo:MatchBitsEnv", "reward_threshold": 7.5},
    {"id": "pgrad/FindTheLight-v0", "entry_point": "pgrad.envs.spaces_demo:FindTheLightEnv", "reward_threshold": 7.5},
    {"id": "pgrad/MaskedChoice-v0", "entry_point": "pgrad.envs.spaces_demo:MaskedChoiceEnv", "reward_threshold": 7.5},
)
REGISTERED_IDS: tuple[str, ...] = tuple(spec["id"] for spec in BUNDLED_ENVS)


class EnvPackage(NamedTuple):
    """A package whose import registers a family of Gymnasium ids (see :data:`ENV_PACKAGES`)."""

    module: str  # imported, as gymnasium.make's "module:Id" form would, to register the ids
    extra: str  # pgrad's pip extra that installs it: pip install 'pgrad[<extra>]'
    packages: tuple[str, ...]  # the PyPI distributions the extra installs
    # A function of ``module`` that registers the ids, called only if importing registered none:
    # releases made for Gymnasium < 1.0 registered through Gymnasium's plugin entry points, which
    # Gymnasium 1.0 dropped (minigrid < 2.5), and MinAtar registers only when asked (up to 1.0.15).
    register: str | None = None


# Id prefix -> the package to import before an id with that prefix can be made. make_env imports
# only the modules named here, and only for an id it does not know yet.
ENV_PACKAGES: dict[str, EnvPackage] = {
    "MiniGrid-": EnvPackage("minigrid", "minigrid", ("minigrid",), "register_minigrid_envs"),
    "BabyAI-": EnvPackage("minigrid", "minigrid", ("minigrid",), "register_minigrid_envs"),
    "ALE/": EnvPackage("ale_py", "atari", ("ale-py",)),
    "MinAtar/": EnvPackage("minatar.gym", "minatar", ("minatar",), "register_envs"),
    "dm_control/": EnvPackage("shimmy", "dmc", ("shimmy", "dm-control")),
}


def env_package_of(env_id: str) -> tuple[str, EnvPackage] | None:
    """The ``(prefix, package)`` of :data:`ENV_PACKAGES` whose prefix starts ``env_id``, or None.

    The prefix is matched ignoring case, so that a miscased id still loads the package and gets
    the "did you mean" of an unknown id rather than no suggestion.
    """
    folded = env_id.strip().casefold()
    for prefix, package in ENV_PACKAGES.items():
        if folded.startswith(prefix.casefold()):
            return prefix, package
    return None


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
