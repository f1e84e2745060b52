"""The policy every MLP algorithm trains: observation normaliser, actor, optional critic.

It also owns the one place where a sampled action becomes what the environment receives
(:meth:`ActorCriticPolicy.env_action`), so that the raw sample, on which log-probabilities are
computed, is never altered in the rollout buffer (docs/architecture.md, "Correctness rules").
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import make_action_head
from pgrad.encoders import CustomEncoder, ObservationEncoder
from pgrad.errors import ConfigError
from pgrad.masking import MASK_KEY, check_action_mask, mask_size, observation_without_mask
from pgrad.nets import MLP, VALUE_OUTPUT_GAIN
from pgrad.normalize import ObservationNormalizer, RewardScaler
from pgrad.observations import ObservationLayout


def observation_size(space: spaces.Space) -> int:
    """Length of the flat float vector the policy stores for ``space`` (:mod:`pgrad.observations`)."""
    return ObservationLayout(space).size


def action_storage(space: spaces.Space) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one raw action as the rollout stores it: Discrete ``()`` int64,
    MultiDiscrete ``(k,)`` int64, MultiBinary ``(n,)`` float32, Box ``(d,)`` float32 (flattened)."""
    if isinstance(space, spaces.Discrete):
        return (), np.dtype(np.int64)
    if isinstance(space, spaces.MultiDiscrete):
        return (int(np.prod(space.shape)),), np.dtype(np.int64)
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return tuple(space.shape), np.dtype(np.float32)
    return (int(np.prod(space.shape)),), np.dtype(np.float32)


def has_finite_bounds(space: spaces.Space) -> bool:
    """True for a Box whose every bound is finite, i.e. one pgrad rescales from [-1, 1]."""
    return isinstance(space, spaces.Box) and bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))


