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

Two ways to collect, sharing one step function (:meth:`RolloutCollector.step_into`, which
writes each step into row ``t`` of preallocated arrays, :class:`RolloutBuffers`):

* :meth:`RolloutCollector.collect` - a fixed number of steps per env, episodes cut anywhere
  (A2C, PPO, one-step actor-critic bootstrap across the cut).
* :meth:`RolloutCollector.collect_episodes` - whole episodes only (REINFORCE, whose Monte-Carlo
  return needs every reward until the episode ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from pgrad.envs.recorder import EpisodeRecorder
from pgrad.envs.vector import LeanSyncVectorEnv
from pgrad.errors import ConfigError, EnvError, NonFiniteError
from pgrad.masking import check_action_mask, info_masks
from pgrad.normalize import RewardScaler
from pgrad.numpy_twin import NumpyActorCritic, SeedBatchedNumpyActorCritic
from pgrad.numpy_twin.policy import compiled_kernels
from pgrad.observations import all_finite, env_row, stack_rows
from pgrad.policy import ActorCriticPolicy
from pgrad.returns import gae

if TYPE_CHECKING:
    from pgrad.batched import SeedBatchedActorCritic


def copy_observation(obs: object) -> object:
    """A copy of one env's observation (an array, or a dict/tuple of them) that outlives the env's
    buffers."""
    if isinstance(obs, dict):
        return {key: copy_observation(value) for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(copy_observation(value) for value in obs)
    return np.array(obs, copy=True)


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

    def gae(self, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`pgrad.returns.gae` over this rollout: ``(advantages, returns)``, each ``(T, N)``."""
        return gae(self.rewards, self.values, self.next_values, self.terminated, self.truncated, gamma=gamma, lam=lam)


@dataclass
class EpisodeLog:
    """Returns and lengths (in raw env reward) of the episodes that finished during a rollout."""

    steps: list[int] = field(default_factory=list)  # global transition count when each ended
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    envs: list[int] = field(default_factory=list)  # index of the env each episode ran in


@dataclass
class StepRecord:
    """What one vector step produced for each of the ``N`` envs: one row of
    :class:`RolloutBuffers` (:meth:`RolloutBuffers.record`), as ``collect_episodes`` keeps the
    steps of unfinished episodes between calls.

    Numpy throughout: a rollout becomes torch tensors once, at its end (``torch.from_numpy``
    shares memory, so that costs nothing).
    """

    obs: np.ndarray  # (N, obs_size) float32 normalised observations the policy acted on
    action: np.ndarray  # (N, *action_shape) raw sampled actions (float32, or int64 indices)
    log_prob: np.ndarray  # (N,) float32
    value: np.ndarray | None  # (N,) float32 V(obs), None without a critic
    reward: np.ndarray  # (N,) float32 rewards as used for learning (scaled if normalize_reward)
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool, False where terminated is set (terminated wins)
    valid: np.ndarray  # (N,) bool, False for NEXT_STEP reset steps
    time_in_episode: np.ndarray  # (N,) int64, t of this transition within its episode
    # (env index, raw final observation) of every env whose episode was truncated at this step,
    # in both autoreset modes (SAME_STEP: info["final_obs"]; NEXT_STEP: the returned observation).
    truncated_final_obs: list[tuple[int, np.ndarray]]


@dataclass
class RolloutBuffers:
    """Preallocated time-first numpy arrays ``(T, N, ...)`` that collector steps write into, row
    ``t`` at step ``t`` (:meth:`RolloutCollector.step_into`). Writing each step's numbers straight
    into their rows costs less than building a record per step and copying it in afterwards."""

    obs: np.ndarray  # (T, N, obs_size) float32 normalised observations the policy acted on
    action: np.ndarray  # (T, N, *action_shape) raw sampled actions
    log_prob: np.ndarray  # (T, N) float32
    value: np.ndarray  # (T, N) float32 V(obs); stays zero without a critic
    reward: np.ndarray  # (T, N) float32 rewards as used for learning
    terminated: np.ndarray  # (T, N) bool
    truncated: np.ndarray  # (T, N) bool
    valid: np.ndarray  # (T, N) bool
    time_in_episode: np.ndarray  # (T, N) int64
    has_critic: bool  # whether ``value`` is written (a StepRecord's value is None otherwise)

    @classmethod
    def allocate(cls, n_steps: int, n_envs: int, policy: ActorCriticPolicy) -> RolloutBuffers:
        """Zeroed buffers for ``n_steps`` steps of ``n_envs`` envs acted in by ``policy``."""
        return cls(
            obs=np.zeros((n_steps, n_envs, policy.obs_size), dtype=np.float32),
            action=np.zeros((n_steps, n_envs, *policy.action_shape), dtype=policy.action_dtype),
            log_prob=np.zeros((n_steps, n_envs), dtype=np.float32),
            value=np.zeros((n_steps, n_envs), dtype=np.float32),
            reward=np.zeros((n_steps, n_envs), dtype=np.float32),
            terminated=np.zeros((n_steps, n_envs), dtype=bool),
            truncated=np.zeros((n_steps, n_envs), dtype=bool),
            valid=np.ones((n_steps, n_envs), dtype=bool),
            time_in_episode=np.zeros((n_steps, n_envs), dtype=np.int64),
            has_critic=policy.critic is not None,
        )

    @property
    def n_steps(self) -> int:
        return self.reward.shape[0]

    def write_policy_step(
        self, t: int, obs: np.ndarray, action: np.ndarray, log_prob: np.ndarray, value: np.ndarray | None
    ) -> None:
        """Row ``t`` of what the policy did: the observations it saw, its actions, their
        log-probabilities and V (None without a critic)."""
        self.obs[t], self.action[t], self.log_prob[t] = obs, action, log_prob
        if value is not None:
            self.value[t] = value

    def to_rollout(self, next_values: np.ndarray) -> Rollout:
        """The buffers as a :class:`Rollout` of tensors sharing their memory, with ``next_values`` ``(T, N)``."""
        return Rollout(
            obs=torch.from_numpy(self.obs),
            actions=torch.from_numpy(self.action),
            log_probs=torch.from_numpy(self.log_prob),
            values=torch.from_numpy(self.value),
            rewards=torch.from_numpy(self.reward),
            terminated=torch.from_numpy(self.terminated),
            truncated=torch.from_numpy(self.truncated),
            next_values=torch.from_numpy(next_values),
            valid=torch.from_numpy(self.valid),
            time_in_episode=torch.from_numpy(self.time_in_episode),
        )

    def record(self, t: int, truncated_final_obs: list[tuple[int, np.ndarray]]) -> StepRecord:
        """Step ``t`` as a :class:`StepRecord` whose arrays are views of row ``t``."""
        return StepRecord(
            obs=self.obs[t],
            action=self.action[t],
            log_prob=self.log_prob[t],
            value=self.value[t] if self.has_critic else None,
            reward=self.reward[t],
            terminated=self.terminated[t],
            truncated=self.truncated[t],
            valid=self.valid[t],
            time_in_episode=self.time_in_episode[t],
            truncated_final_obs=truncated_final_obs,
        )


def record_transition(
    t: int,
    observation: np.ndarray,
    reward: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    next_step_autoreset: bool,
    pending_reset: np.ndarray,
    episode_return: np.ndarray,
    episode_length: np.ndarray,
    reward_buffer: np.ndarray,
    terminated_buffer: np.ndarray,
    truncated_buffer: np.ndarray,
    valid_buffer: np.ndarray,
    time_buffer: np.ndarray,
) -> tuple[int, int]:
    """A vector step's flags and rewards ``(N,)`` into row ``t`` of the buffers ``(T, N)``, and
    the running episode counters ``(N,)`` moved on; returns ``(transitions, episodes ended)``.
    First checks that the step's ``observation`` (a float ``(N, obs_size)`` array, or ``(0, 0)``
    where the caller checks it) and rewards are finite: if not, returns ``(-1, 0)`` and writes nothing.

    Under NEXT_STEP autoreset (``next_step_autoreset``) an env in ``pending_reset`` just reset:
    its step is no transition (``valid`` False, reward 0, no flags), and ``pending_reset``
    becomes the envs whose episode ends now. ``terminated`` wins where both flags are set.
    ``time_buffer[t]`` is each transition's index within its episode, from 0. Episodes that end
    keep their return and length in the counters: the caller logs, then zeroes them.

    :func:`pgrad.numpy_twin.compiled.record_transition` is the same function compiled, equal to
    the bit (tests/unit/test_compiled_act.py); the collector uses it when numba is installed.
    """
    # a sum is finite only if every term is (and costs a third of isfinite().all())
    for array in (observation, reward):
        if not math.isfinite(np.add.reduce(array, axis=None)) and not np.isfinite(array).all():
            return -1, 0
    time_buffer[t] = episode_length
    if next_step_autoreset:
        valid = ~pending_reset
        terminated = terminated & valid
        truncated = truncated & valid & ~terminated
        reward = np.where(valid, reward, 0.0)
        episode_length += valid
        n_valid = int(valid.sum())
    else:
        valid = True
        terminated = terminated.astype(bool)
        truncated = truncated & ~terminated
        episode_length += 1
        n_valid = len(reward)
    ended = terminated | truncated
    valid_buffer[t] = valid
    terminated_buffer[t] = terminated
    truncated_buffer[t] = truncated
    episode_return += reward
    reward_buffer[t] = reward  # float32, as reward.astype(np.float32) rounds
    if next_step_autoreset:
        pending_reset[:] = ended
    return n_valid, int(ended.sum())


# what record_transition checks when the collector checks the observation itself
NO_OBSERVATION = np.zeros((0, 0))

# collect_episodes writes its steps into buffers of this many rows, allocated as needed
EPISODE_CHUNK_STEPS = 256


def autoreset_mode_of(envs: VectorEnv) -> AutoresetMode:
    """The vector env's autoreset mode; DISABLED is rejected because nothing would reset envs."""
    mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
    if mode is AutoresetMode.DISABLED:
        raise ConfigError("vector envs with autoreset_mode=DISABLED are not supported; use NEXT_STEP or SAME_STEP")
    return mode


def env_failure(exc: Exception, call: str, step: int) -> EnvError:
    """The one-line TrainingError for an exception the envs raised in ``call`` at ``step``,
    naming the env copy where the vector env knows it (pgrad/envs/vector.py)."""
    if isinstance(exc, EnvError):
        return exc
    index = getattr(exc, "pgrad_env_index", None)
    where = f"step {step}" + (f", env {index}" if index is not None else "")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (EOFError, BrokenPipeError, ConnectionResetError)):
        detail = "an env worker process died" + (f" ({detail})" if detail else "")
    return EnvError(
        f"the environment raised {type(exc).__name__} in {call} at {where}: {detail or 'no message'}", index
    )


class RolloutCollector:
    """Steps ``envs`` with ``policy`` and keeps the between-rollout state (current obs, episodes)."""

    def __init__(
        self,
        envs: VectorEnv,
        policy: ActorCriticPolicy,
        seed: int,
        reward_scaler: RewardScaler | None = None,
        start_step: int = 0,
        fast_inference: bool = True,
        initial_obs: np.ndarray | None = None,
    ) -> None:
        """``fast_inference``: act through :class:`pgrad.numpy_twin.NumpyActorCritic` where the
        policy supports it (same random numbers, float32 rounding apart the same actions); False
        forces the plain torch path. ``initial_obs``: the current observations of envs that are
        already running (a resumed seed-batched run replayed them); None resets ``envs`` with ``seed``."""
        self.envs = envs
        self.policy = policy
        self.fast_inference = fast_inference
        self.fast: NumpyActorCritic | None = None
        self._sync_fast_inference()
        self.reward_scaler = reward_scaler
        self.n_envs = envs.num_envs
        self.mode = autoreset_mode_of(envs)
        # the allowed actions of each env's current observation, when the env reports them in its
        # info (policy.action_mask == "info"); None: all allowed. A resume restores it.
        self.action_mask: np.ndarray | None = None
        self.masks_in_info = policy.action_mask == "info"
        if initial_obs is None:
            try:
                obs, info = envs.reset(seed=seed)
            except Exception as exc:
                raise env_failure(exc, "reset", start_step) from exc
            if self.masks_in_info:
                self._read_action_mask(info, 0)
        else:
            obs = initial_obs
        self._check_finite(obs, "observation", 0)
        self.obs = obs
        # the step's bookkeeping, compiled where numba is installed (the same numbers to the bit)
        kernels = compiled_kernels()
        self._record_transition = record_transition if kernels is None else kernels.record_transition
        # NEXT_STEP: envs whose previous step ended an episode; their next step is a reset (updated
        # in place by record_transition; all False under SAME_STEP, where every step is a transition)
        self.pending_reset = np.zeros(self.n_envs, dtype=bool)
        self.episode_return = np.zeros(self.n_envs, dtype=np.float64)
        self.episode_length = np.zeros(self.n_envs, dtype=np.int64)
        self.total_transitions = start_step  # counts real transitions; episodes are stamped with it
        # collect_episodes keeps the steps of episodes still running between its calls; None means
        # no such buffer (nothing collected by it yet, or collect() consumed steps since).
        self._episode_buffer: list[StepRecord] | None = None
        # per env: index into _episode_buffer where its running episode began, None if that
        # episode began before the buffer did (its first steps are lost, so it is never returned)
        self._episode_starts: list[int | None] = []

    def _sync_fast_inference(self) -> None:
        """(Re)build the numpy twin of the policy: its weights changed in the update since the last
        call, and a part of it may have been replaced by one the fast path does not support."""
        fast = self.fast
        if self.fast_inference and fast is not None and fast.policy is self.policy and fast.refresh_in_place():
            return  # the same parts as before, so still supported: a rollout of one step skips the check
        if self.fast_inference and NumpyActorCritic.supports(self.policy):
            self.fast = NumpyActorCritic(self.policy, fused=True)  # refreshed before every rollout
        else:
            self.fast = None

    def _read_action_mask(self, info: dict, step: int) -> None:
        """Keep the masks of ``info`` (a reset's or a step's) for the next step's observations
        (called where the policy reads masks from info)."""
        masks = info_masks(info, self.n_envs, self.policy.mask_size)
        where = f"in info['action_mask'] at step {step}"
        self.action_mask = (
            None if masks is None else check_action_mask(masks, self.n_envs, self.policy.action_space, where)
        )

    @torch.no_grad()
    def _values(self, raw_obs: np.ndarray, env_indices: np.ndarray | None = None) -> np.ndarray:
        """V of raw observations ``(B, ...)`` (frozen normalisation), float32 ``(B,)``, by the same
        implementation that valued the rollout's steps, so a bootstrap V(s') and the V(s) it is
        compared with agree. ``env_indices``: which env each row came from, if not every env in
        order (a seed-batched collector values each row with its seed's policy; one policy ignores it)."""
        if self.fast is not None:
            return self.fast.value(self.fast.normalize(raw_obs))
        return self.policy.bootstrap_value(self.policy.normalize(self.policy.obs_to_tensor(raw_obs))).numpy()

    def _check_finite(self, array: np.ndarray, what: str, step: int) -> None:
        if isinstance(array, (dict, tuple)):  # Dict / Tuple observations: check each key's array
            if not all_finite(array):
                raise NonFiniteError(f"environment returned a non-finite {what} (NaN or inf) at step {step}")
            return
        # A sum is finite only if every term is (NaN and inf propagate), and costs a third of
        # isfinite().all(); only a non-finite sum (or an overflowing one) needs the exact check.
        if math.isfinite(np.add.reduce(array, axis=None)):
            return
        if not np.isfinite(array).all():
            not_finite = ~np.isfinite(np.asarray(array, dtype=np.float64).reshape(self.n_envs, -1))
            bad_env = int(np.flatnonzero(not_finite.any(axis=1))[0])  # the first env with any NaN/inf entry
            raise NonFiniteError(f"environment returned a non-finite {what} (NaN or inf) at step {step}, env {bad_env}")

    def step_into(self, buffers: RolloutBuffers, t: int, episodes: EpisodeLog) -> list[tuple[int, np.ndarray]]:
        """Act in every env once, writing the step into row ``t`` of ``buffers``; update the
        running episode counters and log the episodes that end in ``episodes``. Returns
        ``(env index, raw final observation)`` of every env whose episode was truncated at this
        step, in both autoreset modes (SAME_STEP: ``info["final_obs"]``; NEXT_STEP: the returned
        observation), for the caller's bootstrap V; usually empty.

        :meth:`collect` and :meth:`collect_episodes` are loops over this; an algorithm that fills
        buffers of its own (recurrent PPO keeps the LSTM state beside each step) calls it directly.

        Not wrapped in ``torch.no_grad``: entering that context costs a few microseconds every env
        step, and nothing here needs it. The torch path's ``policy.act`` is no-grad itself, and
        everything else is numpy or touches tensors without gradients (the normaliser's buffers,
        the noise the twin draws); tests/unit/test_fast_inference.py steps with gradients on."""
        policy = self.policy
        if self.fast is not None:
            env_action = self.fast.act_into(self.obs, buffers, t)
        else:
            # (the step only names where a bad mask came from; formatted only for a masked policy)
            where = f"of the observation at step {self.total_transitions}" if policy.mask_size else ""
            obs_t = policy.normalize(
                policy.obs_to_tensor(self.obs, self.action_mask, where), update=True
            )  # (N, obs_size)
            action_t, log_prob_t, value_t = policy.act(obs_t)
            action = action_t.numpy()
            value = value_t.numpy() if value_t is not None else None
            buffers.write_policy_step(t, obs_t.numpy(), action, log_prob_t.numpy(), value)
            env_action = policy.env_action(action)
        step_number = self.total_transitions + 1
        try:
            next_obs, reward, terminated, truncated, info = self.envs.step(env_action)
        except Exception as exc:
            raise env_failure(exc, "step", step_number) from exc
        if self.masks_in_info:
            self._read_action_mask(info, step_number)
        # a flat float observation is checked for NaN and inf with the rewards, others here
        flat_observation = type(next_obs) is np.ndarray and next_obs.ndim == 2 and next_obs.dtype.kind == "f"
        if not flat_observation:
            self._check_finite(next_obs, "observation", step_number)
        n_valid, n_ended = self._record_transition(
            t,
            next_obs if flat_observation else NO_OBSERVATION,
            reward,
            terminated,
            truncated,
            self.mode is AutoresetMode.NEXT_STEP,
            self.pending_reset,
            self.episode_return,
            self.episode_length,
            buffers.reward,
            buffers.terminated,
            buffers.truncated,
            buffers.valid,
            buffers.time_in_episode,
        )
        if n_valid < 0:  # an observation or a reward was not finite; nothing was recorded
            self._check_finite(next_obs, "observation", step_number)
            self._check_finite(reward, "reward", step_number)
        self.total_transitions += n_valid
        truncated_final_obs = []
        if n_ended:  # most steps end nothing; the per-env work is skipped then
            truncated_now = buffers.truncated[t]
            ended = buffers.terminated[t] | truncated_now
            for env_index in np.flatnonzero(ended):
                episodes.steps.append(self.total_transitions)
                episodes.returns.append(float(self.episode_return[env_index]))
                episodes.lengths.append(int(self.episode_length[env_index]))
                episodes.envs.append(int(env_index))
            self.episode_return[ended] = 0.0
            self.episode_length[ended] = 0
            for env_index in np.flatnonzero(truncated_now):
                if self.mode is AutoresetMode.SAME_STEP:
                    final = copy_observation(info["final_obs"][env_index])
                    self._check_finite(final, "final observation", step_number)
                else:  # NEXT_STEP returns the final observation itself; the reset comes one step later
                    final = copy_observation(env_row(next_obs, env_index))
                truncated_final_obs.append((int(env_index), final))
        if self.reward_scaler is not None:
            ended = buffers.terminated[t] | buffers.truncated[t]
            buffers.reward[t] = self.reward_scaler.scale_array(buffers.reward[t], ended)
        self.obs = next_obs
        return truncated_final_obs

    @torch.no_grad()
    def collect(self, n_steps: int) -> tuple[Rollout, EpisodeLog]:
        """Run ``n_steps`` vector steps; return the batch and the episodes that finished."""
        policy, n_envs = self.policy, self.n_envs
        self._episode_buffer = None  # the steps taken here are not kept for collect_episodes
        self._sync_fast_inference()
        # numpy buffers: a per-step write costs well under a microsecond, a torch one several
        buffers = RolloutBuffers.allocate(n_steps, n_envs, policy)
        if self.fast is not None:  # every step's action noise, drawn now (same numbers)
            self.fast.draw_noise_ahead(n_steps, n_envs)
        # Only SAME_STEP truncations need an extra V(final obs); remember where they happened.
        final_obs_slots: list[tuple[int, int, np.ndarray]] = []  # (t, env index, raw final obs (1, ...))
        episodes = EpisodeLog()
        same_step = self.mode is AutoresetMode.SAME_STEP
        for t in range(n_steps):
            truncated_final_obs = self.step_into(buffers, t, episodes)
            if truncated_final_obs and same_step:
                for env_index, final in truncated_final_obs:
                    final_obs_slots.append((t, env_index, final))
        obs_buf, value_buf = buffers.obs, buffers.value

        # next_values[t] = V(obs at t+1) is right everywhere except at SAME_STEP episode ends, whose
        # obs at t+1 is already the reset one; terminated steps never bootstrap, so only truncated
        # ones are patched with V(final obs). Under NEXT_STEP, obs at t+1 *is* the final obs.
        # (numpy until the Rollout is built: a torch slice assignment costs several numpy ones, and
        # a one-step actor-critic collects one step per update)
        next_value_buf = np.zeros((n_steps, n_envs), dtype=np.float32)  # (T, N)
        if policy.critic is not None:
            if policy.target is None:
                next_value_buf[:-1] = value_buf[1:]
            elif n_steps > 1:  # bootstraps from the target critic, on the stored (normalised) observations
                stored = torch.from_numpy(obs_buf[1:]).reshape((n_steps - 1) * n_envs, policy.obs_size)
                next_value_buf[:-1] = policy.bootstrap_value(stored).reshape(n_steps - 1, n_envs).numpy()
            next_value_buf[-1] = self._values(self.obs)
            if final_obs_slots:
                final_values = self._values(
                    stack_rows([f for _, _, f in final_obs_slots]),
                    np.array([env_index for _, env_index, _ in final_obs_slots]),
                )
                for (t, env_index, _), final_value in zip(final_obs_slots, final_values):
                    next_value_buf[t, env_index] = final_value

        return buffers.to_rollout(next_value_buf), episodes

    @torch.no_grad()
    def collect_episodes(self, n_episodes: int, max_steps: int, min_transitions: int = 0) -> tuple[Rollout, EpisodeLog]:
        """Step until whole episodes are complete; return only complete episodes.

        Stepping stops as soon as at least ``n_episodes`` episodes that this method saw from their
        first step have finished and together hold at least ``min_transitions`` transitions, or
        once ``max_steps`` transitions (summed over envs) were taken in this call, whichever comes
        first. Hitting ``max_steps`` may therefore return fewer episodes, or none; the caller
        decides what that means (REINFORCE raises if a whole budget passes without one).

        Layout: a :class:`Rollout` of shape ``(T, 1, ...)`` holding the complete episodes one
        after another, in the order they finished (by env index within one step), with the
        NEXT_STEP reset steps removed (``valid`` is all True). Every episode ends with
        ``terminated`` or ``truncated`` set, so return recursions such as
        :func:`pgrad.returns.discounted_returns` never cross from one episode into the next, and
        ``time_in_episode`` runs 0, 1, ... within each. With a critic, ``next_values`` holds the
        collection-time V of the next observation inside an episode, V(final observation) computed
        now at a truncated end, and 0 at a terminated end; without one it is all zeros.

        With ``n_envs > 1`` several envs may finish on the same step, so more than ``n_episodes``
        can be returned, and the episodes other envs are in the middle of when stepping stops are
        kept here and completed by a later call. Their first steps were then sampled by the
        policy as it was one or more updates earlier (more when other envs finish several short
        episodes meanwhile), which makes them slightly off-policy; their stored ``log_probs`` are
        the behaviour policy's. With ``n_envs == 1`` (REINFORCE's default) stepping always stops
        at an episode end and there is no lag. Episodes already running when this method was first called (or after a
        :meth:`collect`, which consumes steps without keeping them) are logged in the returned
        :class:`EpisodeLog` when they end but, their first steps being lost, never returned.

        The number of transitions taken in this call, complete episodes or not, is the growth of
        ``self.total_transitions``.
        """
        if n_episodes < 1 or max_steps < 1 or min_transitions < 0:
            raise ConfigError(
                f"collect_episodes needs n_episodes >= 1, max_steps >= 1, min_transitions >= 0; "
                f"got {n_episodes}, {max_steps}, {min_transitions}"
            )
        self._sync_fast_inference()
        if self._episode_buffer is None:
            self._episode_buffer = []
            # An env in the middle of an episode has steps this buffer never saw.
            self._episode_starts = [0 if length == 0 else None for length in self.episode_length]
        buffer, starts = self._episode_buffer, self._episode_starts
        finished: list[tuple[int, int, int]] = []  # (env index, first, last) buffer indices, inclusive
        complete_transitions = 0
        steps_taken = 0
        episodes = EpisodeLog()
        chunk, row = None, 0  # steps are written into chunks of rows; the buffer holds views of them
        transitions_before = self.total_transitions
        while steps_taken < max_steps and (len(finished) < n_episodes or complete_transitions < min_transitions):
            if chunk is None or row == chunk.n_steps:
                chunk, row = RolloutBuffers.allocate(EPISODE_CHUNK_STEPS, self.n_envs, self.policy), 0
            episodes_before = len(episodes.envs)
            buffer.append(chunk.record(row, self.step_into(chunk, row, episodes)))
            index = len(buffer) - 1
            steps_taken = self.total_transitions - transitions_before
            # every env whose episode ended at this step was logged by it, in env order
            for env_index in episodes.envs[episodes_before:]:
                if starts[env_index] is not None:
                    finished.append((env_index, starts[env_index], index))
                    complete_transitions += int(chunk.time_in_episode[row, env_index]) + 1
                # NEXT_STEP: the next step of this env is a reset step; it is dropped below as invalid
                starts[env_index] = index + 1
            row += 1

        rollout = self._episodes_to_rollout(buffer, finished)
        # Forget the steps no running episode needs any more.
        keep_from = min((start for start in starts if start is not None), default=len(buffer))
        self._episode_buffer = buffer[keep_from:]
        self._episode_starts = [None if start is None else start - keep_from for start in starts]
        return rollout, episodes

    def _episodes_to_rollout(self, buffer: list[StepRecord], finished: list[tuple[int, int, int]]) -> Rollout:
        """Concatenate the finished episodes of ``buffer`` into a ``(T, 1, ...)`` Rollout."""
        policy = self.policy
        action_shape = policy.action_shape
        action_dtype = torch.long if policy.action_dtype == np.int64 else torch.float32
        if not finished:
            empty = torch.zeros(0, 1)  # (0, 1)
            return Rollout(
                obs=torch.zeros(0, 1, policy.obs_size),
                actions=torch.zeros(0, 1, *action_shape, dtype=action_dtype),
                log_probs=empty,
                values=empty.clone(),
                rewards=empty.clone(),
                terminated=torch.zeros(0, 1, dtype=torch.bool),
                truncated=torch.zeros(0, 1, dtype=torch.bool),
                next_values=empty.clone(),
                valid=torch.zeros(0, 1, dtype=torch.bool),
                time_in_episode=torch.zeros(0, 1, dtype=torch.long),
            )
        first_needed = min(first for _, first, _ in finished)
        last_needed = max(last for _, _, last in finished)
        steps = buffer[first_needed : last_needed + 1]
        # (S, N, ...) over the part of the buffer the finished episodes span
        obs = torch.from_numpy(np.stack([s.obs for s in steps]))  # (S, N, obs_size)
        actions = torch.from_numpy(np.stack([s.action for s in steps]))  # (S, N, *action_shape)
        log_probs = torch.from_numpy(np.stack([s.log_prob for s in steps]))  # (S, N)
        rewards = torch.from_numpy(np.stack([s.reward for s in steps]))  # (S, N)
        valid = torch.from_numpy(np.stack([s.valid for s in steps]))  # (S, N)
        times = torch.from_numpy(np.stack([s.time_in_episode for s in steps]))  # (S, N)
        has_critic = policy.critic is not None
        values = (
            torch.from_numpy(np.stack([s.value for s in steps])) if has_critic else torch.zeros(len(steps), self.n_envs)
        )  # (S, N)

        pieces: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("obs", "actions", "log_probs", "rewards", "values", "times")
        }
        terminated, truncated, next_values = [], [], []
        final_obs: list[np.ndarray] = []
        final_slots: list[int] = []  # position in the concatenation of each truncated episode's last step
        length_so_far = 0
        for env_index, first, last in finished:
            span = slice(first - first_needed, last - first_needed + 1)
            keep = valid[span, env_index]  # (L_span,) drops a NEXT_STEP reset step at the start
            pieces["obs"].append(obs[span, env_index][keep])
            pieces["actions"].append(actions[span, env_index][keep])
            pieces["log_probs"].append(log_probs[span, env_index][keep])
            pieces["rewards"].append(rewards[span, env_index][keep])
            pieces["values"].append(values[span, env_index][keep])
            pieces["times"].append(times[span, env_index][keep])
            length = int(keep.sum())
            end_step = buffer[last]
            ended_by_termination = bool(end_step.terminated[env_index])
            terminated.append(
                torch.arange(length) == length - 1 if ended_by_termination else torch.zeros(length, dtype=torch.bool)
            )
            truncated.append(
                torch.zeros(length, dtype=torch.bool) if ended_by_termination else torch.arange(length) == length - 1
            )
            episode_values = pieces["values"][-1]
            next_values.append(torch.cat([episode_values[1:], torch.zeros(1)]))  # (L,) the end is filled below
            if not ended_by_termination and has_critic:
                final_obs.append(dict(end_step.truncated_final_obs)[env_index])
                final_slots.append(length_so_far + length - 1)
            length_so_far += length

        next_value_flat = torch.cat(next_values)  # (T,)
        if final_obs:
            next_value_flat[final_slots] = torch.from_numpy(self._values(stack_rows(final_obs)))  # (n_truncated,)
        total = length_so_far
        return Rollout(
            obs=torch.cat(pieces["obs"]).unsqueeze(1),  # (T, 1, obs_size)
            actions=torch.cat(pieces["actions"]).unsqueeze(1),  # (T, 1, *action_shape)
            log_probs=torch.cat(pieces["log_probs"]).unsqueeze(1),  # (T, 1)
            values=torch.cat(pieces["values"]).unsqueeze(1),  # (T, 1)
            rewards=torch.cat(pieces["rewards"]).unsqueeze(1),  # (T, 1)
            terminated=torch.cat(terminated).unsqueeze(1),  # (T, 1)
            truncated=torch.cat(truncated).unsqueeze(1),  # (T, 1)
            next_values=next_value_flat.unsqueeze(1),  # (T, 1)
            valid=torch.ones(total, 1, dtype=torch.bool),  # (T, 1)
            time_in_episode=torch.cat(pieces["times"]).unsqueeze(1),  # (T, 1)
        )


