"""PPO's and A2C's minibatch loss and its gradient, written out in numpy: the update's fast path.

One PPO minibatch step for the paper's 2x64 networks (batch 64) is a few MFLOP of arithmetic; in
torch most of its time goes to autograd's ``run_backward``, per-op dispatch and
``torch.distributions`` objects (BENCHMARKS.md, "Speed", has the profile). The networks are a
handful of dense layers, so their backward pass is a handful of matrix products
(:func:`pgrad.numpy_twin.layers.backward`) that numpy runs with far less overhead per call.

:class:`NumpyPolicyGradient` computes the loss of :meth:`pgrad.algos.ppo.PPO.train_iteration`

    L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) + vf_coef * 0.5 mean(e) - ent_coef * mean(H)

(``e`` the squared value error, clipped or not), or with ``clip_coef=None`` A2C's vanilla
surrogate ``-mean(A log pi)``, and its gradient; writes the gradient into the parameters' ``.grad``
tensors (slices of one flat buffer) and clips its global norm as ``torch.nn.utils.clip_grad_norm_``
does. The optimiser step that follows is :mod:`pgrad.numpy_twin.optim`'s Adam or RMSprop on the
same flat buffer where the optimiser allows, else torch's own. Where torch's backward has a
convention of its own, it is followed: ``torch.min`` / ``torch.max`` send half the gradient to
each argument on a tie, and ``clamp`` passes the gradient where its input lies inside the closed
interval. The result equals autograd's up to float32 rounding (tests/unit/test_fast_update.py).

Covered: what :func:`pgrad.numpy_twin.policy.unsupported_reason` covers, with a critic. The same
code serves the seed-batched model (pass a :class:`pgrad.batched.SeedBatchedActorCritic`): every
array then carries a leading seed axis (weights ``(S, out, in)``, minibatches ``(S, B, ...)``),
matrix products are batched over it, reductions run over each seed's own minibatch and the norm
clip is per seed, so slice ``[s]`` of every gradient is exactly seed ``s``'s own. Written with
``...`` and negative axes, each line reads the same for one seed and for many. Where numba is
installed, a seed-batched step is instead the lone policy's compiled call once per seed, on the
seed's slices (:func:`_seed_steps`): each seed's gradient is then its lone run's to the bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pgrad.batched import SeedBatchedActorCritic
from pgrad.distributions import CategoricalHead, DiagGaussianHead
from pgrad.losses import normalize_advantages
from pgrad.numpy_twin.actions import HALF_LOG_2PI, LOG_SQRT_2PI, log_softmax, take_log_prob
from pgrad.numpy_twin.layers import (
    all_parameters,
    backward,
    dense_with_activations,
    forward_keeping_outputs,
    is_supported_module,
    read_network,
)
from pgrad.numpy_twin.policy import compiled_kernels, unsupported_reason
from pgrad.policy import ActorCriticPolicy


def policy_unsupported_reason(policy: ActorCriticPolicy) -> str | None:
    """Why :class:`NumpyPolicyGradient` cannot train ``policy`` (one line), or None."""
    if policy.critic is None:
        return "a policy without a critic"
    return unsupported_reason(policy)


def seed_batched_unsupported_reason(model: SeedBatchedActorCritic) -> str | None:
    """Why the numpy twin cannot run a seed-batched model (one line), or None: it needs
    Linear/Tanh/ReLU layers and a categorical head or a Gaussian one with a state-independent std."""
    if not all(is_supported_module(layer) for layer in [*model.actor_body.layers, *model.critic.layers]):
        return "a layer other than Linear, Tanh or ReLU"
    if model.head_kind is CategoricalHead or (model.head_kind is DiagGaussianHead and not model.state_dependent_std):
        return None
    return f"the action head {model.head_kind.__name__} (covered: categorical, Gaussian with a state-independent std)"


class NumpyPolicyGradient:
    """PPO's or A2C's minibatch loss and its gradient for an :class:`ActorCriticPolicy`, in numpy.

    The gradient lands in one flat float32 buffer whose slices are the parameters' ``.grad``
    tensors, so the global norm and the clipping are one operation each.
    """

    def __init__(self, policy: ActorCriticPolicy | SeedBatchedActorCritic) -> None:
        """``policy``: an :class:`ActorCriticPolicy` (check :meth:`supports`) or a seed-batched model
        (check :meth:`supports_seed_batched`)."""
        batched = isinstance(policy, SeedBatchedActorCritic)
        if not (self.supports_seed_batched(policy) if batched else self.supports(policy)):
            raise ValueError("this policy has no numpy gradient; check NumpyPolicyGradient.supports first")
        self.policy = policy
        self.n_seeds = policy.n_seeds if batched else None
        self._ones = np.ones(0, dtype=np.float32)
        self.parameters = list(policy.parameters())
        self.flat_grad = np.zeros(sum(p.numel() for p in self.parameters), dtype=np.float32)
        self.grad_tensors: list[torch.Tensor] = []
        self.slices: list[slice] = []  # each parameter's part of the flat buffer, in order
        grads: dict[nn.Parameter, np.ndarray] = {}
        offset = 0
        for parameter in self.parameters:
            self.slices.append(slice(offset, offset + parameter.numel()))
            view = self.flat_grad[self.slices[-1]].reshape(parameter.shape)
            grads[parameter] = view
            self.grad_tensors.append(torch.from_numpy(view))
            offset += parameter.numel()
        if batched:
            self.discrete = policy.head_kind is CategoricalHead
            actor = list(policy.actor_body.layers) + [policy.head_linear]
            critic = list(policy.critic.layers)
            log_std = None if self.discrete else policy.log_std
        else:
            head = policy.head
            self.discrete = isinstance(head, CategoricalHead)
            actor = list(policy.actor_body) + [head.logits if self.discrete else head.loc]
            critic = list(policy.critic)
            log_std = None if self.discrete else head.std.log_std
        self.actor = read_network(actor, grads)
        self.critic = read_network(critic, grads)
        # each parameter's gradient as (S, n): row s is seed s's part, for the per-seed norm
        self.seed_rows = [] if self.n_seeds is None else [g.reshape(self.n_seeds, -1) for g in grads.values()]
        if log_std is not None:
            self.log_std = log_std.detach().numpy()  # (..., action_dim), a view: sees every optimiser step
            self.log_std_grad = grads[log_std]
        # one policy's step_gradient in one compiled call, where numba is installed
        # (pgrad/numpy_twin/compiled.py); a seed-batched model's as one such call per seed
        self.kernels = compiled_kernels()
        self.compiled = self.seed_steps = None
        if self.kernels is not None and not batched:
            self.compiled = (_compiled_layers(self.actor), _compiled_layers(self.critic))
            if None in self.compiled:
                self.compiled = None
        elif self.kernels is not None:
            self.seed_steps = _seed_steps(
                self.actor, self.critic, *((self.log_std, self.log_std_grad) if log_std is not None else (None, None))
            )

    @classmethod
    def reuse_or_build(
        cls, policy: ActorCriticPolicy | SeedBatchedActorCritic, cached: NumpyPolicyGradient | None
    ) -> NumpyPolicyGradient:
        """``cached`` if it was built over ``policy``'s current parameter tensors, else a new one
        (loading a checkpoint or a user can replace the policy or a part of it between updates).
        ``cached`` holds its parameters, so their ids cannot be reused by other tensors meanwhile."""
        if (
            cached is not None
            and cached.policy is policy
            and len(cached.parameters) == len(current := all_parameters(policy))
            and all(a is b for a, b in zip(cached.parameters, current))
        ):
            return cached
        return cls(policy)

    @staticmethod
    def supports(policy: ActorCriticPolicy) -> bool:
        """True when :func:`policy_unsupported_reason` finds nothing."""
        return policy_unsupported_reason(policy) is None

    @staticmethod
    def supports_seed_batched(model: SeedBatchedActorCritic) -> bool:
        """True when :func:`seed_batched_unsupported_reason` finds nothing."""
        return seed_batched_unsupported_reason(model) is None

    def run_start(self, parameters: Sequence[torch.Tensor]) -> int | None:
        """The index where ``parameters`` start among this gradient's, if they are a contiguous
        run of them in order (one network's, as a separate optimiser holds them); else None."""
        first = next((index for index, p in enumerate(self.parameters) if parameters and p is parameters[0]), None)
        if first is None or first + len(parameters) > len(self.parameters):
            return None
        return first if all(a is b for a, b in zip(parameters, self.parameters[first:])) else None

    def flat_part(self, parameters: Sequence[torch.Tensor]) -> np.ndarray:
        """The view of the flat gradient holding ``parameters`` (a run, see :meth:`run_start`)."""
        first = self.run_start(parameters)
        if first is None:
            raise ValueError("the parameters are not a contiguous run of the gradient's")
        return self.flat_grad[self.slices[first].start : self.slices[first + len(parameters) - 1].stop]

    def bind(self) -> None:
        """Make the flat buffer's slices the parameters' ``.grad`` (after anything reset them)."""
        for parameter, grad in zip(self.parameters, self.grad_tensors):
            if parameter.grad is not grad:
                parameter.grad = grad

    def normalized_advantages(self, advantages: np.ndarray) -> np.ndarray:
        """:func:`pgrad.losses.normalize_advantages` of a minibatch's advantages: compiled for
        float32 ``(B,)`` (one policy) or ``(S, B)`` (each seed's row on its own) where numba is
        installed (the same numbers to the bit)."""
        if self.kernels is None or advantages.dtype != np.float32 or advantages.ndim > 2:
            return normalize_advantages(advantages)
        if advantages.ndim == 1:
            return self.kernels.normalize_advantages(advantages)
        return np.stack([self.kernels.normalize_advantages(np.ascontiguousarray(row)) for row in advantages])

    def step_gradient(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        old_log_probs: np.ndarray | None,
        old_values: np.ndarray | None,
        advantages: np.ndarray,
        returns: np.ndarray,
        *,
        clip_coef: float | None,
        vf_clip_coef: float | None,
        vf_coef: float,
        ent_coef: float,
        max_grad_norm: float | None,
        rows: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Write the clipped gradient of PPO's loss on one minibatch into ``.grad``; return the metrics
        the plain path logs (``policy_loss``, ``approx_kl``, ``clip_fraction``, ``value_loss``,
        ``entropy``, ``grad_norm`` unless ``max_grad_norm`` is None (no clipping here) and, for a
        Gaussian, ``action_std``): floats for one policy,
        ``(S,)`` arrays for a seed-batched model. ``clip_coef=None``: A2C's vanilla surrogate
        ``-mean(A log pi)`` instead (``old_log_probs`` unused; no ``approx_kl``, ``clip_fraction``).

        Shapes: ``obs (..., B, obs_size)`` normalised, ``actions (..., B, action_dim)`` float32 or
        ``(..., B)`` int64, the rest ``(..., B)`` float32, with ``...`` the seed axis of a
        seed-batched model; ``advantages`` already normalised if the caller wants it.

        ``rows`` ``(S, B)`` bool, seed-batched only: which rows of each seed's minibatch are real,
        when the seeds' minibatches differ in size (next-step autoreset gives each seed its own
        number of transitions) and were padded to one size, the padding after each seed's real
        rows. Every mean is then over a seed's real rows, and padding rows add nothing to any
        gradient.
        """
        if self.compiled is not None and rows is None:
            return self._compiled_step(
                obs, actions, old_log_probs, old_values, advantages, returns, clip_coef, vf_clip_coef, vf_coef,
                ent_coef, max_grad_norm,
            )  # fmt: skip
        if self.seed_steps is not None:
            return self._compiled_seed_steps(
                obs, actions, old_log_probs, old_values, advantages, returns, clip_coef, vf_clip_coef, vf_coef,
                ent_coef, max_grad_norm, rows,
            )  # fmt: skip
        batch = obs.shape[-2]
        if self._ones.shape[0] != batch:
            self._ones = np.ones(batch, dtype=np.float32)
        ones = self._ones
        single = self.n_seeds is None
        if rows is None:
            inv_batch = np.float32(1.0 / batch)  # each row's weight in a mean
            inv_batch_rows = inv_batch

            def mean(x: np.ndarray) -> Any:
                """Mean over the minibatch axis: a BLAS product, ~4x cheaper than ndarray.mean here."""
                total = x @ ones
                return float(total) / batch if single else total / np.float32(batch)
        else:
            real = rows.astype(np.float32)  # (S, B)
            counts = np.maximum(real @ ones, np.float32(1.0))  # (S,) real rows per seed
            inv_batch = real * (np.float32(1.0) / counts)[:, None]  # (S, B): 1/count on real rows, 0 on padding
            inv_batch_rows = inv_batch[..., None]

            def mean(x: np.ndarray) -> Any:
                """Mean over each seed's real rows."""
                return (x * real) @ ones / counts

        actor_outputs = forward_keeping_outputs(self.actor, obs)
        out = actor_outputs[-1]  # (..., B, n_actions) logits or (..., B, action_dim) means

        # log pi(a|s) and the entropy, as torch.distributions computes them
        if self.discrete:
            log_p = log_softmax(out)  # (..., B, n_actions)
            probs = np.exp(log_p)
            log_probs = take_log_prob(log_p, actions)  # (..., B)
            entropy = -(log_p * probs).sum(axis=-1)  # (..., B)
            entropy_mean = mean(entropy)
        else:
            scale = np.exp(self.log_std)  # (..., action_dim)
            log_scale = np.log(scale)  # Normal takes log(scale), not log_std itself
            variance = scale * scale
            diff = actions - out  # (..., B, action_dim)
            half_precision = (np.float32(0.5) / variance)[..., None, :]  # (..., 1, action_dim)
            log_probs = (-(diff * diff) * half_precision - log_scale[..., None, :] - np.float32(LOG_SQRT_2PI)).sum(
                axis=-1
            )  # (..., B)
            entropy_total = (np.float32(0.5 + HALF_LOG_2PI) + log_scale).sum(axis=-1)  # the same for every state
            entropy_mean = float(entropy_total) if single else entropy_total

        if clip_coef is None:
            # the score-function surrogate -mean(A log pi) (Williams 1992; A3C's policy term)
            policy_loss = -mean(advantages * log_probs)
            grad_log_probs = -advantages * inv_batch  # dL/d log pi, (..., B)
        else:
            # clipped surrogate (Schulman et al. 2017, eq. 7) and its derivative in log pi
            log_ratio = log_probs - old_log_probs
            ratio = np.exp(log_ratio)  # (..., B)
            low, high = np.float32(1.0 - clip_coef), np.float32(1.0 + clip_coef)
            unclipped = ratio * advantages
            clipped = np.minimum(np.maximum(ratio, low), high) * advantages
            policy_loss = -mean(np.minimum(unclipped, clipped))
            # d min / d ratio: torch.min sends the gradient to the smaller term, half to each on a tie
            # (inside [low, high] the terms tie exactly), and clamp passes it only inside the range
            to_unclipped = (unclipped < clipped) + np.float32(0.5) * (unclipped == clipped)
            inside = (ratio >= low) & (ratio <= high)
            d_objective = advantages * (to_unclipped + (np.float32(1.0) - to_unclipped) * inside)
            grad_log_probs = -(d_objective * ratio) * inv_batch  # dL/d log pi, (..., B)

        # value loss, 0.5 mean((V - R)^2), optionally PPO2-clipped around the old values
        critic_outputs = forward_keeping_outputs(self.critic, obs)
        values = critic_outputs[-1][..., 0]  # (..., B)
        error = values - returns
        squared_error = error * error
        d_squared_error = 2 * error
        if vf_clip_coef is not None:
            delta = values - old_values
            clipped_error = old_values + np.minimum(np.maximum(delta, -vf_clip_coef), vf_clip_coef) - returns
            squared_clipped = clipped_error * clipped_error
            to_unclipped_v = (squared_error > squared_clipped) + np.float32(0.5) * (squared_error == squared_clipped)
            inside_v = (delta >= -vf_clip_coef) & (delta <= vf_clip_coef)
            d_squared_error = to_unclipped_v * d_squared_error + (np.float32(1.0) - to_unclipped_v) * inside_v * (
                2 * clipped_error
            )
            squared_error = np.maximum(squared_error, squared_clipped)
        grad_values = (np.float32(vf_coef * 0.5) * inv_batch) * d_squared_error  # (..., B)

        # the actor's output gradient
        if self.discrete:
            one_hot = np.zeros_like(probs)
            np.put_along_axis(one_hot, actions[..., None], 1.0, axis=-1)
            grad_out = grad_log_probs[..., None] * (one_hot - probs)  # d log p_a / d logits = onehot - p
            if ent_coef:
                # dH/dlogits = -p (log p + H); the loss has -ent_coef * mean(H)
                grad_out += (np.float32(ent_coef) * inv_batch_rows) * probs * (log_p + entropy[..., None])
        else:
            inv_variance = (np.float32(1.0) / variance)[..., None, :]  # (..., 1, action_dim)
            grad_out = grad_log_probs[..., None] * diff * inv_variance  # d log p / d mean = (a - mean) / var
            # d log p / d log_std = (a - mean)^2 / var - 1, summed over the batch; d mean(H) / d log_std = 1
            score = diff * diff * inv_variance - np.float32(1.0)  # (..., B, action_dim)
            self.log_std_grad[...] = (grad_log_probs[..., None, :] @ score)[..., 0, :] - np.float32(ent_coef)
        backward(self.actor, actor_outputs, grad_out.astype(np.float32, copy=False), ones)
        backward(self.critic, critic_outputs, grad_values[..., None].astype(np.float32, copy=False), ones)

        # global norm clipping as torch.nn.utils.clip_grad_norm_ (it always multiplies), per seed;
        # None: the caller clips (or not) itself, and no norm is computed
        if max_grad_norm is None:
            grad_norm = None
        elif single:
            grad_norm = float(np.sqrt(np.dot(self.flat_grad, self.flat_grad)))
            self.flat_grad *= np.float32(min(max_grad_norm / (grad_norm + 1e-6), 1.0))
        else:
            squares = sum(np.einsum("ij,ij->i", g, g) for g in self.seed_rows)  # (S,)
            grad_norm = np.sqrt(squares)
            scale_by = np.minimum(np.float32(max_grad_norm) / (grad_norm + np.float32(1e-6)), np.float32(1.0))
            for g in self.seed_rows:
                g *= scale_by[:, None]

        metrics = {"policy_loss": policy_loss}
        if clip_coef is not None:
            metrics["approx_kl"] = mean((ratio - np.float32(1.0)) - log_ratio)
            metrics["clip_fraction"] = mean((np.abs(ratio - np.float32(1.0)) > clip_coef).astype(np.float32))
        metrics.update({"value_loss": 0.5 * mean(squared_error), "entropy": entropy_mean})
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        if not self.discrete:
            action_std = scale.mean(axis=-1)
            metrics["action_std"] = float(action_std) if single else action_std
        return metrics

    def _compiled_step(
        self, obs, actions, old_log_probs, old_values, advantages, returns, clip_coef, vf_clip_coef, vf_coef,
        ent_coef, max_grad_norm,
    ) -> dict[str, Any]:  # fmt: skip
        """:meth:`step_gradient` for one policy through the compiled kernels: the same formulas,
        the products through the same BLAS, float32 rounding apart (tests/unit/test_fast_update.py)."""
        log_std = (None, None) if self.discrete else (self.log_std, self.log_std_grad)
        numbers = self._compiled_call(
            self.compiled, *log_std, self.flat_grad, obs, actions, old_log_probs, old_values, advantages, returns,
            clip_coef, vf_clip_coef, vf_coef, ent_coef, max_grad_norm,
        )  # fmt: skip
        return self._compiled_metrics(numbers, clip_coef, max_grad_norm)

    def _compiled_seed_steps(
        self, obs, actions, old_log_probs, old_values, advantages, returns, clip_coef, vf_clip_coef, vf_coef,
        ent_coef, max_grad_norm, rows,
    ) -> dict[str, Any]:  # fmt: skip
        """:meth:`step_gradient` for a seed-batched model: seed by seed, the compiled call that seed's
        lone run makes (:meth:`_compiled_step`), on its slices of the weights and the minibatch (its
        real rows only, with ``rows``) and into a flat gradient laid out as its lone run's, so that
        the global norm and the clip are its lone run's to the bit; then copied into slice ``[s]``
        of the stacked gradient."""
        counts = [None] * len(self.seed_steps) if rows is None else rows.sum(axis=1)
        if rows is not None and not all(n >= 1 and rows[s, :n].all() for s, n in enumerate(counts)):
            raise ValueError("rows: each seed's minibatch needs its real rows first, at least one")
        per_seed = []
        for s, (network, log_std, log_std_grad, seed_flat, copies) in enumerate(self.seed_steps):
            real = slice(None, counts[s])  # padding follows a seed's real rows
            numbers = self._compiled_call(
                network, log_std, log_std_grad, seed_flat, obs[s, real], actions[s, real],
                None if old_log_probs is None else old_log_probs[s, real],
                None if old_values is None else old_values[s, real], advantages[s, real], returns[s, real],
                clip_coef, vf_clip_coef, vf_coef, ent_coef, max_grad_norm,
            )  # fmt: skip
            for source, target in copies:
                target[...] = source
            per_seed.append(self._compiled_metrics(numbers, clip_coef, max_grad_norm))
        return {key: np.array([metrics[key] for metrics in per_seed]) for key in per_seed[0]}

    def _compiled_call(
        self, network, log_std, log_std_grad, flat_grad, obs, actions, old_log_probs, old_values, advantages,
        returns, clip_coef, vf_clip_coef, vf_coef, ent_coef, max_grad_norm,
    ) -> tuple:  # fmt: skip
        """One policy's compiled gradient (``network``: its actor and critic as :func:`_compiled_layers`
        reads them; ``flat_grad``: the buffer their gradient views and ``log_std_grad`` share); the
        kernel's numbers."""
        contiguous = np.ascontiguousarray
        settings = (
            0.0 if clip_coef is None else float(clip_coef),
            clip_coef is not None,
            0.0 if vf_clip_coef is None else float(vf_clip_coef),
            vf_clip_coef is not None,
            float(vf_coef),
            float(ent_coef),
            0.0 if max_grad_norm is None else float(max_grad_norm),
            max_grad_norm is not None,
        )
        batch = (
            contiguous(obs, dtype=np.float32),
            contiguous(actions),
            contiguous(old_log_probs if old_log_probs is not None else advantages, dtype=np.float32),
            contiguous(old_values if old_values is not None else returns, dtype=np.float32),
            contiguous(advantages, dtype=np.float32),
            contiguous(returns, dtype=np.float32),
        )
        actor, critic = network
        if self.discrete:
            return self.kernels.gradient_categorical(*batch, actor, critic, flat_grad, *settings)
        return self.kernels.gradient_gaussian(*batch, actor, critic, log_std, log_std_grad, flat_grad, *settings)

    def _compiled_metrics(self, numbers: tuple, clip_coef: float | None, max_grad_norm: float | None) -> dict[str, Any]:
        """The metrics :meth:`step_gradient` returns, from a compiled kernel's numbers."""
        policy_loss, approx_kl, clip_fraction, value_loss, entropy, grad_norm, action_std = map(float, numbers)
        metrics = {"policy_loss": policy_loss}
        if clip_coef is not None:
            metrics.update(approx_kl=approx_kl, clip_fraction=clip_fraction)
        metrics.update(value_loss=value_loss, entropy=entropy)
        if max_grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        if not self.discrete:
            metrics["action_std"] = action_std
        return metrics


def _seed_steps(actor: list, critic: list, log_std: np.ndarray | None, log_std_grad: np.ndarray | None) -> list | None:
    """For a seed-batched model's compiled gradient, per seed ``s``: ``(network, log_std,
    log_std_grad, flat, copies)``. ``network``: seed ``s``'s actor and critic as
    :func:`_compiled_layers` reads them, views of its weight slices, their gradients views of
    ``flat``, a buffer laid out as the seed's lone policy lays out its flat gradient (actor layers
    and head, then ``log_std``, then the critic: the order of ``ActorCriticPolicy.parameters()``);
    ``copies``: ``(part of flat, slice [s] of the stacked gradient)`` pairs. None unless every
    layer is dense with a bias."""
    actor_pairs, critic_pairs = dense_with_activations(actor), dense_with_activations(critic)
    if actor_pairs is None or critic_pairs is None or any(d.bias_row is None for d, _ in actor_pairs + critic_pairs):
        return None
    return [
        _seed_step(s, actor_pairs, critic_pairs, log_std, log_std_grad) for s in range(len(actor_pairs[0][0].weight))
    ]


def _seed_step(s: int, actor_pairs: list, critic_pairs: list, log_std, log_std_grad) -> tuple:
    """Seed ``s``'s entry of :func:`_seed_steps`."""
    targets = [part for dense, _ in actor_pairs for part in (dense.weight_grad[s], dense.bias_grad[s])]
    if log_std_grad is not None:
        targets.append(log_std_grad[s])
    targets += [part for dense, _ in critic_pairs for part in (dense.weight_grad[s], dense.bias_grad[s])]
    flat = np.zeros(sum(target.size for target in targets), dtype=np.float32)
    ends = np.cumsum([target.size for target in targets])
    views = [flat[end - target.size : end].reshape(target.shape) for end, target in zip(ends, targets)]
    copies = list(zip(views, targets))
    n_actor = 2 * len(actor_pairs)
    seed_log_std_grad = None if log_std_grad is None else views[n_actor]
    critic_views = views[n_actor + (log_std_grad is not None) :]

    def network(pairs: list, grads: list) -> tuple:
        return (
            tuple(dense.weight[s] for dense, _ in pairs),
            tuple(dense.bias_row[s, 0] for dense, _ in pairs),
            tuple(grads[0::2]),
            tuple(grads[1::2]),
            np.array([code for _, code in pairs], dtype=np.int64),
        )

    networks = (network(actor_pairs, views[:n_actor]), network(critic_pairs, critic_views))
    return networks, None if log_std is None else log_std[s], seed_log_std_grad, flat, copies


def _compiled_layers(layers: list) -> tuple | None:
    """A network as the compiled update reads it: ``(weights, biases, weight_grads, bias_grads,
    activations)``, views of the parameters and of their gradients; None unless it is dense layers
    with biases, each followed by at most one tanh or ReLU."""
    pairs = dense_with_activations(layers)
    if pairs is None or any(
        dense.bias_row is None or dense.weight_grad is None or not dense.weight.flags.c_contiguous for dense, _ in pairs
    ):
        return None
    return (
        tuple(dense.weight for dense, _ in pairs),
        tuple(dense.bias_row for dense, _ in pairs),
        tuple(dense.weight_grad for dense, _ in pairs),
        tuple(dense.bias_grad for dense, _ in pairs),
        np.array([code for _, code in pairs], dtype=np.int64),
    )


def explained_variance_np(predictions: np.ndarray, targets: np.ndarray) -> float:
    """:func:`pgrad.losses.explained_variance` on numpy arrays, ``1 - Var[t - p] / Var[t]`` (unbiased
    variances, in float64): NaN for fewer than two targets or targets all equal. A logged metric
    only, so float64 here against torch's float32 changes nothing but its last digits.

    Each variance is ``np.var(x, ddof=1)``'s own arithmetic (the mean by ``np.add.reduce``, then the
    sum of squared deviations), the same numbers without its wrapper, which costs more than the
    arithmetic at a one-step actor-critic's 8 values per update."""
    n = targets.size
    if n < 2:
        return float("nan")
    target = np.asarray(targets, dtype=np.float64).reshape(-1)
    target_var = _sample_variance(target)
    if target_var == 0.0:
        return float("nan")
    return 1.0 - _sample_variance(target - np.asarray(predictions).reshape(-1)) / target_var


def _sample_variance(x: np.ndarray) -> float:
    """``np.var(x, ddof=1)`` of a 1-D float64 array with at least two entries."""
    centred = x - np.add.reduce(x) / x.size
    return float(np.add.reduce(centred * centred)) / (x.size - 1)