def box_env_action(raw_action: np.ndarray, space: spaces.Box, rescale: bool) -> np.ndarray:
    """Raw continuous actions to a Box env's: with ``rescale`` (finite bounds) clip to [-1, 1] and
    map affinely to ``[low, high]``; otherwise clip to the bounds."""
    # np.minimum(np.maximum(...)) is np.clip without its wrapper, ~5x cheaper on one action; each
    # result is a new array already, so a cast to the dtype it has need not copy it again
    if rescale:
        unit = np.minimum(np.maximum(raw_action, -1.0), 1.0)
        return (space.low + (unit + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype, copy=False)
    return np.minimum(np.maximum(raw_action, space.low), space.high).astype(space.dtype, copy=False)


def fix_std(head: nn.Module, state_dependent: bool) -> None:
    """Make a continuous head's state-independent log-std a constant (``trainable_std=False``): a
    buffer, so no optimiser steps it; it keeps its name in the state dict."""
    if state_dependent:
        raise ConfigError("trainable_std=false needs a state-independent std (state_dependent_std=false)")
    std = getattr(head, "std", None)
    if std is None:
        raise ConfigError("trainable_std=false applies to continuous (Box) actions only")
    log_std = std.log_std.detach().clone()
    del std.log_std
    std.register_buffer("log_std", log_std)


class ActorCriticPolicy(nn.Module):
    """Separate actor and critic MLPs on (optionally normalised) flat observations.

    Separate networks follow the PPO paper's MuJoCo setup (Schulman et al. 2017, sec. 6.1) and
    Andrychowicz et al. 2021 (sec. 3.5), who found sharing hurts on continuous control.
    Continuous policies act in the normalised box [-1, 1]^d; :meth:`env_action` maps to the env.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        action_dist: str = "auto",
        log_std_init: float = 0.0,
        state_dependent_std: bool = False,
        normalize_obs: bool = True,
        with_critic: bool = True,
        features_size: int | None = None,
        cnn: str = "auto",
        cnn_features: int = 512,
        action_mask: str | None = None,
        pi_hidden_sizes: tuple[int, ...] | None = None,
        vf_hidden_sizes: tuple[int, ...] | None = None,
        share_trunk: bool = False,
        layer_norm: bool = False,
        trainable_std: bool = True,
        encoder_class: type | None = None,
        encoder_kwargs: dict | None = None,
    ) -> None:
        """``features_size``: input width of the actor and critic MLPs, if not the encoder's output
        (a recurrent policy feeds them its LSTM output instead). ``cnn``, ``cnn_features``: the CNN
        for image observations (:mod:`pgrad.encoders`). ``action_mask``: where the env reports
        the allowed actions, ``"info"`` or ``"observation"`` (:mod:`pgrad.masking`); None: no
        masking.

        Network shape: without ``share_trunk`` the actor is an MLP of ``pi_hidden_sizes`` and the
        critic one of ``vf_hidden_sizes`` (each defaulting to ``hidden_sizes``); with it, an MLP
        of ``hidden_sizes`` (the trunk) is shared, and ``pi_hidden_sizes`` / ``vf_hidden_sizes``
        (default: none) follow it for each. ``layer_norm``: LayerNorm after every hidden layer.
        ``trainable_std=False``: a state-independent std fixed at ``exp(log_std_init)``.
        ``encoder_class``: a ``torch.nn.Module`` class to use as the observation encoder
        (:class:`pgrad.encoders.CustomEncoder`), built with ``encoder_kwargs``."""
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.action_mask = action_mask
        # the networks never read an observation's action_mask key; the mask goes to the head
        input_space = observation_without_mask(observation_space) if action_mask == "observation" else observation_space
        self.layout = ObservationLayout(input_space)
        # the stored vector: what the networks read, then the mask's columns (1 = allowed)
        self.input_size = self.layout.size
        self.mask_size = mask_size(action_space) if action_mask is not None else 0
        self.obs_size = self.input_size + self.mask_size
        if normalize_obs:
            columns = None
            if self.layout.images or self.mask_size:
                columns = np.concatenate([self.layout.normalized_columns(), np.zeros(self.mask_size, dtype=bool)])
            self.obs_normalizer = ObservationNormalizer((self.obs_size,), columns=columns)
        else:
            self.obs_normalizer = None
        # Set by the algorithm when it scales rewards; part of the state dict so it is saved too.
        self.reward_scaler: RewardScaler | None = None
        # Only image observations need an encoder with weights; without one the MLPs read the
        # flat vector itself (and the module tree, hence every MLP policy's numbers, is as it was).
        if encoder_class is not None:
            encoder = CustomEncoder(self.layout, encoder_class, encoder_kwargs)
        else:
            encoder = ObservationEncoder(self.layout, cnn, cnn_features)
        self.encoder = None if encoder.identity else encoder
        self._features_cache: tuple | None = None
        # a slowly moving copy of the critic for bootstrap values (add_target_critic), or None
        self.target: nn.ModuleDict | None = None
        encoded = self.input_size if self.encoder is None else self.encoder.out_features
        in_features = encoded if features_size is None else features_size
        self.trunk = MLP(in_features, hidden_sizes, activation, layer_norm=layer_norm) if share_trunk else None
        if share_trunk:
            in_features = self.trunk.out_features
            pi_sizes, vf_sizes = pi_hidden_sizes or (), vf_hidden_sizes or ()
        else:
            pi_sizes = hidden_sizes if pi_hidden_sizes is None else pi_hidden_sizes
            vf_sizes = hidden_sizes if vf_hidden_sizes is None else vf_hidden_sizes
        self.actor_body = MLP(in_features, pi_sizes, activation, layer_norm=layer_norm)
        self.head = make_action_head(
            action_space,
            action_dist,
            self.actor_body.out_features,
            state_dependent_std=state_dependent_std,
            log_std_init=log_std_init,
        )
        if not trainable_std:
            fix_std(self.head, state_dependent_std)
        self.critic = (
            MLP(in_features, vf_sizes, activation, out_features=1, out_gain=VALUE_OUTPUT_GAIN, layer_norm=layer_norm)
            if with_critic
            else None
        )
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.action_shape, self.action_dtype = action_storage(action_space)
        # a Box action as the head produces it: the space itself if 1-D, else its bounds flattened
        self._flat_box = None
        if isinstance(action_space, spaces.Box):
            self._flat_box = (
                action_space
                if len(action_space.shape) == 1
                else spaces.Box(action_space.low.reshape(-1), action_space.high.reshape(-1), dtype=action_space.dtype)
            )
        self.rescale_actions = has_finite_bounds(action_space)
        self.spec = {
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
            "action_dist": action_dist,
            "log_std_init": log_std_init,
            "state_dependent_std": state_dependent_std,
            "normalize_obs": normalize_obs,
            "with_critic": with_critic,
        }
        if encoder_class is not None:
            self.spec["encoder"] = {"class": encoder_class.__name__, "kwargs": dict(encoder_kwargs or {})}
        elif self.encoder is not None:
            self.spec.update(cnn=cnn, cnn_features=cnn_features)
        # recorded only where they differ from the defaults, so older policy files read the same
        shape = {"pi_hidden_sizes": pi_hidden_sizes, "vf_hidden_sizes": vf_hidden_sizes}
        self.spec.update({k: list(v) for k, v in shape.items() if v is not None})
        self.spec.update({k: True for k, v in (("share_trunk", share_trunk), ("layer_norm", layer_norm)) if v})
        if not trainable_std:
            self.spec["trainable_std"] = False
        if not self.layout.plain:  # which key goes where in the flat input, for readers of policy.json
            self.spec["observation_layout"] = self.layout.describe()
        if action_mask is not None:
            self.spec["action_mask"] = action_mask

    def use_torch_default_init(self) -> None:
        """Re-initialise every linear and LSTM layer with PyTorch's default init instead of pgrad's
        orthogonal one (``ortho_init=false``).

        This is what Stable-Baselines3 does with ``ortho_init=False``, which the RL Zoo's tuned
        MuJoCo PPO presets use. The learned log-std vector keeps ``log_std_init``, and a
        state-dependent std layer keeps its small weights and the bias that sets the initial std.
        """
        std_layers = set(self.head.std.modules()) if hasattr(self.head, "std") else set()
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.LSTM)) and module not in std_layers:
                module.reset_parameters()

    # -- observations ------------------------------------------------------------------------

    def obs_to_tensor(self, obs: Any, action_mask: Any = None, where: str = "") -> torch.Tensor:
        """Raw env observations (single or batch) as a float32 ``(B, obs_size)`` tensor.

        With masking, the mask columns come from the observation's ``action_mask`` key or from
        ``action_mask`` (the env's ``info["action_mask"]``; None: every action allowed), checked
        by :func:`pgrad.masking.check_action_mask` (``where`` says where it came from in errors).
        """
        if self.mask_size:
            inputs = torch.from_numpy(self.layout.flatten(obs))
            if self.action_mask == "observation":
                action_mask = obs[MASK_KEY]
            if action_mask is None:
                return torch.cat([inputs, torch.ones(inputs.shape[0], self.mask_size)], dim=1)
            masks = check_action_mask(action_mask, inputs.shape[0], self.action_space, where or "given")
            return torch.cat([inputs, torch.from_numpy(masks.astype(np.float32))], dim=1)
        if not self.layout.plain:
            return torch.from_numpy(self.layout.flatten(obs))
        if isinstance(self.observation_space, spaces.Discrete):
            index = torch.as_tensor(np.asarray(obs), dtype=torch.long).reshape(-1) - int(self.observation_space.start)
            return nn.functional.one_hot(index, self.obs_size).to(torch.float32)
        tensor = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return tensor.reshape(-1, self.obs_size)

    def normalize(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        """Apply the observation normaliser, first adding ``obs`` to its statistics if ``update``."""
        if self.obs_normalizer is None:
            return obs
        if update:
            self.obs_normalizer.update(obs)
        return self.obs_normalizer(obs)

    # -- networks on normalised observations ------------------------------------------------

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The features the actor and critic MLPs read: normalised observations (without their
        mask columns) through the image encoder and the shared trunk, where the policy has them.

        The actor and the critic share the encoder and trunk, and the algorithms ask for the distribution
        and the value of one batch in two calls; the second call reuses the first one's features
        (same tensor, encoder weights unchanged since, same grad mode) instead of running the CNN
        again.
        """
        inputs = obs[..., : self.input_size] if self.mask_size else obs
        if self.encoder is None and self.trunk is None:
            return inputs
        shared = [module for module in (self.encoder, self.trunk) if module is not None]
        versions = tuple(p._version for module in shared for p in module.parameters())
        key = (versions, torch.is_grad_enabled())
        cached = self._features_cache
        if cached is not None and cached[0] is obs and cached[1] == key:
            return cached[2]
        features = inputs if self.encoder is None else self.encoder(inputs)
        if self.trunk is not None:
            features = self.trunk(features)
        self._features_cache = (obs, key, features)
        return features

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """Action distribution for normalised observations ``(B, obs_size)``."""
        if self.mask_size:  # the columns after the inputs: 1 where an action is allowed
            return self.head(self.actor_body(self.encode(obs)), obs[..., self.input_size :] > 0.5)
        return self.head(self.actor_body(self.encode(obs)))

    def value(self, obs: torch.Tensor, train_encoder: bool = True) -> torch.Tensor:
        """State values ``(B,)`` for normalised observations. ``train_encoder=False``: the value's
        gradient stops at the image encoder (an algorithm whose encoder learns from the policy
        loss alone, as REINFORCE with a baseline)."""
        if self.critic is None:
            raise RuntimeError("this policy was built without a critic")
        features = self.encode(obs)
        return self.critic(features if train_encoder else features.detach()).squeeze(-1)

    # -- the target critic ---------------------------------------------------------------------

    def add_target_critic(self) -> None:
        """Give the policy a target critic: frozen copies of its image encoder, shared trunk and
        critic, saved with the policy (``target.*``) and moved by :meth:`update_target`; no
        optimiser steps them (:func:`pgrad.algos.base.parameter_groups` leaves them out)."""
        parts = {
            name: getattr(self, name) for name in ("encoder", "trunk", "critic") if getattr(self, name) is not None
        }
        self.target = nn.ModuleDict({name: copy.deepcopy(module) for name, module in parts.items()})
        self.target.requires_grad_(False)

    def bootstrap_value(self, obs: torch.Tensor) -> torch.Tensor:
        """V of normalised observations for bootstrapping: the target critic's if there is one."""
        if self.target is None:
            return self.value(obs)
        x = obs[..., : self.input_size] if self.mask_size else obs
        for name in ("encoder", "trunk"):
            if name in self.target:
                x = self.target[name](x)
        return self.target["critic"](x).squeeze(-1)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """Move the target critic towards the critic: ``target += tau * (online - target)`` (tau=1:
        a copy). Polyak averaging as in Lillicrap et al. 2016 (DDPG), sec. 3."""
        for name, target in self.target.items():
            for target_tensor, tensor in zip(target.state_dict().values(), getattr(self, name).state_dict().values()):
                if target_tensor.is_floating_point():
                    target_tensor.lerp_(tensor, tau)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sample raw actions for normalised observations; return ``(action, log_prob, value)``."""
        dist = self.distribution(obs)
        action = self.head.deterministic(dist) if deterministic else dist.sample()
        value = self.value(obs) if self.critic is not None else None
        return action, dist.log_prob(action), value

    # -- the one place raw actions meet the environment -------------------------------------

    def env_action(self, raw_action: np.ndarray) -> np.ndarray:
        """Map raw policy actions ``(B, ...)`` to what the env accepts.

        Discrete: add the space's ``start``. Box with finite bounds: the policy lives in [-1, 1]
        per dimension; a Gaussian sample is clipped to it (SB3 and CleanRL clip likewise, without
        changing the stored sample), a TruncatedNormal sample is already inside, and both are
        rescaled affinely to ``[low, high]``. Box with an infinite bound: passed through, clipped
        to whatever bounds are finite.
        """
        space = self.action_space
        # the two common cases first, with one test each (this runs every env step)
        if self.discrete:  # (a new array either way: the envs may keep what they are given)
            action = raw_action.astype(np.int64)
            return action + int(space.start) if space.start else action
        if self._flat_box is space:
            return box_env_action(raw_action, space, self.rescale_actions)
        batch = raw_action.shape[0]
        if isinstance(space, spaces.MultiDiscrete):
            return (raw_action.reshape(batch, *space.shape) + space.start).astype(space.dtype)
        if isinstance(space, spaces.MultiBinary):
            return raw_action.reshape(batch, *space.shape).astype(space.dtype)
        return box_env_action(raw_action, self._flat_box, self.rescale_actions).reshape(batch, *space.shape)
