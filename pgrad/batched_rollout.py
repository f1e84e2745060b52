"""Collecting for several seeds at once: all seeds' envs in one loop, one forward for all seeds.

:class:`SeedBatchedCollector` is :class:`pgrad.rollout.RolloutCollector` run over the ``S x N``
sub-envs of ``S`` seeds (``N`` each) as one vector env, with a seed-aware numpy twin of the
policies. Every correctness rule of the collector (raw actions stored, truncation bootstrapped
with V(final observation), same-step autoreset) is the shared code's; what is per seed here is
only what a single-seed run keeps per seed:

* Weights: seed ``s``'s rows of the batch go through seed ``s``'s slice of the stacked weights
  (one batched product per layer, actor and critic fused: pgrad/numpy_twin/policy.py).
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

from pgrad.batched import SeedBatchedActorCritic
from pgrad.checkpointing import collector_state
from pgrad.envs.recorder import EpisodeRecorder
from pgrad.envs.vector import LeanSyncVectorEnv
from pgrad.numpy_twin import SeedBatchedNumpyActorCritic
from pgrad.normalize import RewardScaler
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import EpisodeLog, Rollout, RolloutCollector


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
