"""pgrad: policy-gradient reinforcement learning for Gymnasium.

Public API: the algorithm classes, :func:`load` and :func:`evaluate`.
"""

__version__ = "0.1.0"

from pgrad import envs as _envs  # noqa: E402,F401  registers the pgrad/ environments
from pgrad.algos import ALGORITHMS  # noqa: E402
from pgrad.algos.a2c import A2C  # noqa: E402
from pgrad.algos.actor_critic import ActorCritic  # noqa: E402
from pgrad.algos.ars import ARS  # noqa: E402
from pgrad.algos.ppo import PPO  # noqa: E402
from pgrad.algos.reinforce import Reinforce  # noqa: E402
from pgrad.evaluation import evaluate  # noqa: E402
from pgrad.loading import load  # noqa: E402

__all__ = ["ActorCritic", "A2C", "ARS", "PPO", "Reinforce", "ALGORITHMS", "evaluate", "load", "__version__"]
