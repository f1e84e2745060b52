"""The numpy twin of pgrad's MLP policies: the one copy of the model outside torch.

pgrad's networks are small (a few dense layers), so torch's per-operation overhead, not the
arithmetic, dominates a rollout step or a minibatch update. This package does the same maths on
numpy views of the torch parameters:

* :mod:`.layers`: reading a torch network's layers, one forward, one backward, with an optional
  leading seed axis (seed-batched training), and fusing two networks into one for rollouts;
* :mod:`.actions`: the action distributions' maths (log-softmax, Gaussian log-probabilities,
  sampling from torch's generators as the torch path does);
* :mod:`.policy`: acting (rollout inference and ``predict``), for one policy or ``S`` stacked seeds;
* :mod:`.gradient`: PPO's and A2C's minibatch loss and gradient;
* :mod:`.optim`: Adam and RMSprop steps on flat buffers;
* :mod:`.compiled`: one policy's rollout step, minibatch gradient and Adam step as numba
  functions, used instead of the numpy calls where numba is installed (imported only then).

Every fast path equals the plain torch path up to float32 rounding, with the same random numbers
(tests/unit/test_fast_inference.py, test_fast_update.py). A policy the twin does not cover (an LSTM,
a truncated-normal head, a state-dependent std, non-Box observations) runs on torch throughout;
:func:`unsupported_reason` says why, and a training run records ``"fast_path": false`` in its
summary.json and says so once when it starts.
"""

from pgrad.numpy_twin.gradient import NumpyPolicyGradient, policy_unsupported_reason, seed_batched_unsupported_reason
from pgrad.numpy_twin.optim import NumpyAdam, NumpyOptimizer, NumpyRMSprop
from pgrad.numpy_twin.policy import NumpyActorCritic, SeedBatchedNumpyActorCritic, unsupported_reason

__all__ = [
    "NumpyActorCritic",
    "NumpyAdam",
    "NumpyOptimizer",
    "NumpyPolicyGradient",
    "NumpyRMSprop",
    "SeedBatchedNumpyActorCritic",
    "policy_unsupported_reason",
    "seed_batched_unsupported_reason",
    "unsupported_reason",
]
