"""The rollout collector shared by every on-policy algorithm.

It steps a Gymnasium vector env for ``n_steps`` and returns time-first tensors. Three rules that
have bitten well-known libraries are enforced here, once, for all algorithms:

* The buffer stores the raw sampled action; only :meth:`ActorCriticPolicy.env_action` clips or
  rescales what the env receives.
* ``terminated`` and ``truncated`` stay apart, and ``next_values[t]`` is V of the episode's *final*
  observation where the episode ended at t, so truncated episodes bootstrap correctly
  (Pardo et al. 2018, "Time Limits in Reinforcement Learning"; cleanrl#198).
* Gymnasium 1.x vector envs autoreset in one of two ways (gymnasium.vector.AutoresetMode):
  - SAME_STEP: the step that ends an episode returns the reset observation and puts the final
    one in ``info["final_obs"]``. Every step is a real transition.
  - NEXT_STEP (Gymnasium's default): the ending step returns the final observation; the *next*
    ``step()`` ignores the action and returns the reset observation with reward 0. That step is
    not a transition: it is marked ``valid=False`` and algorithms drop it from their batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from pgrad.errors import ConfigError, NonFiniteError
from pgrad.normalize import RewardScaler
from pgrad.policy import ActorCriticPolicy


@dataclass
class Rollout:
    """One batch of experience, time-first ``(T, N, ...)``; see the module doc for conventions."""

    obs: torch.Tensor  # (T, N, obs_size) normalised observations the policy acted on
    actions: torch.Tensor  # (T, N, *action_shape) raw sampled actions
    log_probs: torch.Tensor  # (T, N) log pi(action | obs) at collection time
    values: torch.Tensor  # (T, N) V(obs); zeros when the policy has no critic
    rewards: torch.Tensor  # (T, N) rewards as used for learning (scaled if normalize_reward)
    terminated: torch.Tensor  # (T, N) bool: episode reached a terminal state at step t
    truncated: torch.Tensor  # (T, N) bool: episode was cut (time limit) at step t, not terminal
    next_values: torch.Tensor  # (T, N) V(observation after step t), the final one at episode ends
    valid: torch.Tensor  # (T, N) bool: False for NEXT_STEP autoreset steps, which are not transitions
    time_in_episode: torch.Tensor  # (T, N) long: t of the transition within its episode, from 0 (for gamma^t)

    @property
    def n_transitions(self) -> int:
        """How many real transitions the batch holds."""
        return int(self.valid.sum())


@dataclass
class EpisodeLog:
    """Returns and lengths (in raw env reward) of the episodes that finished during a rollout."""

    steps: list[int] = field(default_factory=list)  # global transition count when each ended
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def autoreset_mode_of(envs: VectorEnv) -> AutoresetMode:
    """The vector env's autoreset mode; DISABLED is rejected because nothing would reset envs."""
    mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
    if mode is AutoresetMode.DISABLED:
        raise ConfigError("vector envs with autoreset_mode=DISABLED are not supported; use NEXT_STEP or SAME_STEP")
    return mode


