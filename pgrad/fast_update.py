"""PPO's (and A2C's) minibatch gradient written out by hand in numpy: the update's fast path.

One PPO minibatch step for the paper's 2x64 networks (batch 64) does about 4 MFLOP of
arithmetic, under 0.1 ms at this machine's BLAS speed; in torch it took ~1.5 ms, over a quarter of it in
autograd's ``run_backward`` alone (benchmarks/speed.py --profile cprofile: 405 us per minibatch)
and most of the rest in per-op dispatch and ``torch.distributions`` objects. The networks are a
handful of dense layers, so their backward pass is a handful of matrix products that numpy runs
with far less overhead per call.

:class:`NumpyPolicyGradient` computes the loss of :meth:`pgrad.algos.ppo.PPO.train_iteration`

    L = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) + vf_coef * 0.5 mean(e) - ent_coef * mean(H)

(``e`` the squared value error, clipped or not), or with ``clip_coef=None`` A2C's
(:meth:`pgrad.algos.a2c.A2C.train_iteration`, the vanilla surrogate ``-mean(A log pi)``), and its gradient, writes the gradient into the
parameters' ``.grad`` tensors, clips its global norm as ``torch.nn.utils.clip_grad_norm_`` does,
and leaves the optimiser step to the algorithm's own torch Adam, so optimiser state, learning-rate
schedules and checkpoints are exactly those of the plain path. Where torch's backward has a
convention of its own, it is followed: ``torch.min`` / ``torch.max`` send half the gradient to
each argument on a tie, and ``clamp`` passes the gradient where its input lies inside the closed
interval. The result equals autograd's up to float32 rounding (tests/unit/test_fast_update.py).

Supported: what :class:`pgrad.fast_inference.NumpyActorCritic` supports (plain
:class:`ActorCriticPolicy`, Linear/Tanh/ReLU bodies, categorical head or Gaussian head with a
state-independent std) with a critic. Anything else goes through autograd.

The same code serves the seed-batched model (pass a :class:`pgrad.batched.SeedBatchedActorCritic`
instead of a policy): every array then carries a leading seed axis
(weights ``(S, out, in)``, minibatches ``(S, B, ...)``), matrix products are batched over it,
reductions run over each seed's own minibatch and the norm clip is per seed, so slice ``[s]`` of
every gradient is exactly seed ``s``'s own. Written with ``...`` and negative axes, each line
reads the same for one seed and for many.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from pgrad.batched import SeedBatchedActorCritic, SeedBatchedLinear
from pgrad.distributions import CategoricalHead, DiagGaussianHead
from pgrad.fast_inference import NumpyActorCritic
from pgrad.policy import ActorCriticPolicy

# Normal entropy per dimension is 0.5 + 0.5 log(2 pi) + log(scale), as torch computes it.
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant torch's Normal.log_prob subtracts


class _Dense:
    """One linear layer seen as numpy views: weight ``(..., out, in)``, bias ``(..., out)``, their gradients."""

    def __init__(self, linear: nn.Linear | SeedBatchedLinear, grads: dict[nn.Parameter, np.ndarray]) -> None:
        self.weight = linear.weight.detach().numpy()  # (..., out, in), shares memory with the parameter
        self.bias = linear.bias.detach().numpy()  # (..., out)
        self.weight_t = np.swapaxes(self.weight, -1, -2)  # (..., in, out), a view
        self.bias_row = self.bias[..., None, :]  # (..., 1, out), broadcasts over the batch
        self.weight_grad = grads[linear.weight]
        self.bias_grad = grads[linear.bias]


def _network(modules: list[nn.Module], grads: dict[nn.Parameter, np.ndarray]) -> list:
    """The layers of an MLP (and head) as ``_Dense`` or ``"tanh"`` / ``"relu"``."""
    layers: list = []
    for module in modules:
        if isinstance(module, (nn.Linear, SeedBatchedLinear)):
            layers.append(_Dense(module, grads))
        elif isinstance(module, nn.Tanh):
            layers.append("tanh")
        elif isinstance(module, nn.ReLU):
            layers.append("relu")
        else:  # pragma: no cover - supports() rules this out
            raise ValueError(f"no numpy gradient for {type(module).__name__}")
    return layers


def _forward(layers: list, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output, the input first: ``[x, layer_1(x), ...]`` (kept for the backward pass)."""
    outputs = [x]
    for layer in layers:
        if layer == "tanh":
            x = np.tanh(x)
        elif layer == "relu":
            x = np.maximum(x, np.float32(0.0))
        else:
            x = x @ layer.weight_t + layer.bias_row
        outputs.append(x)
    return outputs


