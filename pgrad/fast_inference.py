"""Rollout inference of the MLP policy in numpy: the collector's fast path.

A rollout acts on one tiny batch (``n_envs`` observations) per env step. For a 2x64 MLP the
arithmetic takes a few microseconds; torch spends most of a step in per-op dispatch, autograd
bookkeeping and ``torch.distributions`` objects (benchmarks/speed.py --profile: ``policy.act``
173 us/step, the observation normaliser 99 us/step on HalfCheetah-v5 before this module). Numpy on
views of the same parameters does the same maths with far less overhead per op.

What stays exactly as in the torch path (:meth:`ActorCriticPolicy.normalize` and
:meth:`ActorCriticPolicy.act`), so a rollout differs from the plain one only by float32 rounding
of the matrix products (tested in tests/unit/test_fast_inference.py):

* the observation statistics are updated by the same numpy code on the same float32 inputs, and
  the normalisation is the same float32 elementwise arithmetic;
* random numbers come from torch's global generator in the same order and amount: a Gaussian
  sample is ``loc + std * torch.randn(...)``, which is what ``torch.normal(loc, std)`` computes,
  and a categorical sample is ``torch.multinomial(probs, 1, True)``, as in ``Categorical.sample``;
* the state-independent standard deviation is ``exp(log_std)`` computed by torch.

Supported: :class:`ActorCriticPolicy` itself (not subclasses, which may act differently), Box
observations, Linear/Tanh/ReLU bodies, a categorical head or a Gaussian head with a
state-independent std. Anything else uses the torch path (:meth:`NumpyActorCritic.supports`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import CategoricalHead, DiagGaussianHead
from pgrad.policy import ActorCriticPolicy

_ACTIVATIONS = {nn.Tanh: np.tanh, nn.ReLU: lambda x: np.maximum(x, np.float32(0.0))}
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant torch's Normal.log_prob subtracts


def _layers(sequential: nn.Sequential) -> list | None:
    """``[(weight.T, bias) or activation function, ...]`` as numpy views, None if unsupported."""
    if not isinstance(sequential, nn.Sequential):
        return None
    layers: list = []
    for module in sequential:
        if isinstance(module, nn.Linear):
            # Views share memory with the parameters, so in-place optimiser steps show through.
            layers.append((module.weight.detach().numpy().T, module.bias.detach().numpy()))
        elif type(module) in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[type(module)])
        else:
            return None
    return layers


def _forward(layers: list, x: np.ndarray) -> np.ndarray:
    for layer in layers:
        if isinstance(layer, tuple):
            weight_t, bias = layer
            x = x @ weight_t + bias
        else:
            x = layer(x)
    return x


class NumpyActorCritic:
    """Numpy twin of an :class:`ActorCriticPolicy` for sampling actions during rollouts."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        if not self.supports(policy):
            raise ValueError("this policy has no numpy fast path; check NumpyActorCritic.supports first")
        self.policy = policy
        self.refresh()

    @staticmethod
    def supports(policy: ActorCriticPolicy) -> bool:
        """True when every part of ``policy`` has a numpy equivalent here."""
        head = policy.head
        head_ok = isinstance(head, CategoricalHead) or (isinstance(head, DiagGaussianHead) and not head.std.state_dependent)
        return (
            type(policy) is ActorCriticPolicy
            # a method replaced on the instance (tests script policies that way) must be obeyed
            and not any(name in vars(policy) for name in ("act", "normalize", "distribution", "value", "obs_to_tensor"))
            and isinstance(policy.observation_space, spaces.Box)
            and head_ok
            and _layers(policy.actor_body) is not None
            and (policy.critic is None or _layers(policy.critic) is not None)
        )

    def refresh(self) -> None:
        """Re-read parameters and the std; call whenever the policy's weights may have changed."""
        policy = self.policy
        self.obs_size = policy.obs_size
        normalizer = policy.obs_normalizer
        # Views of the statistics buffers (updated in place), looked up once rather than through
        # nn.Module.__getattr__ every step.
        self.stats = normalizer.stats if normalizer is not None else None
        if normalizer is not None:
            self.stats_mean, self.stats_var = normalizer.stats.mean.numpy(), normalizer.stats.var.numpy()
            self.eps, self.clip = normalizer.eps, np.float32(normalizer.clip)
        self.actor = _layers(policy.actor_body)
        self.critic = _layers(policy.critic) if policy.critic is not None else None
        head = policy.head
        if isinstance(head, CategoricalHead):
            self.head = [(head.logits.weight.detach().numpy().T, head.logits.bias.detach().numpy())]
        else:
            self.head = [(head.mean.weight.detach().numpy().T, head.mean.bias.detach().numpy())]
        self.read_std()

    def read_std(self) -> None:
        """Recompute the Gaussian std from the current ``log_std`` (not a view: it is computed)."""
        head = self.policy.head
        if isinstance(head, CategoricalHead):
            self.std = None
            return
        with torch.no_grad():
            std = head.std.log_std.exp()  # (action_dim,) by torch, as in the plain path
        self.std = std.numpy()
        self.log_std = std.log().numpy()  # Normal.log_prob takes log(scale), not log_std itself

    def normalize(self, raw_obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Float32 ``(B, obs_size)`` normalised observations (same maths as ``policy.normalize``)."""
        obs = np.asarray(raw_obs, dtype=np.float32).reshape(-1, self.obs_size)
        if self.stats is None:
            return obs
        if update:
            self.stats.update(obs)
        mean = self.stats_mean.astype(np.float32)
        std = np.sqrt(self.stats_var + self.eps).astype(np.float32)
        return np.minimum(np.maximum((obs - mean) / std, -self.clip), self.clip)  # np.clip's wrapper costs more

    def value(self, obs: np.ndarray) -> np.ndarray:
        """State values ``(B,)`` for normalised observations (the policy must have a critic)."""
        return _forward(self.critic, obs)[:, 0]

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy's raw action: the argmax of the logits, or the Gaussian's mean."""
        out = _forward(self.head, _forward(self.actor, obs))  # (B, n_actions) or (B, action_dim)
        return out.argmax(axis=-1) if self.std is None else out

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample raw actions for normalised observations; ``(action, log_prob, value)`` as numpy."""
        out = _forward(self.head, _forward(self.actor, obs))  # (B, n_actions) logits or (B, action_dim) mean
        if self.std is None:
            # log-softmax as Categorical(logits=...) normalises its logits
            shifted = out - out.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (B, n_actions)
            probs = np.exp(log_p)
            action = torch.multinomial(torch.from_numpy(probs), 1, True).numpy()[:, 0]  # (B,) int64
            log_prob = np.take_along_axis(log_p, action[:, None], axis=-1)[:, 0]  # (B,)
        else:
            noise = torch.randn(out.shape).numpy()  # (B, action_dim) from torch's generator
            action = out + self.std * noise
            log_prob = (-((action - out) ** 2) / (2 * self.std**2) - self.log_std - np.float32(_LOG_SQRT_2PI)).sum(-1)
        value = self.value(obs) if self.critic is not None else None  # (B,)
        return action, log_prob, value
