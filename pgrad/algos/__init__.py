"""Algorithm registry: the CLI name of each algorithm and its class."""

from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import PPO

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (PPO,)}