def _backward(layers: list, outputs: list[np.ndarray], grad: np.ndarray, ones: np.ndarray) -> None:
    """Backpropagate ``grad`` (of the last output) through ``layers``, writing parameter gradients.

    ``ones``: a ``(B,)`` vector of ones; ``ones @ grad`` sums over the batch in one BLAS call,
    several times cheaper than ``np.sum(axis=0)`` at these sizes."""
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        if layer == "tanh":
            out = outputs[index + 1]
            grad = grad * (np.float32(1.0) - out * out)  # tanh' = 1 - tanh^2, from the output as torch does
        elif layer == "relu":
            grad = grad * (outputs[index + 1] > 0)  # torch's threshold_backward: zero where the output is 0
        else:
            np.matmul(np.swapaxes(grad, -1, -2), outputs[index], out=layer.weight_grad)  # (..., out, in)
            np.matmul(ones, grad, out=layer.bias_grad)  # (..., out)
            if index > 0:  # the observation needs no gradient
                grad = grad @ layer.weight


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
            actor = list(policy.actor_body) + [head.logits if self.discrete else head.mean]
            critic = list(policy.critic)
            log_std = None if self.discrete else head.std.log_std
        self.actor = _network(actor, grads)
        self.critic = _network(critic, grads)
        # each parameter's gradient as (S, n): row s is seed s's part, for the per-seed norm
        self.seed_rows = [] if self.n_seeds is None else [g.reshape(self.n_seeds, -1) for g in grads.values()]
        if log_std is not None:
            self.log_std = log_std.detach().numpy()  # (..., action_dim), a view: sees every optimiser step
            self.log_std_grad = grads[log_std]

    @classmethod
    def reuse_or_build(cls, policy: ActorCriticPolicy | SeedBatchedActorCritic, cached: "NumpyPolicyGradient | None") -> "NumpyPolicyGradient":
        """``cached`` if it was built over ``policy``'s current parameter tensors, else a new one
        (loading a checkpoint or a user can replace the policy or a part of it between updates).
        ``cached`` holds its parameters, so their ids cannot be reused by other tensors meanwhile."""
        if cached is not None and cached.policy is policy and all(a is b for a, b in zip(cached.parameters, policy.parameters(), strict=True)):
            return cached
        return cls(policy)

    @staticmethod
    def supports(policy: ActorCriticPolicy) -> bool:
        """True when the policy is one :class:`NumpyActorCritic` runs and it has a critic."""
        return policy.critic is not None and NumpyActorCritic.supports(policy)

    @staticmethod
    def supports_seed_batched(model: SeedBatchedActorCritic) -> bool:
        """True for a seed-batched model of Linear/Tanh/ReLU layers with a categorical head or a
        Gaussian head whose std does not depend on the state."""
        layers = list(model.actor_body.layers) + list(model.critic.layers)
        return all(isinstance(layer, (SeedBatchedLinear, nn.Tanh, nn.ReLU)) for layer in layers) and (
            model.head_kind is CategoricalHead or (model.head_kind is DiagGaussianHead and not model.state_dependent_std)
        )

    def bind(self) -> None:
        """Make the flat buffer's slices the parameters' ``.grad`` (after anything reset them)."""
        for parameter, grad in zip(self.parameters, self.grad_tensors):
            if parameter.grad is not grad:
                parameter.grad = grad

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
        max_grad_norm: float,
    ) -> dict[str, Any]:
        """Write the clipped gradient of PPO's loss on one minibatch into ``.grad``; return the metrics
        the plain path logs (``policy_loss``, ``approx_kl``, ``clip_fraction``, ``value_loss``,
        ``entropy``, ``grad_norm`` and, for a Gaussian, ``action_std``): floats for one policy,
        ``(S,)`` arrays for a seed-batched model. ``clip_coef=None``: A2C's vanilla surrogate
        ``-mean(A log pi)`` instead (``old_log_probs`` unused; no ``approx_kl``, ``clip_fraction``).

        Shapes: ``obs (..., B, obs_size)`` normalised, ``actions (..., B, action_dim)`` float32 or
        ``(..., B)`` int64, the rest ``(..., B)`` float32, with ``...`` the seed axis of a
        seed-batched model; ``advantages`` already normalised if the caller wants it.
        """
        batch = obs.shape[-2]
        inv_batch = np.float32(1.0 / batch)
        if self._ones.shape[0] != batch:
            self._ones = np.ones(batch, dtype=np.float32)
        ones = self._ones
        single = self.n_seeds is None

        def mean(x: np.ndarray) -> Any:
            """Mean over the minibatch axis: a BLAS product, ~4x cheaper than ndarray.mean here."""
            total = x @ ones
            return float(total) / batch if single else total / np.float32(batch)

        actor_outputs = _forward(self.actor, obs)
        out = actor_outputs[-1]  # (..., B, n_actions) logits or (..., B, action_dim) means

        # log pi(a|s) and the entropy, as torch.distributions computes them
        if self.discrete:
            shifted = out - out.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., B, n_actions)
            probs = np.exp(log_p)
            log_probs = np.take_along_axis(log_p, actions[..., None], axis=-1)[..., 0]  # (..., B)
            entropy = -(log_p * probs).sum(axis=-1)  # (..., B)
            entropy_mean = mean(entropy)
        else:
            scale = np.exp(self.log_std)  # (..., action_dim)
            log_scale = np.log(scale)  # Normal takes log(scale), not log_std itself
            variance = scale * scale
            diff = actions - out  # (..., B, action_dim)
            half_precision = (np.float32(0.5) / variance)[..., None, :]  # (..., 1, action_dim)
            log_probs = (-(diff * diff) * half_precision - log_scale[..., None, :] - np.float32(_LOG_SQRT_2PI)).sum(axis=-1)  # (..., B)
            entropy_total = (np.float32(0.5 + _HALF_LOG_2PI) + log_scale).sum(axis=-1)  # the same for every state
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
        critic_outputs = _forward(self.critic, obs)
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
            d_squared_error = to_unclipped_v * d_squared_error + (np.float32(1.0) - to_unclipped_v) * inside_v * (2 * clipped_error)
            squared_error = np.maximum(squared_error, squared_clipped)
        grad_values = (np.float32(vf_coef * 0.5) * inv_batch) * d_squared_error  # (..., B)

        # the actor's output gradient
        if self.discrete:
            one_hot = np.zeros_like(probs)
            np.put_along_axis(one_hot, actions[..., None], 1.0, axis=-1)
            grad_out = grad_log_probs[..., None] * (one_hot - probs)  # d log p_a / d logits = onehot - p
            if ent_coef:
                # dH/dlogits = -p (log p + H); the loss has -ent_coef * mean(H)
                grad_out += (np.float32(ent_coef) * inv_batch) * probs * (log_p + entropy[..., None])
        else:
            inv_variance = (np.float32(1.0) / variance)[..., None, :]  # (..., 1, action_dim)
            grad_out = grad_log_probs[..., None] * diff * inv_variance  # d log p / d mean = (a - mean) / var
            # d log p / d log_std = (a - mean)^2 / var - 1, summed over the batch; d mean(H) / d log_std = 1
            score = diff * diff * inv_variance - np.float32(1.0)  # (..., B, action_dim)
            self.log_std_grad[...] = (grad_log_probs[..., None, :] @ score)[..., 0, :] - np.float32(ent_coef)
        _backward(self.actor, actor_outputs, grad_out.astype(np.float32, copy=False), ones)
        _backward(self.critic, critic_outputs, grad_values[..., None].astype(np.float32, copy=False), ones)

        # global norm clipping as torch.nn.utils.clip_grad_norm_ (it always multiplies), per seed
        if single:
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
        metrics.update({"value_loss": 0.5 * mean(squared_error), "entropy": entropy_mean, "grad_norm": grad_norm})
        if not self.discrete:
            action_std = scale.mean(axis=-1)
            metrics["action_std"] = float(action_std) if single else action_std
        return metrics


