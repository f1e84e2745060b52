"""Recurrent PPO: PPO-Clip with LSTM actor and critic, for partially observable tasks.

The losses, GAE, action heads, observation normaliser and collector step are PPO's
(:mod:`pgrad.algos.ppo`); what changes is that the policy carries an LSTM state ``(h, c)``
from step to step, which brings three rules (as SB3-contrib RecurrentPPO and CleanRL ppo_atari_lstm keep them):

1. **Reset at episode starts.** During collection the state of an env is zeroed before it acts
   on the first observation of an episode, so memory never leaks from one episode into the next.
2. **Store the start state of each training sequence.** Every env's rollout is cut into
   sequences on a grid of ``seq_len`` steps; the state the policy held at each grid point is kept.
3. **Minibatch whole sequences, recompute the state every epoch.** A grid sequence is split
   further where an episode starts inside it, so every training sequence begins either at a grid
   point (from the stored state) or at an episode start (from zeros) and has no reset inside.
   Each is padded to ``seq_len`` with a mask, and the LSTM runs over a minibatch of them in one
   call (no Python loop over time), from the stored states, with the current weights: the
   hidden states, and hence log-probabilities and values, are those of the policy being trained.

With the weights unchanged, the recomputed log-probabilities equal the collected ones; the tests
check this, and that the one-call path equals a plain step-by-step loop with resets.

Sources: Hausknecht & Stone (2015), "Deep Recurrent Q-Learning for POMDPs" (zeroed state per
episode, BPTT over sequences); sb3-contrib ``RecurrentPPO`` (sequences split at episode starts and
padded, separate or shared actor/critic LSTMs, the CartPoleNoVel/PendulumNoVel benchmarks);
CleanRL ``ppo_atari_lstm.py`` (state stored at the start of the rollout and recomputed per epoch,
minibatches of whole env sequences, orthogonal LSTM weights with zero biases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.algos.base import Algorithm, IterationResult, decay_learning_rate, parameter_groups
from pgrad.algos.ppo import PPOConfig, minibatch_step_metrics
from pgrad.config import param
from pgrad.errors import ConfigError
from pgrad.losses import clipped_surrogate_loss, explained_variance, value_loss
from pgrad.observations import is_single_observation
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import EpisodeLog, Rollout, RolloutBuffers

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""``(h, c)`` of one LSTM, each of shape ``(lstm_layers, B, lstm_hidden_size)``."""


@dataclass(frozen=True)
class RecurrentPPOConfig(PPOConfig):
    """Recurrent PPO hyperparameters: PPO's, with sb3-contrib RecurrentPPO's rollout defaults."""

    n_steps: int = param(128, "steps per env per rollout (sb3-contrib RecurrentPPO default)", low=1)
    batch_size: int = param(128, "transitions per minibatch, on average; minibatches hold whole sequences", low=1)
    lstm_hidden_size: int = param(64, "LSTM hidden units (64 as in the RL Zoo's NoVel presets)", low=1)
    lstm_layers: int = param(1, "stacked LSTM layers", low=1)
    shared_lstm: bool = param(
        False, "one LSTM, trained by both losses, feeds actor and critic MLPs (else each has its own)"
    )
    seq_len: int | None = param(None, "training sequence length (BPTT window) in steps; none: n_steps", low=1)

    def validate(self) -> None:
        super().validate()
        if self.seq_len is not None and self.seq_len > self.n_steps:
            raise ConfigError(
                f"seq_len={self.seq_len} is longer than a rollout (n_steps={self.n_steps}); lower seq_len"
            )

    @property
    def sequence_length(self) -> int:
        """``seq_len``, with none meaning the whole rollout of an env."""
        return self.n_steps if self.seq_len is None else self.seq_len


# What RecurrentPPO adds to PPO's config: drop these to give MLP PPO the same settings, the
# memoryless comparison of the learning test and benchmarks/ppo_lstm_novel.py.
RECURRENT_ONLY_FIELDS = tuple(
    sorted({f.name for f in fields(RecurrentPPOConfig)} - {f.name for f in fields(PPOConfig)})
)


# -- the LSTM over a sequence, with resets -----------------------------------------------------