class RolloutCollector:
    """Steps ``envs`` with ``policy`` and keeps the between-rollout state (current obs, episodes)."""

    def __init__(
        self,
        envs: VectorEnv,
        policy: ActorCriticPolicy,
        seed: int,
        reward_scaler: RewardScaler | None = None,
        start_step: int = 0,
    ) -> None:
        self.envs = envs
        self.policy = policy
        self.reward_scaler = reward_scaler
        self.n_envs = envs.num_envs
        self.mode = autoreset_mode_of(envs)
        obs, _ = envs.reset(seed=seed)
        self._check_finite(obs, "observation", 0)
        self.obs = obs
        # NEXT_STEP: envs whose previous step ended an episode; their next step is a reset.
        self.pending_reset = np.zeros(self.n_envs, dtype=bool)
        self.episode_return = np.zeros(self.n_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.n_envs, dtype=np.int64)
        self.total_transitions = start_step  # counts real transitions; episodes are stamped with it

    def _check_finite(self, array: np.ndarray, what: str, step: int) -> None:
        if not np.all(np.isfinite(array)):
            bad_env = int(np.argwhere(~np.isfinite(np.asarray(array, dtype=np.float64).reshape(self.n_envs, -1)).any(1))[0, 0])
            raise NonFiniteError(f"environment returned a non-finite {what} (NaN or inf) at step {step}, env {bad_env}")

    @torch.no_grad()
    def collect(self, n_steps: int) -> tuple[Rollout, EpisodeLog]:
        """Run ``n_steps`` vector steps; return the batch and the episodes that finished."""
        policy, n_envs = self.policy, self.n_envs
        obs_buf = torch.zeros(n_steps, n_envs, policy.obs_size)  # (T, N, obs_size)
        action_shape = () if policy.discrete else policy.action_space.shape
        action_buf = torch.zeros(n_steps, n_envs, *action_shape, dtype=torch.long if policy.discrete else torch.float32)
        log_prob_buf = torch.zeros(n_steps, n_envs)  # (T, N)
        value_buf = torch.zeros(n_steps, n_envs)  # (T, N)
        reward_buf = torch.zeros(n_steps, n_envs)  # (T, N)
        terminated_buf = torch.zeros(n_steps, n_envs, dtype=torch.bool)  # (T, N)
        truncated_buf = torch.zeros(n_steps, n_envs, dtype=torch.bool)  # (T, N)
        valid_buf = torch.ones(n_steps, n_envs, dtype=torch.bool)  # (T, N)
        time_buf = torch.zeros(n_steps, n_envs, dtype=torch.long)  # (T, N)
        # Only SAME_STEP truncations need an extra V(final obs); remember where they happened.
        final_obs_slots: list[tuple[int, int, torch.Tensor]] = []
        episodes = EpisodeLog()

        for t in range(n_steps):
            obs = policy.normalize(policy.obs_to_tensor(self.obs), update=True)
            action, log_prob, value = policy.act(obs)
            env_action = policy.env_action(action.numpy())
            next_obs, reward, terminated, truncated, info = self.envs.step(env_action)
            step_number = self.total_transitions + 1
            self._check_finite(next_obs, "observation", step_number)
            self._check_finite(reward, "reward", step_number)

            valid = ~self.pending_reset
            terminated = terminated & valid
            truncated = truncated & valid & ~terminated  # both flags on one step: terminated wins
            ended = terminated | truncated
            reward = np.where(valid, reward, 0.0)

            time_buf[t] = torch.as_tensor(self.episode_length)
            self.episode_return += reward
            self.episode_length += valid
            self.total_transitions += int(valid.sum())
            for env_index in np.flatnonzero(ended):
                episodes.steps.append(self.total_transitions)
                episodes.returns.append(float(self.episode_return[env_index]))
                episodes.lengths.append(int(self.episode_length[env_index]))
            self.episode_return[ended] = 0.0
            self.episode_length[ended] = 0

            reward_t = torch.as_tensor(reward, dtype=torch.float32)
            if self.reward_scaler is not None:
                reward_t = self.reward_scaler.scale(reward_t, torch.as_tensor(ended))
            obs_buf[t] = obs
            action_buf[t] = action
            log_prob_buf[t] = log_prob
            if value is not None:
                value_buf[t] = value
            reward_buf[t] = reward_t
            terminated_buf[t] = torch.as_tensor(terminated)
            truncated_buf[t] = torch.as_tensor(truncated)
            valid_buf[t] = torch.as_tensor(valid)

            if self.mode is AutoresetMode.SAME_STEP and truncated.any():
                for env_index in np.flatnonzero(truncated):
                    final = np.asarray(info["final_obs"][env_index])
                    self._check_finite(final, "final observation", step_number)
                    final_obs_slots.append((t, int(env_index), policy.obs_to_tensor(final)))
            if self.mode is AutoresetMode.NEXT_STEP:
                self.pending_reset = ended
            self.obs = next_obs

        # next_values[t] = V(obs at t+1) is right everywhere except at SAME_STEP episode ends, whose
        # obs at t+1 is already the reset one; terminated steps never bootstrap, so only truncated
        # ones are patched with V(final obs). Under NEXT_STEP, obs at t+1 *is* the final obs.
        next_value_buf = torch.zeros(n_steps, n_envs)  # (T, N)
        if policy.critic is not None:
            last_obs = policy.normalize(policy.obs_to_tensor(self.obs))
            next_value_buf[:-1] = value_buf[1:]
            next_value_buf[-1] = policy.value(last_obs)
            if final_obs_slots:
                finals = policy.normalize(torch.cat([f for _, _, f in final_obs_slots]))
                final_values = policy.value(finals)
                for (t, env_index, _), final_value in zip(final_obs_slots, final_values):
                    next_value_buf[t, env_index] = final_value

        rollout = Rollout(
            obs=obs_buf, actions=action_buf, log_probs=log_prob_buf, values=value_buf, rewards=reward_buf,
            terminated=terminated_buf, truncated=truncated_buf, next_values=next_value_buf, valid=valid_buf,
            time_in_episode=time_buf,
        )
        return rollout, episodes