class NumpyOptimizer:
    """A torch optimizer's ``step()`` for the parameters of a :class:`NumpyPolicyGradient`, in numpy on flat buffers.

    torch's optimizers spend far more time on per-tensor bookkeeping than on arithmetic for the
    13 small tensors of a 2x64 actor-critic: fused Adam ~100-140 us a step, foreach RMSprop
    ~500 us, for a few microseconds of arithmetic on ~11k floats (BENCHMARKS.md, "Speed").
    Here the optimizer's state lives in flat arrays, and a step is a dozen whole-array numpy
    operations on the gradient's own flat buffer. Subclasses give the update rule
    (:class:`NumpyAdam`, :class:`NumpyRMSprop`).

    The torch optimizer stays the owner of the state that checkpoints save and load: its state
    tensors (``step`` and the moment buffers) are made views of the flat arrays, so its
    ``state_dict()`` is always current and its own ``step()`` would continue from the same
    numbers. :meth:`prepare` (once per update, before its steps) re-adopts the state if something
    replaced it (``load_state_dict``, a seed-batched run restacking its seeds) and reads the
    parameters into the flat master copy, which every step writes back to them. Results equal
    torch's up to float32 rounding (tests/unit/test_fast_update.py).
    """

    optimizer_type: type = torch.optim.Optimizer
    buffers: tuple[str, ...] = ()  # the per-parameter state tensors besides "step", in torch's names

    def __init__(self, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient) -> None:
        if not self.supports(optimizer, gradient):
            raise ValueError(f"this optimizer has no numpy step; check {type(self).__name__}.supports first")
        self.optimizer, self.gradient = optimizer, gradient
        self.parameters = gradient.parameters
        size = gradient.flat_grad.size
        self.flat_params = np.empty(size, dtype=np.float32)
        self.state = {name: np.zeros(size, dtype=np.float32) for name in self.buffers}
        self.steps = np.zeros(len(self.parameters), dtype=np.float32)  # torch keeps a float32 count per parameter
        self._scratch = np.empty(size, dtype=np.float32)
        self._slices = gradient.slices  # the parameters' parts of every flat buffer, as of the gradient's
        # each parameter's storage as a flat numpy view (the step writes the new values there)
        self._param_views = [parameter.detach().numpy().reshape(-1) for parameter in self.parameters]
        self._state_views: list[dict[str, torch.Tensor]] = []
        self._torch_steps = False  # set by prepare(): step with torch's own step() instead

    @classmethod
    def supports(cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient) -> bool:
        """This class's optimizer with its plain options, over exactly ``gradient``'s parameters (in order)."""
        if type(optimizer) is not cls.optimizer_type or len(optimizer.param_groups) != 1:
            return False
        group = optimizer.param_groups[0]
        params = group["params"]
        return (
            cls._options_supported(group)
            and len(params) == len(gradient.parameters) and all(a is b for a, b in zip(params, gradient.parameters))
            and all(p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous() for p in params)
        )

    @classmethod
    def _options_supported(cls, group: dict[str, Any]) -> bool:
        """The param group's options are ones this rule computes (checked again by :meth:`prepare`:
        a ``load_state_dict`` or a user can change them after construction)."""
        return (
            cls._plain_options(group) and group["weight_decay"] == 0 and not group.get("maximize", False)
            and not group.get("capturable", False) and not group.get("differentiable", False)
            and not isinstance(group["lr"], torch.Tensor)
        )

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        """The optimizer-specific options this update rule covers."""
        raise NotImplementedError

    @classmethod
    def reuse_or_build(cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient,
                       cached: "NumpyOptimizer | None") -> "NumpyOptimizer | None":
        """``cached`` if it serves this optimizer and gradient, else a new one of the matching
        subclass (:class:`NumpyAdam`, :class:`NumpyRMSprop`); None if no subclass supports it."""
        if cached is not None and cached.optimizer is optimizer and cached.gradient is gradient:
            return cached
        for rule in (cls,) if cls.buffers else (NumpyAdam, NumpyRMSprop):
            if rule.supports(optimizer, gradient):
                return rule(optimizer, gradient)
        return None

    @classmethod
    def prepared_step(cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient,
                      cached: "NumpyOptimizer | None") -> tuple["NumpyOptimizer | None", Callable[[], None]]:
        """What an update with the numpy gradient calls once before its steps: the twin to keep
        (``cached`` if still valid, see :meth:`reuse_or_build`) and the step function to call, the
        prepared twin's or, where no twin applies, the optimizer's own."""
        twin = cls.reuse_or_build(optimizer, gradient, cached)
        if twin is None:
            return None, optimizer.step
        twin.prepare()
        return twin, twin.step

    def prepare(self) -> None:
        """Before a run of :meth:`step` calls: adopt the optimizer's state if it is not ours, read the parameters."""
        state = self.optimizer.state
        adopted = len(self._state_views) == len(self.parameters) and all(
            (entry := state.get(parameter)) is not None and all(entry.get(key) is view for key, view in views.items())
            for parameter, views in zip(self.parameters, self._state_views)
        )
        if not adopted:
            self._adopt()
        # torch skips parameters without a gradient, so counts could differ; and options can change
        counts_agree = bool(np.all(self.steps == self.steps[0]))
        self._torch_steps = not counts_agree or not self._options_supported(self.optimizer.param_groups[0])
        for view, part in zip(self._param_views, self._slices):
            self.flat_params[part] = view

    def _adopt(self) -> None:
        """Copy the optimizer's state (or zeros, before its first step) into the flat arrays and
        make its state tensors views of them. Before a first step that gives the optimizer state
        entries at step 0 with zero moments, which torch's own step treats as it treats none."""
        self._state_views = []
        for index, (parameter, part) in enumerate(zip(self.parameters, self._slices)):
            entry = self.optimizer.state[parameter]
            for name, flat in self.state.items():
                flat[part] = entry[name].detach().reshape(-1).numpy() if entry else 0.0
            self.steps[index] = float(entry["step"]) if entry else 0.0
            views = {"step": torch.from_numpy(self.steps[index : index + 1]).view(())}  # 0-d, as torch's own
            views.update({name: torch.from_numpy(flat[part]).view(parameter.shape) for name, flat in self.state.items()})
            entry.update(views)
            self._state_views.append(views)

    def step(self) -> None:
        """One step with the gradient in ``gradient.flat_grad``, as ``optimizer.step()`` takes it."""
        if self._torch_steps:  # torch's own step, on the same state (its tensors are our views)
            self.optimizer.step()
            self.prepare()
            return
        self.steps += np.float32(1.0)
        self._update(self.optimizer.param_groups[0], float(self.steps[0]))  # leaves the change in _scratch
        self.flat_params -= self._scratch
        for view, part in zip(self._param_views, self._slices):
            view[...] = self.flat_params[part]

    def _update(self, group: dict[str, Any], step: float) -> None:
        """Advance the state by one step and write the parameter decrement into ``self._scratch``."""
        raise NotImplementedError


