"""Algorithm registry: the CLI name of each algorithm, its class, and fixed arguments."""

from typing import Any

from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import PPO

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (PPO,)}

# CLI names that are one class with a fixed argument, e.g. "reinforce-baseline": {"baseline": True}.
ALGORITHM_ARGUMENTS: dict[str, dict[str, Any]] = {}