# -- the seed axis: one collector over several seeds' envs ---------------------------------------
# Collecting for several seeds at once: all seeds' envs in one loop.
#
# :class:`SeedBatchedCollector` is :class:`pgrad.rollout.RolloutCollector` run over the ``S x N``
# sub-envs of ``S`` seeds (``N`` each) as one vector env, with a seed-aware numpy twin of the
# policies. Every correctness rule of the collector (raw actions stored, truncation bootstrapped
# with V(final observation), same-step autoreset) is the shared code's; what is per seed here is
# only what a single-seed run keeps per seed:
#
# * Weights: seed ``s``'s rows of the batch go through seed ``s``'s weights: its own compiled
#   rollout step where numba is installed (its lone run's), else its slice of the stacked weights
#   in one batched product per layer, actor and critic fused (pgrad/numpy_twin/policy.py).
# * Observation normaliser, reward scaler: each seed's own objects (its policy's), updated with
#   its own rows only, in the same order as its single-seed run.
# * Random numbers: one ``torch.Generator`` per seed, started from the state torch's global
#   generator has when seed ``s``'s single-seed run starts collecting; seed ``s``'s noise is drawn
#   from it with the same call and shape as the single-seed fast path draws from the global one.
# * Env seeds: sub-env ``i`` of seed ``s`` is reset with ``s + i``, as ``envs.reset(seed=s)`` does.
# * Episodes and step counts: split by seed afterwards (:meth:`SeedBatchedCollector.collect`).
#
# With next-step autoreset each seed counts its own transitions (``seed_transitions``).


