"""pgrad: policy-gradient reinforcement learning for Gymnasium.

Public API: the algorithm classes, :func:`load` and :func:`evaluate`.

Everything below is imported on first attribute access (PEP 562 module ``__getattr__``), so that
``import pgrad`` and the ``pgrad --help`` / ``pgrad list`` commands stay fast: torch and Gymnasium
load only when a name that needs them is used (``pgrad.PPO``, ``pgrad.load``, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# `gymnasium.make("pgrad/ContinuousCartPole-v0")` works after `import pgrad`, without importing
# Gymnasium here: the ids are registered when Gymnasium is (or already was) imported.
from pgrad.env_ids import register_on_gymnasium_import  # noqa: E402

register_on_gymnasium_import()

# public name -> module that defines it
_LAZY = {
    "ActorCritic": "pgrad.algos.actor_critic",
    "A2C": "pgrad.algos.a2c",
    "ARS": "pgrad.algos.ars",
    "PPO": "pgrad.algos.ppo",
    "RecurrentPPO": "pgrad.algos.ppo_lstm",
    "Reinforce": "pgrad.algos.reinforce",
    "TRPO": "pgrad.algos.trpo",
    "NPG": "pgrad.algos.trpo",
    "ALGORITHMS": "pgrad.algos",
    "evaluate": "pgrad.evaluation",
    "load": "pgrad.loading",
}

__all__ = [
    "ActorCritic",
    "A2C",
    "ARS",
    "PPO",
    "RecurrentPPO",
    "Reinforce",
    "TRPO",
    "NPG",
    "ALGORITHMS",
    "evaluate",
    "load",
    "callbacks",
    "__version__",
]


# submodules reachable as attributes after `import pgrad` (pgrad.callbacks.EvalCallback, ...)
_SUBMODULES = ("callbacks", "tracking", "doctor")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"pgrad.{name}")  # the import system sets it on this module
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pgrad' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
