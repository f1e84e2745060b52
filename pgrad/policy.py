"""The policy every MLP algorithm trains: observation normaliser, actor, optional critic.

It also owns the one place where a sampled action becomes what the environment receives
(:meth:`ActorCriticPolicy.env_action`), so that the raw sample, on which log-probabilities are
computed, is never altered in the rollout buffer (docs/architecture.md, "Correctness rules").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import make_action_head
from pgrad.errors import UnsupportedSpaceError
from pgrad.nets import MLP, VALUE_OUTPUT_GAIN
from pgrad.normalize import ObservationNormalizer, RewardScaler


def observation_size(space: spaces.Space) -> int:
    """Length of the flat float vector the networks see for ``space``."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise UnsupportedSpaceError(
        f"observation space {space} is not supported; supported: Box (any shape, flattened) and Discrete (one-hot)"
    )


def has_finite_bounds(space: spaces.Space) -> bool:
    """True for a Box whose every bound is finite, i.e. one pgrad rescales from [-1, 1]."""
    return isinstance(space, spaces.Box) and bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))


def box_env_action(raw_action: np.ndarray, space: spaces.Box, rescale: bool) -> np.ndarray:
    """Raw continuous actions to a Box env's: with ``rescale`` (finite bounds) clip to [-1, 1] and
    map affinely to ``[low, high]``; otherwise clip to the bounds."""
    # np.minimum(np.maximum(...)) is np.clip without its wrapper, ~5x cheaper on one action
    if rescale:
        unit = np.minimum(np.maximum(raw_action, -1.0), 1.0)
        return (space.low + (unit + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)
    return np.minimum(np.maximum(raw_action, space.low), space.high).astype(space.dtype)


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
    ) -> None:
        """``features_size``: input width of the actor and critic MLPs, if not the flat observation
        size (a recurrent policy feeds them its LSTM output instead of the observation)."""
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_size = observation_size(observation_space)
        self.obs_normalizer = ObservationNormalizer((self.obs_size,)) if normalize_obs else None
        # Set by the algorithm when it scales rewards; part of the state dict so it is saved too.
        self.reward_scaler: RewardScaler | None = None
        in_features = self.obs_size if features_size is None else features_size
        self.actor_body = MLP(in_features, hidden_sizes, activation)
        self.head = make_action_head(
            action_space,
            action_dist,
            self.actor_body.out_features,
            state_dependent_std=state_dependent_std,
            log_std_init=log_std_init,
        )
        self.critic = (
            MLP(in_features, hidden_sizes, activation, out_features=1, out_gain=VALUE_OUTPUT_GAIN)
            if with_critic
            else None
        )
        self.discrete = isinstance(action_space, spaces.Discrete)
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

    def obs_to_tensor(self, obs: Any) -> torch.Tensor:
        """Raw env observations (single or batch) as a float32 ``(B, obs_size)`` tensor."""
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

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """Action distribution for normalised observations ``(B, obs_size)``."""
        return self.head(self.actor_body(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State values ``(B,)`` for normalised observations."""
        if self.critic is None:
            raise RuntimeError("this policy was built without a critic")
        return self.critic(obs).squeeze(-1)

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
        if self.discrete:
            return raw_action.astype(np.int64) + int(space.start)
        return box_env_action(raw_action, space, self.rescale_actions)
