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

For rollouts (``fused=True``) the actor and the critic run as one network: the first layers'
weights stacked, the later ones block-diagonal, so each env step costs three matrix products
instead of six. The fused weights are copies, rebuilt by :meth:`NumpyActorCritic.refresh`, which the
collector calls before every rollout; the unfused twin (``predict``) reads views and needs none.

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


def _supported(sequential: nn.Module) -> bool:
    """Whether :func:`_layers` can read ``sequential``, without building its views (a check that
    runs before every rollout)."""
    return isinstance(sequential, nn.Sequential) and all(
        isinstance(module, nn.Linear) or type(module) in _ACTIVATIONS for module in sequential
    )


def _fuse(actor: list, critic: list) -> list | None:
    """One network computing ``[actor(x), critic(x)]`` side by side, None if their shapes differ.

    Layers are ``(weight_t (..., in, out), bias (..., out))`` or an activation function; any
    leading axes (a seed axis, pgrad/batched_rollout.py) are carried through. Layer 1 stacks both
    weight matrices (both read the observation); every later layer is block-diagonal, so the two
    halves never mix. Exact zeros add nothing, so each output is the same sum of products as in
    its own network (up to the order BLAS sums them in).
    """
    if len(actor) != len(critic):
        return None
    fused: list = []
    for index, (a, c) in enumerate(zip(actor, critic)):
        if isinstance(a, tuple) != isinstance(c, tuple) or (not isinstance(a, tuple) and a is not c):
            return None
        if not isinstance(a, tuple):
            fused.append(a)
            continue
        (a_weight_t, a_bias), (c_weight_t, c_bias) = a, c
        if index == 0:
            weight_t = np.concatenate([a_weight_t, c_weight_t], axis=-1)  # (..., in, out_a + out_c)
        else:
            (a_in, a_out), (c_in, c_out) = a_weight_t.shape[-2:], c_weight_t.shape[-2:]
            weight_t = np.zeros((*a_weight_t.shape[:-2], a_in + c_in, a_out + c_out), dtype=np.float32)
            weight_t[..., :a_in, :a_out] = a_weight_t
            weight_t[..., a_in:, a_out:] = c_weight_t
        fused.append((weight_t, np.concatenate([a_bias, c_bias], axis=-1)))
    return fused


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

    def __init__(self, policy: ActorCriticPolicy, fused: bool = False) -> None:
        """``fused``: run actor and critic as one network in :meth:`act` (copied weights: call
        :meth:`refresh` after every change of the policy's weights)."""
        if not self.supports(policy):
            raise ValueError("this policy has no numpy fast path; check NumpyActorCritic.supports first")
        self.policy = policy
        self.fused_requested = fused
        self._noise: torch.Tensor | None = None  # preallocated Gaussian noise, see act()
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
            and _supported(policy.actor_body)
            and (policy.critic is None or _supported(policy.critic))
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
        self.fused = _fuse(self.actor + self.head, self.critic) if self.fused_requested and self.critic is not None else None
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
        # log N(a; m, s) summed over dimensions = -(a - m)^2 . 1/(2 s^2) - (sum log s + d log sqrt(2 pi))
        self.half_precision = (np.float32(1.0) / (2 * self.std**2)).astype(np.float32)  # (action_dim,)
        self.log_normalizer = np.float32((self.log_std + np.float32(_LOG_SQRT_2PI)).sum())

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
        """State values ``(B,)`` for normalised observations (the policy must have a critic).

        Fused, through the same network as :meth:`act`, so that a bootstrap V(s') and the V(s) a
        rollout stored are one computation (one-step actor-critic's TD error subtracts them)."""
        if self.fused is not None:
            return _forward(self.fused, obs)[:, -1]
        return _forward(self.critic, obs)[:, 0]

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy's raw action: the argmax of the logits, or the Gaussian's mean."""
        out = _forward(self.head, _forward(self.actor, obs))  # (B, n_actions) or (B, action_dim)
        return out.argmax(axis=-1) if self.std is None else out

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample raw actions for normalised observations; ``(action, log_prob, value)`` as numpy."""
        if self.fused is not None:
            both = _forward(self.fused, obs)  # (B, n_out + 1): the actor's outputs, then V
            out, value = both[:, :-1], both[:, -1]
        else:
            out = _forward(self.head, _forward(self.actor, obs))  # (B, n_actions) logits or (B, action_dim) mean
            value = self.value(obs) if self.critic is not None else None  # (B,)
        if self.std is None:
            # log-softmax as Categorical(logits=...) normalises its logits
            shifted = out - out.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (B, n_actions)
            probs = np.exp(log_p)
            action = torch.multinomial(torch.from_numpy(probs), 1, True).numpy()[:, 0]  # (B,) int64
            log_prob = np.take_along_axis(log_p, action[:, None], axis=-1)[:, 0]  # (B,)
        else:
            # normal_ on a kept tensor draws what torch.randn(shape) would, without allocating (~8x cheaper)
            if self._noise is None or self._noise_np.shape != out.shape:
                self._noise = torch.empty(out.shape)
                self._noise_np = self._noise.numpy()  # a view, refilled in place below
            self._noise.normal_()
            noise = self._noise_np  # (B, action_dim) from torch's generator
            action = out + self.std * noise
            deviation = action - out
            log_prob = -((deviation * deviation) @ self.half_precision) - self.log_normalizer  # (B,)
        return action, log_prob, value
