"""Algorithm registry: the CLI name of each algorithm, its class, and fixed arguments.

Classes are imported on first use: ``pgrad --help`` and ``pgrad list`` must answer without
importing torch or Gymnasium (about a second on the project machine), so the registry holds
``module:Class`` paths and :func:`algorithm_summary` reads a class's docstring from its source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgrad.algos.base import Algorithm

# CLI name -> "module:Class". One class may serve several names (see ALGORITHM_ARGUMENTS).
_ALGORITHM_PATHS: dict[str, str] = {
    "actor-critic": "pgrad.algos.actor_critic:ActorCritic",
    "a2c": "pgrad.algos.a2c:A2C",
    "ars": "pgrad.algos.ars:ARS",
    "ppo": "pgrad.algos.ppo:PPO",
    "ppo-lstm": "pgrad.algos.ppo_lstm:RecurrentPPO",
    # One file, two classes: NPG is TRPO without the line search.
    "trpo": "pgrad.algos.trpo:TRPO",
    "npg": "pgrad.algos.trpo:NPG",
    # One class, two names: REINFORCE without and with its learned state-value baseline.
    "reinforce": "pgrad.algos.reinforce:Reinforce",
    "reinforce-baseline": "pgrad.algos.reinforce:Reinforce",
}

# CLI names that are one class with a fixed argument, e.g. "reinforce-baseline": {"baseline": True}.
ALGORITHM_ARGUMENTS: dict[str, dict[str, Any]] = {"reinforce-baseline": {"baseline": True}}


def _import_class(path: str) -> type[Algorithm]:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class _Registry(Mapping[str, "type[Algorithm]"]):
    """A read-only ``{name: class}`` mapping that imports each class when it is first looked up."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths

    def __getitem__(self, name: str) -> type[Algorithm]:
        return _import_class(self._paths[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, name: object) -> bool:
        return name in self._paths


ALGORITHMS: Mapping[str, type[Algorithm]] = _Registry(_ALGORITHM_PATHS)


def algorithm_summary(name: str) -> str:
    """First line of the algorithm class's docstring, read from its source without importing it."""
    module, class_name = _ALGORITHM_PATHS[name].split(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            docstring = (ast.get_docstring(node) or "").strip()
            return docstring.splitlines()[0] if docstring else ""
    return ""