def lstm_over_sequence(
    lstm: nn.LSTM, inputs: torch.Tensor, state: LSTMState, episode_starts: torch.Tensor | None = None
) -> tuple[torch.Tensor, LSTMState]:
    """Run ``lstm`` over ``inputs (L, B, in)`` from ``state``; return outputs ``(L, B, H)`` and the last state.

    ``episode_starts (L, B)`` bool marks steps whose input begins an episode: that row's state is
    zeroed before the step. The time axis is cut only where some row restarts after step 0, and the
    LSTM runs over each piece in one call, so a sequence without a restart inside costs one call.
    """
    h, c = state
    if episode_starts is None:
        out, (h, c) = lstm(inputs, (h, c))
        return out, (h, c)
    keep = (~episode_starts).to(inputs.dtype)  # (L, B)
    restart_times = (torch.nonzero(episode_starts[1:].any(dim=1)).flatten() + 1).tolist()
    bounds = [0, *restart_times, inputs.shape[0]]
    outputs = []
    for begin, end in zip(bounds[:-1], bounds[1:]):
        row_keep = keep[begin].view(1, -1, 1)  # (1, B, 1)
        out, (h, c) = lstm(inputs[begin:end], (h * row_keep, c * row_keep))
        outputs.append(out)
    return torch.cat(outputs), (h, c)


def make_lstm(in_features: int, hidden_size: int, layers: int) -> nn.LSTM:
    """An LSTM with orthogonal weights (gain 1) and zero biases, as CleanRL's ppo_atari_lstm."""
    lstm = nn.LSTM(in_features, hidden_size, num_layers=layers)
    for name, tensor in lstm.named_parameters():
        if name.startswith("bias"):
            nn.init.zeros_(tensor)
        else:
            nn.init.orthogonal_(tensor, 1.0)
    return lstm


# -- the policy --------------------------------------------------------------------------------