class SeedBatchedRewardScaler:
    """Each seed's own :class:`RewardScaler` on its own block of ``S*N`` rewards."""

    def __init__(self, scalers: Sequence[RewardScaler], n_envs: int) -> None:
        self.scalers, self.n_envs = list(scalers), n_envs
        self.frozen = np.zeros(len(self.scalers), dtype=bool)  # seeds whose statistics no longer change

    def scale_array(self, rewards: np.ndarray, episode_ended: np.ndarray, update: bool = True) -> np.ndarray:
        n = self.n_envs
        return np.concatenate(
            [
                scaler.scale_array(
                    rewards[s * n : (s + 1) * n], episode_ended[s * n : (s + 1) * n], update and not self.frozen[s]
                )
                for s, scaler in enumerate(self.scalers)
            ]
        )


class SeedBatchedCollector(RolloutCollector):
    """The collector over every seed's envs, acting through :class:`SeedBatchedNumpyActorCritic`."""

    def __init__(
        self,
        model: SeedBatchedActorCritic,
        policies: Sequence[ActorCriticPolicy],
        vector_envs: Sequence[VectorEnv],
        seeds: Sequence[int],
        generators: Sequence[torch.Generator],
        start_steps: Sequence[int],
        *,
        keep_recorders: bool = False,
        restored: Sequence[RolloutCollector] | None = None,
    ) -> None:
        """``vector_envs``: each seed's own (un-reset) vector env, all with one autoreset mode; their
        sub-envs are stepped here as one. ``start_steps``: each seed's transition count so far
        (its episodes are stamped with its own count, as its own collector stamps them).

        ``keep_recorders``: step through the sub-envs' resume recorders (pgrad/envs/recorder.py,
        a few microseconds a step), needed only if checkpoints are written. ``restored``: each seed's collector
        as loaded from its checkpoint, its envs already replayed; collection continues from their
        observations and running episodes instead of resetting the envs.
        """
        self.n_seeds, self.envs_per_seed = len(seeds), vector_envs[0].num_envs
        self.seed_transitions = np.array(start_steps, dtype=np.int64)  # (S,) each seed's transitions so far
        sub_envs = [
            env.env if isinstance(env, EpisodeRecorder) and not keep_recorders else env
            for vector_env in vector_envs
            for env in vector_env.envs
        ]
        combined = LeanSyncVectorEnv(
            [lambda env=env: env for env in sub_envs],
            autoreset_mode=autoreset_mode_of(vector_envs[0]),
            keep_infos=False,
        )
        self.twin = SeedBatchedNumpyActorCritic(model, policies, self.envs_per_seed, generators)
        scalers = [policy.reward_scaler for policy in policies]
        scaler = SeedBatchedRewardScaler(scalers, self.envs_per_seed) if scalers[0] is not None else None
        initial_obs = None if restored is None else np.concatenate([collector.obs for collector in restored])
        super().__init__(
            combined,
            policies[0],
            seed=combined_env_seeds(seeds, self.envs_per_seed),
            reward_scaler=scaler,
            start_step=0,
            initial_obs=initial_obs,
        )
        if restored is not None:
            self.episode_return = np.concatenate([collector.episode_return for collector in restored])
            self.episode_length = np.concatenate([collector.episode_length for collector in restored])
            self.pending_reset = np.concatenate([collector.pending_reset for collector in restored])

    def freeze(self, stopped: np.ndarray) -> None:
        """Stop updating the observation and return statistics of the ``stopped`` seeds ``(S,)``:
        they stopped early and sit out the group's updates; their envs still step with the rest."""
        self.twin.frozen = np.asarray(stopped, dtype=bool)
        if self.reward_scaler is not None:
            self.reward_scaler.frozen = self.twin.frozen

    def seed_state(self, s: int) -> tuple[dict, dict[str, torch.Tensor]]:
        """Checkpoint state of seed ``s``'s envs, exactly as its own single-seed collector would hold it."""
        rows = slice(s * self.envs_per_seed, (s + 1) * self.envs_per_seed)
        from pgrad.checkpointing import collector_state  # checkpointing imports this module

        return collector_state(self, rows=rows, total_transitions=int(self.seed_transitions[s]))

    def _sync_fast_inference(self) -> None:
        self.fast = self.twin
        self.twin.refresh()

    @torch.no_grad()
    def _values(self, raw_obs: np.ndarray, env_indices: np.ndarray | None = None) -> np.ndarray:
        return self.twin.value(self.twin.normalize(raw_obs, rows=env_indices), rows=env_indices)

    def collect_episodes(self, *args, **kwargs):
        raise NotImplementedError("seed-batched collection is by fixed numbers of steps (collect_per_seed)")

    def step_into(self, buffers: RolloutBuffers, t: int, episodes: EpisodeLog) -> list[tuple[int, np.ndarray]]:
        """:meth:`RolloutCollector.step_into`, with each episode that ends stamped with its own
        seed's transition count (next-step autoreset gives seeds different counts)."""
        first_new = len(episodes.steps)
        truncated_final_obs = super().step_into(buffers, t, episodes)
        if self.mode is AutoresetMode.SAME_STEP:  # every step a transition: no need to count them
            self.seed_transitions += self.envs_per_seed
        else:
            self.seed_transitions += buffers.valid[t].reshape(self.n_seeds, self.envs_per_seed).sum(1)
        for index in range(first_new, len(episodes.steps)):
            episodes.steps[index] = int(self.seed_transitions[episodes.envs[index] // self.envs_per_seed])
        return truncated_final_obs

    def collect_per_seed(self, n_steps: int) -> list[tuple[Rollout, EpisodeLog]]:
        """``n_steps`` steps of every seed's envs; each seed's ``(rollout (T, N, ...), episodes)``."""
        rollout, episodes = self.collect(n_steps)
        n = self.envs_per_seed
        results = []
        for s in range(self.n_seeds):
            columns = slice(s * n, (s + 1) * n)
            seed_rollout = Rollout(
                **{name: getattr(rollout, name)[:, columns] for name in Rollout.__dataclass_fields__}
            )
            log = EpisodeLog()
            for step, episode_return, length, env_index in zip(
                episodes.steps, episodes.returns, episodes.lengths, episodes.envs
            ):
                if env_index // n == s:
                    log.steps.append(step)
                    log.returns.append(episode_return)
                    log.lengths.append(length)
                    log.envs.append(env_index - s * n)
            results.append((seed_rollout, log))
        return results

    def close(self) -> None:
        """Nothing to close: the sub-envs belong to the seeds' own vector envs, whose owners close them."""


def combined_env_seeds(seeds: Sequence[int], n_envs: int) -> list[int]:
    """The reset seed of every sub-env, seed-major, as ``envs.reset(seed=s)`` seeds copy ``i`` of seed ``s``."""
    return [seed + i for seed in seeds for i in range(n_envs)]
