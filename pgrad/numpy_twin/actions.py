"""The action distributions' maths in numpy, as ``torch.distributions`` computes them.

Categorical (Discrete actions) and the diagonal Gaussian with a state-independent std (Box
actions): log-probabilities, entropies and samples. Random numbers come from torch's generators
with the calls the torch path makes, so a numpy rollout samples exactly the torch path's actions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant torch's Normal.log_prob subtracts
# Normal entropy per dimension is 0.5 + 0.5 log(2 pi) + log(scale), as torch computes it.
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log p`` over the last axis, as ``Categorical(logits=...)`` normalises its logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def sample_categorical(probs: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    """One action per row of ``probs`` ``(B, n)``: ``(B,)`` int64, the action
    ``Categorical.sample`` draws (``torch.multinomial(probs, 1, True)``) from ``generator`` (None:
    torch's global one), leaving the generator in the same state.

    For one sample per row, ``torch.multinomial`` does not search a cumulative distribution: it
    draws ``q ~ Exp(1)`` of the shape of ``probs`` and returns ``argmax(probs / q)`` (the Gumbel-max
    trick with the exponential written out; ATen's ``multinomial`` takes this path whenever one
    sample per row is drawn). Doing the same here, with torch's own ``exponential_`` on a tensor of that
    shape and dtype, gives the same numbers, the same quotients and the same first maximum, for a
    fifth of the cost (most of torch's goes to its argument checks: two reductions and ``.item()``).
    tests/unit/test_fast_inference.py compares the two over many shapes, seeds and distributions.
    """
    if not math.isfinite(np.add.reduce(probs, axis=None)):  # torch.multinomial refuses these too
        raise ValueError("probability tensor contains either inf, nan or element < 0")
    noise = torch.empty_like(torch.from_numpy(probs)).exponential_(generator=generator)  # ATen: empty_like(self)
    return np.argmax(probs / noise.numpy(), axis=-1)


def take_log_prob(log_p: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``log_p[..., a]`` of each row's action: ``(..., B, n)`` and ``(..., B)`` to ``(..., B)``."""
    if log_p.ndim == 2:
        # one index per row: a fifth of take_along_axis's cost, which a rollout pays every env step
        return log_p[np.arange(log_p.shape[0]), actions]
    return np.take_along_axis(log_p, actions[..., None], axis=-1)[..., 0]


class GaussianStd:
    """A state-independent std read from its ``log_std`` parameter, with what log-probabilities need.

    ``std = exp(log_std)`` is computed by torch, as the torch path computes it, and the log of
    that std (not ``log_std`` itself) enters the log-probability, as ``Normal`` takes it.
    """

    def __init__(self, log_std: torch.Tensor) -> None:
        std = log_std.detach().exp()  # (..., action_dim); detached: no graph, without no_grad()'s cost
        self.std = std.numpy()
        self.log_std = std.log().numpy()
        # log N(a; m, s) summed over dimensions = -(a - m)^2 . 1/(2 s^2) - (sum log s + d log sqrt(2 pi))
        self.half_precision = (np.float32(1.0) / (2 * self.std**2)).astype(np.float32, copy=False)  # (..., action_dim)
        self.log_normalizer = (self.log_std + np.float32(LOG_SQRT_2PI)).sum(-1, dtype=np.float32)  # (...)
