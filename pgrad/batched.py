"""Seed-batched networks: S independent policies as one model with a leading seed axis.

Every weight of ``S`` ordinary :class:`ActorCriticPolicy` networks is stacked into one tensor of
shape ``(S, *shape)``; a linear layer becomes one ``torch.baddbmm`` over the seed axis, so one
forward and one backward serve all seeds (PureJaxRL's idea of vectorising over seeds, done with
batched matrix products: a minibatch step for 5 seeds costs far less than 5 steps for one;
BENCHMARKS.md, "Speed", has the figures).

The seeds never mix: every operation below is either per seed (a batched product, a reduction over
a seed's own batch) or elementwise, so seed ``s``'s outputs and gradients depend only on seed
``s``'s weights and data. The stacked model is built from ``S`` independently initialised
policies (:meth:`SeedBatchedActorCritic.from_policies`), so each seed starts from exactly the
weights its single-seed run starts from, and :meth:`SeedBatchedActorCritic.copy_to` writes the
weights back into ordinary policies, which save, load and evaluate as usual.

Tensors here are seed-first: observations ``(S, B, obs_size)``, log-probabilities ``(S, B)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from pgrad.distributions import MIN_STD, CategoricalHead, DiagGaussianHead, TruncatedNormal, TruncatedNormalHead
from pgrad.errors import ConfigError
from pgrad.losses import clipped_surrogate_terms, value_squared_error
from pgrad.nets import ACTIVATIONS
from pgrad.policy import ActorCriticPolicy


def _stack(tensors: Sequence[Tensor]) -> nn.Parameter:
    """One trainable ``(S, *shape)`` parameter holding a copy of each seed's tensor."""
    return nn.Parameter(torch.stack([t.detach() for t in tensors]).contiguous())


