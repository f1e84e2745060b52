"""Collecting for several seeds at once: all seeds' envs in one loop, one forward for all seeds.

:class:`SeedBatchedCollector` is :class:`pgrad.rollout.RolloutCollector` run over the ``S x N``
sub-envs of ``S`` seeds (``N`` each) as one vector env, with a seed-aware numpy twin of the
policies. Every correctness rule of the collector (raw actions stored, truncation bootstrapped
with V(final observation), same-step autoreset) is the shared code's; what is per seed here is
only what a single-seed run keeps per seed:

* Weights: seed ``s``'s rows of the batch go through seed ``s``'s slice of the stacked weights
  (one batched product per layer, actor and critic fused as in pgrad/fast_inference.py).
* Observation normaliser, reward scaler: each seed's own objects (its policy's), updated with
  its own rows only, in the same order as its single-seed run.
* Random numbers: one ``torch.Generator`` per seed, started from the state torch's global
  generator has when seed ``s``'s single-seed run starts collecting; seed ``s``'s noise is drawn
  from it with the same call and shape as the single-seed fast path draws from the global one.
* Env seeds: sub-env ``i`` of seed ``s`` is reset with ``s + i``, as ``envs.reset(seed=s)`` does.
* Episodes and step counts: split by seed afterwards (:meth:`SeedBatchedCollector.collect`).

Only same-step autoreset (every step a transition for every seed) is supported; the caller
(:class:`pgrad.algos.ppo_batched.SeedBatchedPPO`) checks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from pgrad.batched import SeedBatchedActorCritic, SeedBatchedLinear
from pgrad.checkpointing import collector_state
from pgrad.distributions import CategoricalHead
from pgrad.envs.recorder import EpisodeRecorder
from pgrad.envs.vector import LeanSyncVectorEnv
from pgrad.fast_inference import _ACTIVATIONS, _LOG_SQRT_2PI, NumpyActorCritic, _forward, _fuse
from pgrad.normalize import RewardScaler
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import EpisodeLog, Rollout, RolloutCollector


def _stacked_fused_layers(model: SeedBatchedActorCritic) -> list:
    """Actor (with its head) and critic of every seed as one network: ``[(W (S, in, out), b (S, 1, out)) | fn]``.

    ``fast_inference._fuse`` with a seed axis in front, so the last layer's outputs are the
    actor's (``n_out``) then V. Copies: rebuilt before every rollout.
    """

    def layers(modules: list) -> list:
        return [
            (m.weight.detach().numpy().swapaxes(1, 2), m.bias.detach().numpy()[:, None, :])  # (S, in, out), (S, 1, out)
            if isinstance(m, SeedBatchedLinear) else _ACTIVATIONS[type(m)]
            for m in modules
        ]

    fused = _fuse(layers(list(model.actor_body.layers) + [model.head_linear]), layers(list(model.critic.layers)))
    if fused is None:  # pragma: no cover - one architecture builds both networks
        raise ValueError("the actor and critic of this model cannot be fused")
    return fused


class SeedBatchedNumpyActorCritic:
    """Numpy twin of ``S`` policies acting on their ``S x N`` envs at once (rows seed-major)."""

    def __init__(self, model: SeedBatchedActorCritic, policies: Sequence[ActorCriticPolicy], n_envs: int,
                 generators: Sequence[torch.Generator]) -> None:
        """``policies``: the seeds' ordinary policies (their observation normalisers act here; all
        weights are read from ``model``); ``generators``: one per seed, the source of that seed's
        action noise."""
        if not self.supports(model):
            raise ValueError("no seed-batched numpy twin for this model; check SeedBatchedNumpyActorCritic.supports")
        self.model = model
        self.n_seeds, self.n_envs = model.n_seeds, n_envs
        self.policies = list(policies)
        self.seed_twins = [NumpyActorCritic(policy) for policy in self.policies]
        self.generators = list(generators)
        self.discrete = model.head_kind is CategoricalHead
        self._noise: torch.Tensor | None = None
        self.refresh()

    @staticmethod
    def supports(model: SeedBatchedActorCritic) -> bool:
        """Linear/Tanh/ReLU layers, categorical or state-independent Gaussian head."""
        from pgrad.fast_update import NumpyPolicyGradient

        return NumpyPolicyGradient.supports_seed_batched(model)

    def refresh(self) -> None:
        """Re-read the stacked weights and stds (after every update)."""
        self.layers = _stacked_fused_layers(self.model)
        for twin in self.seed_twins:
            twin.refresh()
        if not self.discrete:
            with torch.no_grad():
                std = self.model.log_std.exp()  # (S, action_dim), by torch as the single-seed twin does
            self.std = std.numpy()[:, None, :]  # (S, 1, action_dim)
            log_std = std.log().numpy()
            self.half_precision = (np.float32(1.0) / (2 * self.std[:, 0, :] ** 2)).astype(np.float32)[:, :, None]  # (S, A, 1)
            self.log_normalizer = (log_std + np.float32(_LOG_SQRT_2PI)).sum(-1, dtype=np.float32)[:, None]  # (S, 1)

    def _blocks(self, array: np.ndarray) -> list[np.ndarray]:
        return [array[s * self.n_envs : (s + 1) * self.n_envs] for s in range(self.n_seeds)]

    def normalize(self, raw_obs: np.ndarray, update: bool = False, rows: np.ndarray | None = None) -> np.ndarray:
        """Normalise ``(S*N, ...)`` raw observations with each seed's own statistics (updated with its
        own rows if ``update``); ``rows``: the env index of each row when they are not all envs in order."""
        if self.seed_twins[0].stats is None:  # no normaliser: the flat float32 observations
            return self.seed_twins[0].normalize(raw_obs)
        if rows is None:
            return np.concatenate([twin.normalize(block, update) for twin, block in zip(self.seed_twins, self._blocks(raw_obs))])
        seeds = np.asarray(rows) // self.n_envs
        out = np.empty((len(seeds), self.seed_twins[0].obs_size), dtype=np.float32)
        for s in np.unique(seeds):
            out[seeds == s] = self.seed_twins[s].normalize(raw_obs[seeds == s])
        return out

    def value(self, obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """V of normalised observations, each by its own seed's slice of the fused network that
        :meth:`act` runs (so a bootstrap V(s') and a stored V(s) are one computation)."""
        if rows is None:
            return self._forward(obs.reshape(self.n_seeds, self.n_envs, -1))[..., -1].reshape(-1)
        seeds = np.asarray(rows) // self.n_envs
        out = np.empty(len(seeds), dtype=np.float32)
        for s in np.unique(seeds):
            seed_layers = [(layer[0][s], layer[1][s]) if isinstance(layer, tuple) else layer for layer in self.layers]
            out[seeds == s] = _forward(seed_layers, obs[seeds == s])[:, -1]
        return out

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The stacked fused network on ``(S, N, obs_size)``: ``(S, N, n_out + 1)``."""
        return _forward(self.layers, x)

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample raw actions for ``(S*N, obs_size)`` normalised observations: ``(action, log_prob, value)``."""
        x = self._forward(obs.reshape(self.n_seeds, self.n_envs, -1))  # (S, N, n_out + 1)
        out, value = x[..., :-1], x[..., -1]  # (S, N, n_out), (S, N)
        if self.discrete:
            shifted = out - out.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (S, N, n_actions)
            probs = np.exp(log_p)
            action = np.stack([
                torch.multinomial(torch.from_numpy(probs[s]), 1, True, generator=generator).numpy()[:, 0]
                for s, generator in enumerate(self.generators)
            ])  # (S, N) int64, each seed from its own generator as Categorical.sample draws
            log_prob = np.take_along_axis(log_p, action[..., None], axis=-1)[..., 0]
        else:
            if self._noise is None or self._noise.shape[1:] != out.shape[1:]:
                self._noise = torch.empty(out.shape)  # (S, N, action_dim)
                self._noise_rows = list(self._noise)  # per-seed (N, action_dim) views
                self._noise_np = self._noise.numpy()
            for row, generator in zip(self._noise_rows, self.generators):
                row.normal_(generator=generator)  # what torch.randn((N, action_dim)) draws for that seed
            action = out + self.std * self._noise_np
            deviation = action - out
            log_prob = -((deviation * deviation) @ self.half_precision)[..., 0] - self.log_normalizer  # (S, N)
        return (action.reshape(self.n_seeds * self.n_envs, *action.shape[2:]), log_prob.reshape(-1), value.reshape(-1))


class SeedBatchedRewardScaler:
    """Each seed's own :class:`RewardScaler` on its own block of ``S*N`` rewards."""

    def __init__(self, scalers: Sequence[RewardScaler], n_envs: int) -> None:
        self.scalers, self.n_envs = list(scalers), n_envs

    def scale_array(self, rewards: np.ndarray, episode_ended: np.ndarray, update: bool = True) -> np.ndarray:
        n = self.n_envs
        return np.concatenate([
            scaler.scale_array(rewards[s * n : (s + 1) * n], episode_ended[s * n : (s + 1) * n], update)
            for s, scaler in enumerate(self.scalers)
        ])


class SeedBatchedCollector(RolloutCollector):
    """The collector over every seed's envs, acting through :class:`SeedBatchedNumpyActorCritic`."""

    def __init__(self, model: SeedBatchedActorCritic, policies: Sequence[ActorCriticPolicy], vector_envs: Sequence[VectorEnv],
                 seeds: Sequence[int], generators: Sequence[torch.Generator], start_steps: Sequence[int], *,
                 keep_recorders: bool = False, restored: Sequence[RolloutCollector] | None = None) -> None:
        """``vector_envs``: each seed's own (un-reset) same-step vector env; their sub-envs are stepped
        here as one. ``start_steps``: each seed's transition count so far (episodes are stamped with it).

        ``keep_recorders``: step through the sub-envs' resume recorders (pgrad/envs/recorder.py,
        ~5 us a step), needed only if checkpoints are written. ``restored``: each seed's collector
        as loaded from its checkpoint, its envs already replayed; collection continues from their
        observations and running episodes instead of resetting the envs.
        """
        self.n_seeds, self.envs_per_seed = len(seeds), vector_envs[0].num_envs
        self.start_steps = list(start_steps)
        sub_envs = [
            env.env if isinstance(env, EpisodeRecorder) and not keep_recorders else env
            for vector_env in vector_envs for env in vector_env.envs
        ]
        combined = LeanSyncVectorEnv([lambda env=env: env for env in sub_envs], autoreset_mode=AutoresetMode.SAME_STEP, keep_infos=False)
        self.twin = SeedBatchedNumpyActorCritic(model, policies, self.envs_per_seed, generators)
        scalers = [policy.reward_scaler for policy in policies]
        scaler = SeedBatchedRewardScaler(scalers, self.envs_per_seed) if scalers[0] is not None else None
        initial_obs = None if restored is None else np.concatenate([collector.obs for collector in restored])
        super().__init__(combined, policies[0], seed=combined_env_seeds(seeds, self.envs_per_seed), reward_scaler=scaler,
                         start_step=0, initial_obs=initial_obs)
        if restored is not None:
            self.episode_return = np.concatenate([collector.episode_return for collector in restored])
            self.episode_length = np.concatenate([collector.episode_length for collector in restored])

    def seed_state(self, s: int) -> tuple[dict, dict[str, torch.Tensor]]:
        """Checkpoint state of seed ``s``'s envs, exactly as its own single-seed collector would hold it."""
        rows = slice(s * self.envs_per_seed, (s + 1) * self.envs_per_seed)
        return collector_state(self, rows=rows, total_transitions=self.start_steps[s])

    def _sync_fast_inference(self) -> None:
        self.fast = self.twin
        self.twin.refresh()

    @torch.no_grad()
    def _values(self, raw_obs: np.ndarray, env_indices: np.ndarray | None = None) -> torch.Tensor:
        return torch.from_numpy(self.twin.value(self.twin.normalize(raw_obs, rows=env_indices), rows=env_indices))

    def collect_episodes(self, *args, **kwargs):
        raise NotImplementedError("seed-batched collection is by fixed numbers of steps (collect_per_seed)")

    def collect_per_seed(self, n_steps: int) -> list[tuple[Rollout, EpisodeLog]]:
        """``n_steps`` steps of every seed's envs; each seed's ``(rollout (T, N, ...), episodes)``."""
        before = self.total_transitions
        rollout, episodes = self.collect(n_steps)
        n = self.envs_per_seed
        results = []
        for s in range(self.n_seeds):
            columns = slice(s * n, (s + 1) * n)
            seed_rollout = Rollout(**{name: getattr(rollout, name)[:, columns] for name in Rollout.__dataclass_fields__})
            log = EpisodeLog()
            for step, episode_return, length, env_index in zip(episodes.steps, episodes.returns, episodes.lengths, episodes.envs):
                if env_index // n == s:  # every step is a transition for every seed: S*N per step
                    log.steps.append(self.start_steps[s] + (step - before) // self.n_seeds)
                    log.returns.append(episode_return)
                    log.lengths.append(length)
                    log.envs.append(env_index - s * n)
            self.start_steps[s] += n_steps * n
            results.append((seed_rollout, log))
        return results

    def close(self) -> None:
        """Nothing to close: the sub-envs belong to the seeds' own vector envs, whose owners close them."""


def combined_env_seeds(seeds: Sequence[int], n_envs: int) -> list[int]:
    """The reset seed of every sub-env, seed-major, as ``envs.reset(seed=s)`` seeds copy ``i`` of seed ``s``."""
    return [seed + i for seed in seeds for i in range(n_envs)]