class NumpyAdam(NumpyOptimizer):
    """``torch.optim.Adam`` (no amsgrad): Kingma & Ba 2015, Algorithm 1, with torch's placement of eps,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""

    optimizer_type = torch.optim.Adam
    buffers = ("exp_avg", "exp_avg_sq")

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        return not group["amsgrad"]

    def _update(self, group: dict[str, Any], step: float) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grad, m, v, scratch = self.gradient.flat_grad, self.state["exp_avg"], self.state["exp_avg_sq"], self._scratch
        # m <- m + (1 - b1) (g - m), torch's lerp; v <- b2 v + (1 - b2) g^2
        np.subtract(grad, m, out=scratch)
        scratch *= np.float32(1.0 - beta1)
        m += scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= np.float32(1.0 - beta2)
        v *= np.float32(beta2)
        v += scratch
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
        np.sqrt(v, out=scratch)
        scratch *= np.float32(1.0 / bias_correction2_sqrt)
        scratch += np.float32(eps)
        np.divide(m, scratch, out=scratch)
        scratch *= np.float32(lr / bias_correction1)


class NumpyRMSprop(NumpyOptimizer):
    """``torch.optim.RMSprop`` without momentum or centering (Tieleman & Hinton 2012, with torch's
    eps outside the square root): ``v <- a v + (1 - a) g^2``, ``p -= lr g / (sqrt(v) + eps)``."""

    optimizer_type = torch.optim.RMSprop
    buffers = ("square_avg",)

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        return group["momentum"] == 0 and not group["centered"]

    def _update(self, group: dict[str, Any], step: float) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        grad, v, scratch = self.gradient.flat_grad, self.state["square_avg"], self._scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= np.float32(1.0 - alpha)
        v *= np.float32(alpha)
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += np.float32(eps)
        np.divide(grad, scratch, out=scratch)
        scratch *= np.float32(lr)