class SeedBatchedLinear(nn.Module):
    """``S`` linear layers applied to ``S`` batches at once: ``y[s] = x[s] @ W[s].T + b[s]``.

    ``weight`` is ``(S, out, in)``, the layout of ``nn.Linear.weight`` with a seed axis in front,
    so seed ``s``'s slice is exactly that layer's weight.
    """

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (S, out, in)
        self.bias = nn.Parameter(bias)  # (S, out)

    @classmethod
    def from_linears(cls, linears: Sequence[nn.Linear]) -> SeedBatchedLinear:
        return cls(_stack([linear.weight for linear in linears]), _stack([linear.bias for linear in linears]))

    def forward(self, x: Tensor) -> Tensor:
        """``(S, B, in) -> (S, B, out)``; the bias is broadcast over B by baddbmm."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def linears(self) -> list[tuple[Tensor, Tensor]]:
        """``(weight, bias)`` of each seed: views, for copying back into ``nn.Linear`` layers."""
        return list(zip(self.weight, self.bias))


_ELEMENTWISE = tuple(ACTIVATIONS.values())


class SeedBatchedMLP(nn.Module):
    """The seed-batched twin of :class:`pgrad.nets.MLP`: batched linears and the same activations."""

    def __init__(self, mlps: Sequence[nn.Sequential]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for position, module in enumerate(mlps[0]):
            column = [mlp[position] for mlp in mlps]
            if isinstance(module, nn.Linear):
                layers.append(SeedBatchedLinear.from_linears(column))
            elif isinstance(module, _ELEMENTWISE):
                layers.append(type(module)())  # elementwise: the same on any shape
            else:
                raise ConfigError(
                    f"seed batching supports Linear layers and {sorted(ACTIVATIONS)} activations, not {module}"
                )
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def check_batchable(policy: ActorCriticPolicy) -> None:
    """Raise ConfigError (one line) if ``policy`` has a part :class:`SeedBatchedActorCritic` lacks."""
    if type(policy) is not ActorCriticPolicy:
        raise ConfigError(f"seed batching supports the MLP ActorCriticPolicy, not {type(policy).__name__}")
    if policy.mask_size:
        raise ConfigError("seed batching does not support invalid-action masking; train these seeds with --no-batched")
    unsupported = [
        name
        for name, present in (
            ("a custom encoder", policy.encoder is not None),
            ("share_trunk", policy.trunk is not None),
            ("layer_norm", any(isinstance(m, nn.LayerNorm) for m in policy.modules())),
            ("trainable_std=false", "trainable_std" in policy.spec),
        )
        if present
    ]
    if unsupported:
        raise ConfigError(
            f"seed batching does not support {', '.join(unsupported)}; train these seeds with --no-batched"
        )
    if not policy.layout.plain:
        raise ConfigError(
            f"seed batching supports flat Box and Discrete observations, not {policy.observation_space}; "
            "train these seeds with --no-batched"
        )
    if not isinstance(policy.head, (CategoricalHead, DiagGaussianHead, TruncatedNormalHead)):
        raise ConfigError(f"seed batching does not support the action head {type(policy.head).__name__}")
    if policy.critic is None:
        raise ConfigError("seed batching needs a policy with a critic")


class SeedBatchedActorCritic(nn.Module):
    """Actor, action head and critic of ``S`` policies with stacked weights.

    Observation normalisers and reward scalers stay in the seeds' own policies: they act during
    rollouts, which each seed collects in its own envs; the update sees normalised observations.
    """

    def __init__(self, policies: Sequence[ActorCriticPolicy]) -> None:
        super().__init__()
        for policy in policies:
            check_batchable(policy)
        first = policies[0]
        if any(
            p.spec != first.spec or p.action_space != first.action_space or p.obs_size != first.obs_size
            for p in policies
        ):
            raise ConfigError("seed batching needs policies of one architecture and one pair of spaces")
        self.n_seeds = len(policies)
        self.head_kind = type(first.head)
        self.actor_body = SeedBatchedMLP([p.actor_body for p in policies])
        self.critic = SeedBatchedMLP([p.critic for p in policies])
        heads = [p.head for p in policies]
        if isinstance(first.head, CategoricalHead):
            self.head_linear = SeedBatchedLinear.from_linears([h.logits for h in heads])
        else:
            self.head_linear = SeedBatchedLinear.from_linears([h.loc for h in heads])
            self.state_dependent_std = first.head.std.state_dependent
            if self.state_dependent_std:
                self.std_linear = SeedBatchedLinear.from_linears([h.std.linear for h in heads])
            else:
                self.log_std = _stack([h.std.log_std for h in heads])  # (S, action_dim)

    @classmethod
    def from_policies(cls, policies: Sequence[ActorCriticPolicy]) -> SeedBatchedActorCritic:
        """Stack independently initialised policies (each seed keeps its own initial weights)."""
        return cls(policies)

    def distribution(self, obs: Tensor) -> Distribution:
        """Action distributions for normalised observations ``(S, B, obs_size)``; batch shape ``(S, B)``.

        The same torch distribution classes and arguments as the single-seed heads
        (pgrad/distributions.py), so log-probabilities and entropies agree to float rounding.
        """
        features = self.actor_body(obs)  # (S, B, hidden)
        out = self.head_linear(features)  # (S, B, n_actions) logits or (S, B, action_dim) loc
        if self.head_kind is CategoricalHead:
            return Categorical(logits=out, validate_args=False)
        if self.state_dependent_std:
            std = nn.functional.softplus(self.std_linear(features)) + MIN_STD  # (S, B, action_dim)
        else:
            std = self.log_std.exp().unsqueeze(1).expand_as(out)  # (S, B, action_dim)
        if self.head_kind is DiagGaussianHead:
            return Independent(Normal(out, std, validate_args=False), 1, validate_args=False)
        return Independent(TruncatedNormal(out, std, -1.0, 1.0), 1)

    def value(self, obs: Tensor) -> Tensor:
        """State values ``(S, B)`` for normalised observations ``(S, B, obs_size)``."""
        return self.critic(obs).squeeze(-1)

    def parameter_pairs(self, policies: Sequence[ActorCriticPolicy]) -> list[tuple[nn.Parameter, list[nn.Parameter]]]:
        """Each stacked parameter with the ``S`` policy parameters it holds: ``stacked[s]`` is ``policies[s]``'s.

        Every stacked parameter appears once; :meth:`copy_to`, :meth:`copy_from` and the split of the
        optimiser state into per-seed checkpoints (pgrad/algos/ppo_batched.py) all use this mapping.
        """
        if len(policies) != self.n_seeds:
            raise ValueError(f"parameter_pairs needs {self.n_seeds} policies, got {len(policies)}")

        def linears(policy: ActorCriticPolicy) -> list[nn.Linear]:
            head = policy.head
            out = head.logits if isinstance(head, CategoricalHead) else head.loc
            found = [m for m in policy.actor_body if isinstance(m, nn.Linear)]
            found += [m for m in policy.critic if isinstance(m, nn.Linear)]
            found.append(out)
            if not isinstance(head, CategoricalHead) and self.state_dependent_std:
                found.append(head.std.linear)
            return found

        stacked_linears = [layer for layer in self.actor_body.layers if isinstance(layer, SeedBatchedLinear)]
        stacked_linears += [layer for layer in self.critic.layers if isinstance(layer, SeedBatchedLinear)]
        stacked_linears.append(self.head_linear)
        if self.head_kind is not CategoricalHead and self.state_dependent_std:
            stacked_linears.append(self.std_linear)
        per_policy = [linears(policy) for policy in policies]
        pairs: list[tuple[nn.Parameter, list[nn.Parameter]]] = []
        for position, stacked in enumerate(stacked_linears):
            pairs.append((stacked.weight, [layers[position].weight for layers in per_policy]))
            pairs.append((stacked.bias, [layers[position].bias for layers in per_policy]))
        if self.head_kind is not CategoricalHead and not self.state_dependent_std:
            pairs.append((self.log_std, [policy.head.std.log_std for policy in policies]))
        if {id(p) for p, _ in pairs} != {id(p) for p in self.parameters()}:
            raise AssertionError("parameter_pairs does not cover the stacked model's parameters")
        return pairs

    def copy_to(self, policies: Sequence[ActorCriticPolicy]) -> None:
        """Write seed ``s``'s weights into ``policies[s]`` (normalisers there are left as they are).

        This is the inverse of :meth:`from_policies`: afterwards each policy is an ordinary
        single-seed policy that saves to ``policy.safetensors`` and acts as usual.
        """
        with torch.no_grad():
            for stacked, per_seed in self.parameter_pairs(policies):
                for s, parameter in enumerate(per_seed):
                    parameter.copy_(stacked[s])

    def copy_from(self, policies: Sequence[ActorCriticPolicy]) -> None:
        """Overwrite the stacked weights with ``policies``' (the inverse of :meth:`copy_to`; used on resume)."""
        with torch.no_grad():
            for stacked, per_seed in self.parameter_pairs(policies):
                for s, parameter in enumerate(per_seed):
                    stacked[s].copy_(parameter)


