"""Rollout inference and ``predict`` in numpy: the policy's twin for acting.

A rollout acts on one tiny batch (``n_envs`` observations) per env step. For a 2x64 MLP the
arithmetic takes a few microseconds; torch spends most of a step in per-op dispatch, autograd
bookkeeping and ``torch.distributions`` objects (BENCHMARKS.md, "Speed", has the profile).
Numpy on views of the same parameters does the same maths with far less overhead per op.

What stays exactly as in the torch path (:meth:`ActorCriticPolicy.normalize` and
:meth:`ActorCriticPolicy.act`), so a rollout differs from the plain one only by float32 rounding
of the matrix products (tested in tests/unit/test_fast_inference.py):

* the observation statistics are updated by the same numpy code on the same float32 inputs, and
  the normalisation is the same float32 elementwise arithmetic;
* random numbers come from torch's generator in the same order and amount: a Gaussian sample is
  ``loc + std * torch.randn(...)``, which is what ``torch.normal(loc, std)`` computes, and a
  categorical sample is the one ``torch.multinomial(probs, 1, True)`` draws, as in
  ``Categorical.sample`` (:func:`pgrad.numpy_twin.actions.sample_categorical` says how);
* the state-independent standard deviation is ``exp(log_std)`` computed by torch.

For rollouts (``fused=True``) the actor and the critic run as one network (:func:`fuse`), so each
env step costs three matrix products instead of six. The fused weights are copies, rebuilt by
:meth:`NumpyActorCritic.refresh`, which the collector calls before every rollout; the unfused twin
(``predict``) reads views and needs none.

:class:`SeedBatchedNumpyActorCritic` is the same for ``S`` seeds' policies stacked on a seed axis
(pgrad/batched.py), acting on all seeds' envs at once, each seed's rows through its own weights,
its own normaliser and its own random generator. Where numba is installed, each seed's rows go
through the compiled step its lone run takes (its own :class:`NumpyActorCritic`), so a seed acts
to the bit as it does alone; in numpy, one batched product per layer serves every seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import CategoricalHead, DiagGaussianHead
from pgrad.numpy_twin.actions import GaussianStd, log_softmax, sample_categorical, take_log_prob
from pgrad.numpy_twin.layers import (
    Dense,
    all_parameters,
    copy_network,
    dense_with_activations,
    forward,
    fuse,
    is_supported_module,
    parts_of,
    read_network,
    refill_copy,
    refill_fused,
)
from pgrad.policy import ActorCriticPolicy

if TYPE_CHECKING:
    from pgrad.rollout import RolloutBuffers

_numba_missing = False


def compiled_kernels() -> ModuleType | None:
    """:mod:`pgrad.numpy_twin.compiled` (imported on first use: numba takes ~0.2 s to import), or
    None when numba is not installed or the environment variable ``PGRAD_NUMBA`` is ``0``."""
    global _numba_missing
    if os.environ.get("PGRAD_NUMBA", "1") == "0" or _numba_missing:
        return None
    try:
        from pgrad.numpy_twin import compiled
    except ModuleNotFoundError as exc:
        if exc.name not in ("numba", "llvmlite"):
            raise
        _numba_missing = True
        return None
    return compiled


def unsupported_reason(policy: ActorCriticPolicy) -> str | None:
    """Why the numpy twin cannot run ``policy`` (one line), or None if it can.

    Covered: :class:`ActorCriticPolicy` itself (a subclass may act differently), Box observations,
    bodies of Linear/Tanh/ReLU layers, a categorical head or a Gaussian head whose std does not
    depend on the state.
    """
    if type(policy) is not ActorCriticPolicy:
        return f"the policy class {type(policy).__name__} (covered: the MLP ActorCriticPolicy)"
    if policy.mask_size:
        return "invalid-action masking"
    if any(parameter.device.type != "cpu" for parameter in all_parameters(policy)):
        return "a policy on a GPU (device=cuda updates with torch there)"
    if policy.trunk is not None:
        return "a shared trunk (share_trunk=true)"
    if policy.target is not None:
        return "a target critic (target_critic)"
    std = getattr(policy.head, "std", None)
    if std is not None and not std.state_dependent and not isinstance(std.log_std, nn.Parameter):
        return "a fixed std (trainable_std=false)"
    if not isinstance(policy.observation_space, spaces.Box) or not policy.layout.plain:
        kinds = "/".join(sorted({piece.kind for piece in policy.layout.pieces}))
        return f"observations of type {type(policy.observation_space).__name__} ({kinds}; only flat Box is covered)"
    head = policy.head
    if not (isinstance(head, CategoricalHead) or (isinstance(head, DiagGaussianHead) and not head.std.state_dependent)):
        return (
            f"the action head {type(head).__name__}"
            + (" with a state-dependent std" if isinstance(head, DiagGaussianHead) else "")
            + " (covered: categorical, Gaussian with a state-independent std)"
        )
    for name, network in (("actor", policy.actor_body), ("critic", policy.critic)):
        if network is not None and not (
            isinstance(network, nn.Sequential) and all(is_supported_module(module) for module in network)
        ):
            return f"a layer of the {name} other than Linear, Tanh or ReLU (LayerNorm, another activation)"
    return None


def _head_module(policy: ActorCriticPolicy) -> nn.Linear:
    head = policy.head
    return head.logits if isinstance(head, CategoricalHead) else head.loc


def _head_layer(policy: ActorCriticPolicy) -> Dense:
    return read_network([_head_module(policy)])[0]


class NumpyActorCritic:
    """Numpy twin of an :class:`ActorCriticPolicy` for sampling actions during rollouts and ``predict``."""

    def __init__(
        self, policy: ActorCriticPolicy, fused: bool = False, generator: torch.Generator | None = None
    ) -> None:
        """``fused``: run actor and critic as one network in :meth:`act` (copied weights: call
        :meth:`refresh` after every change of the policy's weights). ``generator``: where the
        action noise comes from (None: torch's global generator)."""
        reason = unsupported_reason(policy)
        if reason is not None:
            raise ValueError(f"no numpy twin for this policy: {reason}")
        self.policy = policy
        self.fused_requested = fused
        self.generator = generator
        self._noise: torch.Tensor | None = None  # preallocated Gaussian noise, see act()
        self._compiled_noise: torch.Tensor | None = None  # the same for the compiled call
        self._noise_ahead: list[np.ndarray] = []  # drawn by draw_noise_ahead, used last first
        self.fused: list | None = None
        # what pgrad.numpy_twin.compiled reads (see _compiled_network), None: the rollout step runs as numpy
        self.compiled: tuple | None = None
        self._read_from_before: list | None = None  # see refresh_in_place()
        self._build()

    @staticmethod
    def supports(policy: ActorCriticPolicy) -> bool:
        """True when every part of ``policy`` has a numpy equivalent here (see :func:`unsupported_reason`)."""
        return unsupported_reason(policy) is None

    def refresh(self) -> None:
        """Re-read parameters and the std; call whenever the policy's weights may have changed."""
        if not self.refresh_in_place():
            self._build()

    def refresh_in_place(self) -> bool:
        """Re-read the weights, the std and the observation statistics if the policy is made of the
        same parts as at the last build (modules and parameter storages, the std's included);
        False, reading nothing, if any part was replaced since (then :meth:`refresh` rebuilds).

        The parts compared are everything :func:`unsupported_reason` looks at that can change
        after construction, so True also means the policy is still supported: a collector that
        refreshes before every rollout (one env step, for one-step actor-critic) skips that check."""
        if self._read_from() != self._read_from_before:
            return False
        self._read_state()
        if self.fused is not None:
            # the unfused layers (views) see the update already; only the fused copy needs the new
            # numbers, copied in place: cheaper than a rebuild, which cost more than a step's inference
            refill_fused(self.fused, self.actor + self.head, self.critic)
        elif self._actor_copy is not None:
            refill_copy(self._actor_copy, self.actor + self.head)
        return True

    def _build(self) -> None:
        """Read every layer afresh (views of the parameters; the fused network copied)."""
        policy = self.policy
        self._read_from_before = self._read_from()
        self._read_state()
        self.actor = read_network(policy.actor_body)
        self.critic = read_network(policy.critic) if policy.critic is not None else None
        self.head = [_head_layer(policy)]
        self.fused = (
            fuse(self.actor + self.head, self.critic) if self.fused_requested and self.critic is not None else None
        )
        # The rollout step compiled, where numba is installed (pgrad/numpy_twin/compiled.py). It
        # reads C-ordered weights: the fused copy, or for a policy without a critic, a copy of the actor.
        self.kernels = compiled_kernels() if self.fused_requested else None
        self.compiled = self._actor_copy = None
        if self.kernels is not None:
            self._actor_copy = copy_network(self.actor + self.head) if self.fused is None else None
            layers = self.fused if self.fused is not None else self._actor_copy
            self.compiled = _compiled_network(layers, self.actor + self.head)
        # The compiled Gaussian step also maps its actions to the env's where they are float32 Box
        # actions rescaled from [-1, 1] (the common continuous case), as policy.env_action does;
        # other actions are mapped by policy.env_action.
        space = policy.action_space
        rescaled = (
            self.kernels is not None
            and policy._flat_box is space
            and policy.rescale_actions
            and space.dtype == np.float32
            and space.low.ndim == 1
        )
        unused = np.zeros(0, np.float32)
        self._bounds = (True, space.low, space.high) if rescaled else (False, unused, unused)

    def _read_state(self) -> None:
        """The observation normaliser's statistics (views) and the std, which are not layers."""
        policy = self.policy
        self.obs_size = policy.obs_size
        normalizer = policy.obs_normalizer
        # Views of the statistics buffers (updated in place), looked up once rather than through
        # nn.Module.__getattr__ every step.
        self.stats = normalizer.stats if normalizer is not None else None
        if normalizer is not None:
            self.stats_mean, self.stats_var = normalizer.stats.mean.numpy(), normalizer.stats.var.numpy()
            self.stats_count = normalizer.stats.count.numpy().reshape(1)  # a view, for the compiled merge
            self.eps, self.clip = normalizer.eps, np.float32(normalizer.clip)
        # what the compiled step reads: (normalize_obs, mean, var, count, eps, clip)
        unused = np.zeros(0)
        self._statistics = (
            (True, self.stats_mean, self.stats_var, self.stats_count, float(self.eps), self.clip)
            if normalizer is not None
            else (False, unused, unused, unused, 0.0, np.float32(0.0))
        )
        self.read_std()

    def _read_from(self) -> list:
        """What the layers are read from, and every part whose presence decides support: the
        policy's modules and parameter storages (:func:`pgrad.numpy_twin.layers.parts_of`)."""
        return parts_of(self.policy)

    def read_std(self) -> None:
        """Recompute the Gaussian std from the current ``log_std`` (not a view: it is computed)."""
        head = self.policy.head
        self.gaussian = None if isinstance(head, CategoricalHead) else GaussianStd(head.std.log_std)

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

    def normalize_and_act(self, raw_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """A rollout step's policy call: ``normalize(raw_obs, update=True)`` then :meth:`act`;
        returns ``(obs, action, log_prob, value)``. In one compiled call when numba is installed
        (:mod:`pgrad.numpy_twin.compiled`: the same maths, float32 rounding apart)."""
        if self.compiled is None:
            obs = self.normalize(raw_obs, update=True)
            return (obs, *self.act(obs))
        policy, rows = self.policy, len(raw_obs)
        obs = np.empty((1, rows, self.obs_size), np.float32)
        action = np.empty((1, rows, *policy.action_shape), policy.action_dtype)
        log_prob, value = np.empty((1, rows), np.float32), np.empty((1, rows), np.float32)
        self.compiled_step(raw_obs, 0, obs, action, log_prob, value)
        return obs[0], action[0], log_prob[0], value[0] if self.critic is not None else None

    def act_into(self, raw_obs: np.ndarray, buffers: RolloutBuffers, t: int) -> np.ndarray:
        """:meth:`normalize_and_act` written into row ``t`` of a collector's buffers (the value row
        only with a critic); returns ``policy.env_action`` of the action, what the envs receive."""
        if self.compiled is None:
            obs, action, log_prob, value = self.normalize_and_act(raw_obs)
            buffers.write_policy_step(t, obs, action, log_prob, value)
            return self.policy.env_action(action)
        env_action = self.compiled_step(raw_obs, t, buffers.obs, buffers.action, buffers.log_prob, buffers.value)
        return env_action if env_action is not None else self.policy.env_action(buffers.action[t])

    def compiled_step(
        self,
        raw_obs: np.ndarray,
        t: int,
        obs: np.ndarray,
        action: np.ndarray,
        log_prob: np.ndarray,
        value: np.ndarray,
    ) -> np.ndarray | None:
        """The compiled rollout step into row ``t`` of ``(T, B, ...)`` arrays (C-contiguous: a
        seed-batched collector passes each seed's ``(1, N, ...)`` block of a row); returns the env
        actions where the same call computed them (float32 Box actions with finite bounds), else
        None. Only where :attr:`compiled` is set. The noise is drawn ahead
        (:meth:`draw_noise_ahead`) or here, from ``generator``, as :meth:`act` draws it."""
        raw = raw_obs if raw_obs.ndim == 2 else raw_obs.reshape(len(raw_obs), -1)  # (B, obs_size)
        if self._noise_ahead:
            noise = self._noise_ahead.pop()
        else:
            if self._compiled_noise is None or self._compiled_noise.shape[0] != len(raw):
                self._compiled_noise = torch.empty((len(raw), self._noise_columns()))
                self._compiled_noise_np = self._compiled_noise.numpy()  # a view, refilled in place each step
            self._draw(self._compiled_noise)
            noise = self._compiled_noise_np
        gaussian = self.gaussian
        if gaussian is not None:
            env_action = self.kernels.rollout_step_gaussian(
                raw, self._statistics, self.compiled, gaussian.std, gaussian.half_precision,
                gaussian.log_normalizer, noise, t, obs, action, log_prob, value, self._bounds,
            )  # fmt: skip
            return env_action if len(env_action) else None
        else:
            finite = self.kernels.rollout_step_categorical(
                raw, self._statistics, self.compiled, noise, t, obs, action, log_prob, value
            )
            if not finite:  # torch.multinomial (and sample_categorical) refuse these
                raise ValueError("probability tensor contains either inf, nan or element < 0")
            return None

    def _noise_columns(self) -> int:
        """The actor's outputs: the compiled network's, less V where the policy has a critic."""
        return self.compiled[0][-1].shape[1] - (self.critic is not None)

    def _draw(self, noise: torch.Tensor) -> None:
        """One step's noise, drawn in place from torch's generator as :meth:`act` draws it."""
        if self.gaussian is not None:
            noise.normal_(generator=self.generator)  # what torch.randn((B, action_dim)) draws
        else:
            # what sample_categorical draws: Exp(1) noise of the probabilities' shape
            noise.exponential_(generator=self.generator)

    def draw_noise_ahead(self, n_steps: int, n_envs: int) -> None:
        """Draw the noise of the next ``n_steps`` compiled rollout steps of ``n_envs`` rows now.

        The same numbers as drawing at each step: one draw per step, of the step's shape, in step
        order, from the same generator (a draw of more numbers at once would take another of
        torch's sampling paths). Drawn together they cost ~1 us a step; between env steps, whose
        simulator evicts torch's code from the CPU's caches, ~3.5 us (BENCHMARKS.md). The caller
        must draw nothing else from torch's generator until those steps are taken: the collector
        calls this at the start of a fixed-length rollout. Without the compiled step, nothing is drawn."""
        self._noise_ahead = []
        if self.compiled is None or n_steps < 2:
            return
        noise = torch.empty((n_steps, n_envs, self._noise_columns()))
        for row in noise:
            self._draw(row)
        self._noise_ahead = list(noise.numpy()[::-1])  # popped from the end: step 0 first

    def value(self, obs: np.ndarray) -> np.ndarray:
        """State values ``(B,)`` for normalised observations (the policy must have a critic).

        Fused, through the same network as :meth:`act`, so that a bootstrap V(s') and the V(s) a
        rollout stored are one computation (one-step actor-critic's TD error subtracts them)."""
        if self.fused is not None and self.compiled is not None:
            return self.kernels.values(np.ascontiguousarray(obs), self.compiled)
        if self.fused is not None:
            return forward(self.fused, obs)[:, -1]
        return forward(self.critic, obs)[:, 0]

    def deterministic_action(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic policy's raw action: the argmax of the logits, or the Gaussian's mean."""
        out = forward(self.head, forward(self.actor, obs))  # (B, n_actions) or (B, action_dim)
        return out.argmax(axis=-1) if self.gaussian is None else out

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample raw actions for normalised observations; ``(action, log_prob, value)`` as numpy."""
        if self.fused is not None:
            both = forward(self.fused, obs)  # (B, n_out + 1): the actor's outputs, then V
            out, value = both[:, :-1], both[:, -1]
        else:
            out = forward(self.head, forward(self.actor, obs))  # (B, n_actions) logits or (B, action_dim) mean
            value = self.value(obs) if self.critic is not None else None  # (B,)
        if self.gaussian is None:
            log_p = log_softmax(out)  # (B, n_actions)
            action = sample_categorical(np.exp(log_p), self.generator)  # (B,) int64
            log_prob = take_log_prob(log_p, action)  # (B,)
        else:
            # normal_ on a kept tensor draws what torch.randn(shape) would, without allocating (~8x cheaper)
            if self._noise is None or self._noise_np.shape != out.shape:
                self._noise = torch.empty(out.shape)
                self._noise_np = self._noise.numpy()  # a view, refilled in place below
            self._noise.normal_(generator=self.generator)
            gaussian = self.gaussian
            action = out + gaussian.std * self._noise_np  # (B, action_dim), noise from torch's generator
            deviation = action - out
            log_prob = -((deviation * deviation) @ gaussian.half_precision) - gaussian.log_normalizer  # (B,)
        return action, log_prob, value


def _compiled_network(layers: list, actor: list) -> tuple | None:
    """The rollout network as :mod:`pgrad.numpy_twin.compiled` reads it: ``(weights, biases,
    activations, row_splits, column_splits)``. ``layers``: the fused network (or, without a
    critic, the actor's copy), whose weights and biases are refreshed in place; ``actor``: the
    actor's own layers, head included, which say where each block-diagonal layer's actor block
    ends. None if the network is not dense layers with biases, each followed by at most one
    tanh or ReLU."""
    pairs, actor_pairs = dense_with_activations(layers), dense_with_activations(actor)
    if (
        pairs is None
        or actor_pairs is None
        or len(pairs) != len(actor_pairs)
        or any(dense.bias_row is None or not dense.weight_t.flags.c_contiguous for dense, _ in pairs)
    ):
        return None
    weights = tuple(dense.weight_t for dense, _ in pairs)
    # the first layer is dense (every input feeds every output); later ones split at the actor's block
    splits = [weights[0].shape] + [own.weight_t.shape for own, _ in actor_pairs[1:]]
    as_array = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    return (
        weights,
        tuple(dense.bias_row for dense, _ in pairs),
        as_array([code for _, code in pairs]),
        as_array([rows for rows, _ in splits]),
        as_array([columns for _, columns in splits]),
    )


class SeedBatchedNumpyActorCritic:
    """Numpy twin of ``S`` policies acting on their ``S x N`` envs at once (rows seed-major)."""

    def __init__(
        self, model, policies: Sequence[ActorCriticPolicy], n_envs: int, generators: Sequence[torch.Generator]
    ) -> None:
        """``model``: a :class:`pgrad.batched.SeedBatchedActorCritic`, whose weights act (read as
        views by the numpy step, copied into ``policies`` for the compiled ones by :meth:`refresh`);
        ``policies``: the seeds' ordinary policies (their observation normalisers act here);
        ``generators``: one per seed, the source of that seed's action noise."""
        from pgrad.numpy_twin.gradient import seed_batched_unsupported_reason

        reason = seed_batched_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"no numpy twin for this seed-batched model: {reason}")
        self.model = model
        self.n_seeds, self.n_envs = model.n_seeds, n_envs
        self.policies = list(policies)
        self.generators = list(generators)
        # Each seed's own twin: its normaliser (always), and where numba is installed its compiled
        # rollout step, fused over its policy's weights, into which refresh() copies the stacked ones.
        compiled = compiled_kernels() is not None
        self.seed_twins = [
            NumpyActorCritic(policy, fused=compiled, generator=generator)
            for policy, generator in zip(self.policies, self.generators)
        ]
        self.discrete = model.head_kind is CategoricalHead
        self._noise: torch.Tensor | None = None
        self.frozen = np.zeros(self.n_seeds, dtype=bool)  # seeds whose observation statistics stay as they are
        self.compiled: bool | None = None  # True when every seed has its compiled step (set by refresh)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the weights and stds (after every update): the stacked weights copied into the
        seeds' policies, which their twins read; in numpy, the stacked network fused as well."""
        model = self.model
        model.copy_to(self.policies)
        for twin in self.seed_twins:
            twin.refresh()
        self.compiled = True if all(twin.compiled is not None for twin in self.seed_twins) else None
        self.layers = None  # the stacked fused network: the numpy step's (compiled, each seed has its own)
        if self.compiled is None:
            self.layers = fuse(
                read_network([*model.actor_body.layers, model.head_linear]), read_network(model.critic.layers)
            )
            if not self.discrete:
                self.gaussian = GaussianStd(model.log_std)  # (S, action_dim) arrays

    def _numpy_seed(self, s: int) -> bool:
        """Seed ``s`` acts through its twin's numpy calls instead of the compiled step: its
        observation statistics are frozen (the compiled step always updates them)."""
        return bool(self.frozen[s]) and self.seed_twins[s].stats is not None

    def draw_noise_ahead(self, n_steps: int, n_envs: int) -> None:
        """Each compiled seed's :meth:`NumpyActorCritic.draw_noise_ahead` from its own generator,
        where :meth:`act_into` goes seed by seed; numpy steps draw at each step."""
        for s, twin in enumerate(self.seed_twins):
            ahead = self.compiled is not None and not self._numpy_seed(s)
            twin.draw_noise_ahead(n_steps if ahead else 0, n_envs // self.n_seeds)

    def _blocks(self, array: np.ndarray) -> list[np.ndarray]:
        return [array[s * self.n_envs : (s + 1) * self.n_envs] for s in range(self.n_seeds)]

    def normalize(self, raw_obs: np.ndarray, update: bool = False, rows: np.ndarray | None = None) -> np.ndarray:
        """Normalise ``(S*N, ...)`` raw observations with each seed's own statistics (updated with its
        own rows if ``update``); ``rows``: the env index of each row when they are not all envs in order."""
        if self.seed_twins[0].stats is None:  # no normaliser: the flat float32 observations
            return self.seed_twins[0].normalize(raw_obs)
        if rows is None:
            blocks = zip(self.seed_twins, self._blocks(raw_obs), self.frozen)
            return np.concatenate([twin.normalize(block, update and not frozen) for twin, block, frozen in blocks])
        seeds = np.asarray(rows) // self.n_envs
        out = np.empty((len(seeds), self.seed_twins[0].obs_size), dtype=np.float32)
        for s in np.unique(seeds):
            out[seeds == s] = self.seed_twins[s].normalize(raw_obs[seeds == s])
        return out

    def normalize_and_act(self, raw_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A rollout step's policy call: ``normalize(raw_obs, update=True)`` then :meth:`act`;
        returns ``(obs, action, log_prob, value)``."""
        obs = self.normalize(raw_obs, update=True)
        return (obs, *self.act(obs))

    def act_into(self, raw_obs: np.ndarray, buffers: RolloutBuffers, t: int) -> np.ndarray:
        """A rollout step's policy call written into row ``t`` of a collector's buffers: each seed's
        compiled step on its own columns (a stopped seed's twin in numpy, with its frozen
        statistics), or in numpy :meth:`normalize_and_act` for all seeds; returns ``env_action``
        of the action (the seeds share one action space)."""
        if self.compiled is None:
            obs, action, log_prob, value = self.normalize_and_act(raw_obs)
            buffers.write_policy_step(t, obs, action, log_prob, value)
            return self.policies[0].env_action(action)
        env_actions = []
        for s, twin in enumerate(self.seed_twins):
            # seed s's columns of row t, (1, N, ...): C-contiguous, so the kernel is the lone run's
            columns = slice(s * self.n_envs, (s + 1) * self.n_envs)
            block = (slice(t, t + 1), columns)
            step_rows = (buffers.obs[block], buffers.action[block], buffers.log_prob[block], buffers.value[block])
            if self._numpy_seed(s):  # a stopped seed: normalised with its frozen statistics
                obs = twin.normalize(raw_obs[columns])
                for row, values in zip(step_rows, (obs, *twin.act(obs))):
                    row[0] = values
                env_actions.append(None)
                continue
            env_actions.append(twin.compiled_step(raw_obs[columns], 0, *step_rows))
        if any(env_action is None for env_action in env_actions):
            return self.policies[0].env_action(buffers.action[t])
        return np.concatenate(env_actions)

    def value(self, obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """V of normalised observations, each by its own seed's fused network, the one that acted
        (its compiled step's, or its slice of the stacked one in numpy), so that a bootstrap
        V(s') and a stored V(s) are one computation."""
        if self.compiled is not None:
            seeds = np.arange(len(obs)) // self.n_envs if rows is None else np.asarray(rows) // self.n_envs
            out = np.empty(len(seeds), dtype=np.float32)
            for s in np.unique(seeds):
                out[seeds == s] = self.seed_twins[s].value(obs[seeds == s])
            return out
        if rows is None:
            return forward(self.layers, obs.reshape(self.n_seeds, self.n_envs, -1))[..., -1].reshape(-1)
        seeds = np.asarray(rows) // self.n_envs
        out = np.empty(len(seeds), dtype=np.float32)
        for s in np.unique(seeds):
            seed_layers = [layer.seed(s) if isinstance(layer, Dense) else layer for layer in self.layers]
            out[seeds == s] = forward(seed_layers, obs[seeds == s])[:, -1]
        return out

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample raw actions for ``(S*N, obs_size)`` normalised observations: ``(action, log_prob,
        value)``, through the stacked network (the numpy step: only where :attr:`compiled` is None)."""
        x = forward(self.layers, obs.reshape(self.n_seeds, self.n_envs, -1))  # (S, N, n_out + 1)
        out, value = x[..., :-1], x[..., -1]  # (S, N, n_out), (S, N)
        if self.discrete:
            log_p = log_softmax(out)  # (S, N, n_actions)
            probs = np.exp(log_p)
            # (S, N) int64, each seed from its own generator as Categorical.sample draws
            action = np.stack([sample_categorical(probs[s], generator) for s, generator in enumerate(self.generators)])
            log_prob = take_log_prob(log_p, action)
        else:
            if self._noise is None or self._noise.shape[1:] != out.shape[1:]:
                self._noise = torch.empty(out.shape)  # (S, N, action_dim)
                self._noise_rows = list(self._noise)  # per-seed (N, action_dim) views
                self._noise_np = self._noise.numpy()
            for row, generator in zip(self._noise_rows, self.generators):
                row.normal_(generator=generator)  # what torch.randn((N, action_dim)) draws for that seed
            gaussian = self.gaussian
            action = out + gaussian.std[:, None, :] * self._noise_np
            deviation = action - out
            half_precision = gaussian.half_precision[:, :, None]  # (S, A, 1)
            log_prob = -((deviation * deviation) @ half_precision)[..., 0] - gaussian.log_normalizer[:, None]  # (S, N)
        return (action.reshape(self.n_seeds * self.n_envs, *action.shape[2:]), log_prob.reshape(-1), value.reshape(-1))