class RecurrentActorCriticPolicy(ActorCriticPolicy):
    """Observation normaliser -> LSTM -> PPO's actor and critic MLPs and action head.

    The MLPs and head are :class:`ActorCriticPolicy`'s, reading LSTM features instead of
    observations, so ``distribution(features)`` and ``value(features)`` keep their meaning per
    step. The critic has its own LSTM unless ``shared_lstm`` (sb3-contrib's ``shared_lstm`` /
    ``enable_critic_lstm``). A full state is one tensor ``(S, lstm_layers, B, lstm_hidden_size)``
    holding ``h_actor, c_actor`` (S = 2) and, with a separate critic LSTM, ``h_critic, c_critic``
    (S = 4), so that resetting, storing and gathering rows are single tensor operations.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lstm_hidden_size: int = 64,
        lstm_layers: int = 1,
        shared_lstm: bool = False,
        **mlp_options,
    ) -> None:
        super().__init__(observation_space, action_space, features_size=lstm_hidden_size, **mlp_options)
        # the LSTMs read the encoder's features (an image's CNN output), the MLPs the LSTMs' output
        lstm_input = self.obs_size if self.encoder is None else self.encoder.out_features
        self.actor_lstm = make_lstm(lstm_input, lstm_hidden_size, lstm_layers)
        self.critic_lstm = (
            None if shared_lstm or self.critic is None else make_lstm(lstm_input, lstm_hidden_size, lstm_layers)
        )
        self.lstm_hidden_size, self.lstm_layers = lstm_hidden_size, lstm_layers
        self.spec.update({"lstm_hidden_size": lstm_hidden_size, "lstm_layers": lstm_layers, "shared_lstm": shared_lstm})
        # The state of the collector's envs between steps; the algorithm resets rows at episode starts.
        self.rollout_state: torch.Tensor | None = None

    def lstm_input(self, obs: torch.Tensor) -> torch.Tensor:
        """What the LSTMs read for normalised ``obs (L, B, obs_size)``: the observations, or with
        images the encoder's features ``(L, B, F)`` (the CNN applied to each step)."""
        if self.encoder is None:
            return obs
        length, batch = obs.shape[:2]
        return self.encoder(obs.reshape(length * batch, -1)).reshape(length, batch, -1)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The actor and critic MLPs read LSTM features, encoded already in :meth:`features`."""
        return features

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero full state ``(S, lstm_layers, batch, lstm_hidden_size)``."""
        n_states = 2 if self.critic_lstm is None else 4
        return torch.zeros(n_states, self.lstm_layers, batch, self.lstm_hidden_size)

    def features(
        self, obs: torch.Tensor, state: torch.Tensor, episode_starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actor and critic features ``(L, B, H)`` for normalised ``obs (L, B, obs_size)``, and the new state."""
        obs = self.lstm_input(obs)
        actor_out, actor_state = lstm_over_sequence(self.actor_lstm, obs, (state[0], state[1]), episode_starts)
        if self.critic_lstm is None:
            return actor_out, actor_out, torch.stack(actor_state)
        critic_out, critic_state = lstm_over_sequence(self.critic_lstm, obs, (state[2], state[3]), episode_starts)
        return actor_out, critic_out, torch.stack([*actor_state, *critic_state])

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One collector step for normalised ``obs (N, obs_size)``, continuing ``rollout_state``."""
        if self.rollout_state is None:
            self.rollout_state = self.initial_state(obs.shape[0])
        actor_features, critic_features, self.rollout_state = self.features(obs.unsqueeze(0), self.rollout_state)
        dist = self.distribution(actor_features[0])
        action = self.head.deterministic(dist) if deterministic else dist.sample()
        value = self.value(critic_features[0]) if self.critic is not None else None
        return action, dist.log_prob(action), value

    @torch.no_grad()
    def value_from(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """V of normalised ``obs (B, obs_size)`` seen with ``state``, without keeping the new state."""
        _, critic_features, _ = self.features(obs.unsqueeze(0), state)
        return self.value(critic_features[0])


# -- the algorithm -----------------------------------------------------------------------------


@dataclass
class Sequences:
    """A rollout cut into padded training sequences, time-first ``(seq_len, P, ...)``."""

    obs: torch.Tensor  # (L, P, obs_size)
    actions: torch.Tensor  # (L, P, *action_shape)
    log_probs: torch.Tensor  # (L, P)
    values: torch.Tensor  # (L, P)
    advantages: torch.Tensor  # (L, P)
    returns: torch.Tensor  # (L, P)
    mask: torch.Tensor  # (L, P) bool: a real transition (False for padding and NEXT_STEP reset steps)
    start_states: torch.Tensor  # (S, layers, P, H) state before each sequence's first step


def cut_into_sequences(
    starts: torch.Tensor, seq_len: int, grid_states: torch.Tensor, **per_step: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Cut ``(T, N, ...)`` arrays into sequences on a ``seq_len`` grid and at episode starts.

    ``starts (T, N)`` marks episode starts; ``grid_states (G, N, S, layers, H)`` is the state each
    env held before step ``g * seq_len``. Returns each array of ``per_step`` padded to
    ``(seq_len, P, ...)`` (zeros after a sequence's end) and the start states ``(S, layers, P, H)``:
    the stored one at a grid point, zeros at an episode start inside a grid sequence.
    """
    n_steps, n_envs = starts.shape
    boundary = starts | (torch.arange(n_steps) % seq_len == 0).unsqueeze(1)  # (T, N)
    # env-major order makes each sequence a contiguous run of the flattened arrays
    boundary_flat = boundary.T.reshape(-1)  # (N*T,)
    sequence_of = torch.cumsum(boundary_flat.long(), 0) - 1  # (N*T,)
    first = torch.nonzero(boundary_flat).flatten()  # (P,) flat index of each sequence's first step
    position = torch.arange(n_envs * n_steps) - first[sequence_of]  # (N*T,) step within its sequence
    n_sequences = len(first)
    padded = {}
    for name, array in per_step.items():
        flat = array.transpose(0, 1).reshape(n_envs * n_steps, *array.shape[2:])
        out = torch.zeros(seq_len, n_sequences, *array.shape[2:], dtype=array.dtype)  # (L, P, ...)
        out[position, sequence_of] = flat
        padded[name] = out
    env_of, t0 = first // n_steps, first % n_steps  # (P,)
    on_grid = t0 % seq_len == 0
    start_states = torch.zeros(n_sequences, *grid_states.shape[2:])  # (P, S, layers, H)
    start_states[on_grid] = grid_states[t0[on_grid] // seq_len, env_of[on_grid]]
    return padded, start_states.permute(1, 2, 0, 3).contiguous()  # (S, layers, P, H)


class RecurrentPPO(Algorithm):
    """PPO-Clip with LSTM actor and critic, trained on whole sequences (partially observable tasks)."""

    name = "ppo-lstm"
    Config = RecurrentPPOConfig
    recurrent = True

    def build_policy(self) -> RecurrentActorCriticPolicy:
        c = self.config
        if c.share_trunk:
            raise ConfigError("ppo-lstm shares its recurrent torso with shared_lstm=true; share_trunk is not supported")
        if c.target_critic != "none":
            raise ConfigError("ppo-lstm does not support a target critic yet; set target_critic=none")
        if self.action_mask_source is not None:
            raise ConfigError(
                f"ppo-lstm does not support invalid-action masking yet (this env reports masks in its "
                f"{self.action_mask_source}); set action_mask=off, or train ppo"
            )
        policy = RecurrentActorCriticPolicy(
            self.observation_space,
            self.action_space,
            lstm_hidden_size=c.lstm_hidden_size,
            lstm_layers=c.lstm_layers,
            shared_lstm=c.shared_lstm,
            **self.policy_options(),
        )
        return self.finish_policy(policy)

    def setup(self) -> None:
        c = self.config
        self.optimizer = torch.optim.Adam(parameter_groups(self.policy, c.lr, c.vf_lr), lr=c.lr, eps=c.adam_eps)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def checkpoint_extra(self) -> tuple[dict, dict[str, torch.Tensor]]:
        # The LSTM state the envs' running episodes have reached: without it a resumed run would
        # continue those episodes from zeros and diverge from the uninterrupted one.
        state = self.policy.rollout_state
        return {}, ({} if state is None else {"lstm.rollout_state": state.clone()})

    def restore_checkpoint_extra(self, state: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.policy.rollout_state = tensors.get("lstm.rollout_state")

    # -- collection ----------------------------------------------------------------------------

    @torch.no_grad()
    def collect(self, n_steps: int) -> tuple[Rollout, EpisodeLog, torch.Tensor, torch.Tensor]:
        """Step the envs ``n_steps`` times carrying the LSTM state.

        Returns the rollout, finished episodes, episode starts ``(T, N)`` and the states held at the
        ``seq_len`` grid points ``(G, N, S, layers, H)``. Each step is the shared collector's.
        """
        collector, policy, seq_len = self._ensure_collector(), self.policy, self.config.sequence_length
        if policy.rollout_state is None:
            policy.rollout_state = policy.initial_state(collector.n_envs)
        grid_states = torch.zeros(math.ceil(n_steps / seq_len), *policy.rollout_state.shape).permute(0, 3, 1, 2, 4)
        starts = torch.zeros(n_steps, collector.n_envs, dtype=torch.bool)  # (T, N)
        final_values: list[tuple[int, int, torch.Tensor]] = []
        episodes = EpisodeLog()
        buffers = RolloutBuffers.allocate(n_steps, collector.n_envs, policy)
        for t in range(n_steps):
            # A NEXT_STEP reset step acts on the final observation and is no transition; its env
            # restarts at the step after it, where episode_length is still 0.
            start = torch.from_numpy((collector.episode_length == 0) & ~collector.pending_reset)  # (N,)
            if start.any():
                policy.rollout_state *= (~start).to(torch.float32).view(1, 1, -1, 1)
            starts[t] = start
            if t % seq_len == 0:
                grid_states[t // seq_len] = policy.rollout_state.permute(2, 0, 1, 3)
            # Truncation bootstraps with V(final obs) seen with the state the episode reached,
            # before the next step zeroes it (in both autoreset modes).
            for env_index, final in collector.step_into(buffers, t, episodes):
                row = slice(env_index, env_index + 1)
                final_obs = policy.normalize(policy.obs_to_tensor(final))
                state = policy.rollout_state[:, :, row]
                final_values.append((t, env_index, policy.value_from(final_obs, state)[0]))

        next_values = np.empty_like(buffers.value)  # (T, N)
        next_values[:-1] = buffers.value[1:]
        last_obs = policy.normalize(policy.obs_to_tensor(collector.obs))
        next_values[-1] = policy.value_from(last_obs, policy.rollout_state).numpy()
        for t, env_index, final_value in final_values:
            next_values[t, env_index] = final_value
        rollout = buffers.to_rollout(next_values)
        return rollout, episodes, starts, grid_states

    def sequences(self, rollout: Rollout, starts: torch.Tensor, grid_states: torch.Tensor) -> Sequences:
        """GAE over the rollout, then cut into padded training sequences."""
        c = self.config
        advantages, returns = rollout.gae(c.gamma, c.gae_lambda)
        padded, start_states = cut_into_sequences(
            starts,
            c.sequence_length,
            grid_states,
            obs=rollout.obs,
            actions=rollout.actions,
            log_probs=rollout.log_probs,
            values=rollout.values,
            advantages=advantages,
            returns=returns,
            mask=rollout.valid,
        )
        return Sequences(**padded, start_states=start_states)

    # -- update --------------------------------------------------------------------------------

    def evaluate_sequences(
        self, batch: Sequences, index: torch.Tensor
    ) -> tuple[torch.distributions.Distribution, torch.Tensor, torch.Tensor]:
        """Distribution and values of the real steps of sequences ``index``, recomputed from their start states.

        Returns ``(dist, values, mask)``; ``dist`` and ``values`` are over ``batch.mask[:, index]``'s
        True entries in time-major order.
        """
        actor_features, critic_features, _ = self.policy.features(batch.obs[:, index], batch.start_states[:, :, index])
        mask = batch.mask[:, index]  # (L, B)
        dist = self.policy.distribution(actor_features[mask])
        return dist, self.policy.value(critic_features[mask]), mask

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        if c.anneal_lr:
            decay_learning_rate(self.optimizer, c.lr, progress_remaining)
        rollout, episodes, starts, grid_states = self.collect(c.n_steps)
        self.rollout_end()
        batch = self.sequences(rollout, starts, grid_states)
        n_sequences = batch.obs.shape[1]
        n_transitions = rollout.n_transitions
        # As many minibatches as PPO would make of these transitions, each of whole sequences.
        n_minibatches = min(n_sequences, max(1, round(n_transitions / c.batch_size)))

        totals: dict[str, float] = {}
        n_updates, epochs_done, approx_kl = 0, 0, 0.0
        for _ in range(c.n_epochs):
            epoch_kl = []
            for mb_sequences in np.array_split(self.rng.permutation(n_sequences), n_minibatches):
                index = torch.from_numpy(mb_sequences)
                dist, mb_values, mask = self.evaluate_sequences(batch, index)
                mb_log_probs = dist.log_prob(batch.actions[:, index][mask])
                mb_entropy = dist.entropy().mean()
                mb_advantages = batch.advantages[:, index][mask]
                if c.norm_adv and mb_advantages.numel() > 1:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                policy_loss, policy_metrics = clipped_surrogate_loss(
                    mb_log_probs, batch.log_probs[:, index][mask], mb_advantages, c.clip_coef
                )
                critic_loss, critic_metrics = value_loss(
                    mb_values,
                    batch.returns[:, index][mask],
                    batch.values[:, index][mask],
                    c.vf_clip_coef if c.clip_vloss else None,
                )
                loss = policy_loss + c.vf_coef * critic_loss - c.ent_coef * mb_entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.optimizer.step()

                update_metrics = minibatch_step_metrics(policy_metrics, critic_metrics, mb_entropy, grad_norm, dist)
                for key, value in update_metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
                epoch_kl.append(policy_metrics["approx_kl"])
                n_updates += 1
            epochs_done += 1
            approx_kl = float(np.mean(epoch_kl))
            if c.target_kl is not None and approx_kl > c.target_kl:
                break

        metrics = {key: total / n_updates for key, total in totals.items()}
        metrics.update(
            {
                "approx_kl_last_epoch": approx_kl,
                "epochs": epochs_done,
                "sequences": n_sequences,
                "explained_variance": explained_variance(batch.values[batch.mask], batch.returns[batch.mask]),
                "lr": self.optimizer.param_groups[0]["lr"],
            }
        )
        return IterationResult(n_transitions=n_transitions, episodes=episodes, metrics=metrics)

    # -- acting --------------------------------------------------------------------------------

    def predict(
        self, obs, state: tuple[np.ndarray, np.ndarray] | None = None, episode_start=None, deterministic: bool = True
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Actions for one observation or a batch, and the new actor LSTM state.

        ``state`` is the ``(h, c)`` returned by the previous call, each ``(lstm_layers, B,
        lstm_hidden_size)`` (``B = 1`` for a single observation); ``None`` starts from zeros.
        ``episode_start`` (bool, one per observation) zeroes the state of the rows whose
        observation begins a new episode. Returns ``(action, (h, c))``, numpy in and out.
        """
        policy = self.policy
        single = is_single_observation(obs, self.observation_space)
        with torch.no_grad():
            x = policy.normalize(policy.obs_to_tensor(obs))  # (B, obs_size)
            batch = x.shape[0]
            shape = (policy.lstm_layers, batch, policy.lstm_hidden_size)
            if state is None:
                h, c = torch.zeros(shape), torch.zeros(shape)
            else:
                try:
                    h, c = (torch.as_tensor(np.asarray(s, dtype=np.float32)) for s in state)
                except (TypeError, ValueError):
                    raise ConfigError("state must be the (h, c) pair returned by predict") from None
                if h.shape != shape or c.shape != shape:
                    raise ConfigError(
                        f"state arrays have shapes {tuple(h.shape)}, {tuple(c.shape)}; expected {shape} (layers, "
                        "batch, hidden)"
                    )
            starts = None
            if episode_start is not None:
                starts = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(1, -1))
                if starts.shape[1] != batch:
                    raise ConfigError(f"episode_start has {starts.shape[1]} entries for {batch} observations")
            features, (h, c) = lstm_over_sequence(policy.actor_lstm, policy.lstm_input(x.unsqueeze(0)), (h, c), starts)
            dist = policy.distribution(features[0])
            raw = policy.head.deterministic(dist) if deterministic else dist.sample()
        action = policy.env_action(raw.numpy())
        return (action[0] if single else action), (h.numpy(), c.numpy())