def per_seed_grad_norm_clip_(parameters: Sequence[Tensor], max_norm: float) -> Tensor:
    """Clip each seed's gradient to global norm ``max_norm``, in place; return the norms ``(S,)``.

    Seed ``s``'s global norm is over the ``[s]`` slices of every parameter's gradient, and the
    scaling is that of ``torch.nn.utils.clip_grad_norm_`` (``max_norm / (norm + 1e-6)`` capped at
    1), so each seed is clipped exactly as its single-seed run clips it.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = torch.stack([g.reshape(g.shape[0], -1).square().sum(1) for g in grads])  # (n_params, S)
    norms = squares.sum(0).sqrt()  # (S,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (S,)
    for g in grads:
        g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))
    return norms


# -- PPO losses with a seed axis: the maths of pgrad.losses, reduced per seed ------------------


def seed_batched_clipped_surrogate_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_coef: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`pgrad.losses.clipped_surrogate_loss` for ``(S, B)`` inputs: losses ``(S,)``, one per seed.

    Metrics are detached ``(S,)`` tensors (no ``.item()`` per minibatch: the caller sums them
    and reads them once per iteration).
    """
    objective, ratio, log_ratio = clipped_surrogate_terms(log_probs, old_log_probs, advantages, clip_coef)
    loss = -objective.mean(1)  # (S,)
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean(1)
        clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean(1)
    return loss, {"policy_loss": loss.detach(), "approx_kl": approx_kl, "clip_fraction": clip_fraction}


def seed_batched_value_loss(
    values: Tensor, returns: Tensor, old_values: Tensor, clip_coef: float | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`pgrad.losses.value_loss` for ``(S, B)`` inputs: half MSE per seed ``(S,)``, optional ppo2 clipping."""
    loss = 0.5 * value_squared_error(values, returns, old_values, clip_coef).mean(1)  # (S,)
    return loss, {"value_loss": loss.detach()}
