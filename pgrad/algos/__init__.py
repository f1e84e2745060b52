"""Algorithm registry: the CLI name of each algorithm, its class, and fixed arguments."""

from typing import Any

from pgrad.algos.a2c import A2C
from pgrad.algos.ars import ARS
from pgrad.algos.actor_critic import ActorCritic
from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import PPO
from pgrad.algos.reinforce import Reinforce

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (ActorCritic, A2C, PPO, ARS)}

# CLI names that are one class with a fixed argument, e.g. "reinforce-baseline": {"baseline": True}.
ALGORITHM_ARGUMENTS: dict[str, dict[str, Any]] = {}

# One class, two names: REINFORCE without and with its learned state-value baseline.
ALGORITHMS["reinforce"] = Reinforce
ALGORITHMS["reinforce-baseline"] = Reinforce
ALGORITHM_ARGUMENTS["reinforce-baseline"] = {"baseline": True}
