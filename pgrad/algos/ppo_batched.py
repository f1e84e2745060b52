"""PPO for several seeds in one process, with one seed-batched model (issue 7).

``SeedBatchedPPO(env, seeds=[1, 2, 3])`` trains one :class:`pgrad.algos.ppo.PPO` agent per seed,
each exactly as it would train alone, in lockstep, with one model whose weights carry a leading
seed axis (:class:`pgrad.batched.SeedBatchedActorCritic`) and one optimiser over them. Where numba
is installed and the compiled path covers the policy, each seed acts and computes its gradient
through its lone run's compiled calls on its slices of that model, and equals its lone run to the
bit; otherwise all seeds go through one batched numpy (or autograd) forward and backward
(docs/dev/seed_batched.md). What stays per seed, and why it is exact:

* Initial weights: seed ``s``'s agent is built as a single-seed run builds it
  (``torch.manual_seed(s)`` then the network init), and the batched model stacks those weights.
* Action sampling: the single-seed path samples from torch's global generator (rollout.py,
  pgrad/numpy_twin/policy.py). After building agent ``s`` the global generator is in the state the
  single-seed run starts collecting from; a ``torch.Generator`` per seed starts from that state,
  so seed ``s`` draws exactly its own numbers.
* Envs, observation normaliser, reward scaler, episode bookkeeping: the agent's own sub-envs,
  normaliser and scaler, stepped for all seeds at once by
  :class:`pgrad.rollout.SeedBatchedCollector` (the shared collector over every seed's
  envs); for heads without a numpy twin, by each agent's own
  :class:`pgrad.rollout.RolloutCollector` in turn, acting with the agent's ordinary policy after
  the batched weights are copied into it (:meth:`SeedBatchedActorCritic.copy_to`).
* Minibatch order: each agent's own numpy generator, drawn in the single-seed order.
* Advantage normalisation, losses and the gradient-norm clip: reduced over each seed's own
  minibatch (pgrad/batched.py); seed ``s``'s loss depends only on its own weights, so the
  gradient of the summed loss with respect to slice ``[s]`` is seed ``s``'s own gradient.
* Adam: its update is elementwise (Kingma & Ba 2015, Algorithm 1: every moment and every step is
  per coordinate), so one Adam over the stacked parameters is S independent Adams (tested in
  tests/unit/test_batched.py), as long as each seed's step count is its own.
* ``target_kl``: each seed stops its epochs when its own approximate KL passes the target, as its
  lone run does; the others go on. A seed that stopped draws no more minibatch orders, and Adam
  leaves its parameters and moments alone and does not advance its step count
  (``seed_steps``; pgrad/numpy_twin/optim.py, ``step(active=...)``). This needs the numpy fast
  path; without it ``target_kl`` is refused.

* Periodic evaluation and early stopping (``learn(early_stopping=...)``, ``--eval-every``,
  ``--patience``): each seed evaluates its own policy on its own schedule; a seed that stops sits
  out the group's later iterations (no update, its statistics frozen, nothing logged) and keeps
  the checkpoint written when it stopped, as its lone run ends there.

* Next-step autoreset: each seed has its own number of transitions. Each counts its own steps,
  stops at its own budget (the learn loop's members are done one by one) and anneals its
  learning rate by it (``seed_lrs``); the update cuts each seed's batch into its lone run's
  minibatches, pads step ``k``'s minibatches to one size and masks the padding out
  (:meth:`_update_ragged`). This needs the numpy fast path.

Not supported yet, refused with a ConfigError: async vector envs.
Checkpoints: every seed gets the checkpoint its single-seed run would write (see "checkpoints"
below), with its own Adam step count, so a batched run resumes like any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from pgrad.algos.base import Algorithm, IterationResult, decay_learning_rate
from pgrad.algos.ppo import PPO, PPOConfig, loss_settings
from pgrad.batched import (
    SeedBatchedActorCritic,
    per_seed_grad_norm_clip_,
    seed_batched_clipped_surrogate_loss,
    seed_batched_value_loss,
)
from pgrad.errors import ConfigError, NonFiniteError
from pgrad.losses import explained_variance, normalize_advantages
from pgrad.numpy_twin import NumpyOptimizer, NumpyPolicyGradient, seed_batched_unsupported_reason, unsupported_reason
from pgrad.rollout import SeedBatchedCollector


def unsupported_for_batching(config: Any) -> str | None:
    """Why seed batching cannot train with this PPO config (a one-line message), or None."""
    if config.vectorization != "sync":
        return "seed batching steps every seed's envs in this process: vectorization must be sync"
    if config.target_critic != "none":
        return "seed batching does not support a target critic (target_critic)"
    if config.vf_lr is not None and config.vf_lr != config.lr:
        return "seed batching does not support a separate critic learning rate (vf_lr)"
    if config.objective != "clip":
        return f"seed batching trains the clipped objective only, not objective={config.objective}"
    return None


def not_in_lockstep(positions: dict[int, int | None]) -> ConfigError:
    """The error for seeds of one group whose checkpoints are at different steps (None: no checkpoint)."""
    return ConfigError(
        f"these seeds' checkpoints are at different steps ({positions}, None: no checkpoint); seed batching "
        "trains seeds in lockstep: resume with the --workers the run had, or without --batched"
    )


class SeedBatchedPPO(Algorithm):
    """Several seeds of :class:`PPO`, each learning as it does alone, updated as one batched model.

    Trained by the one learn loop, :meth:`pgrad.algos.base.Algorithm.learn`: its members are the
    seeds' agents (:meth:`seed_members`), each logging into ``RUN/seed_<S>/``, and an iteration
    returns one result per seed.
    """

    name = "ppo"
    Config = PPOConfig

    def __init__(self, env: Any, seeds: list[int], *, preset: str | None = "auto", **hyperparameters: Any) -> None:
        """Build one PPO agent per seed (its envs, normalisers, generators) and the batched model.

        Args:
            env: as for :class:`PPO` (an env id or a callable; one env instance cannot serve several seeds).
            seeds: distinct non-negative ints, one agent each.
            preset, hyperparameters: as for :class:`PPO`, shared by every seed.
        """
        if isinstance(env, gymnasium.Env):
            raise ConfigError(
                "seed batching builds one env per seed: pass an env id or a zero-argument callable, not an env instance"
            )
        seeds = list(seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds={seeds!r} must be a non-empty list of distinct non-negative ints")
        self.seeds = seeds
        self.agents: list[PPO] = []
        # torch's global generator as each single-seed run leaves it after initialising its
        # networks: what its first rollout samples actions from (see the module docstring).
        self.generators: list[torch.Generator] = []
        for seed in seeds:
            self.agents.append(PPO(env, seed=seed, preset=preset, **hyperparameters))
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())
            self.generators.append(generator)
        self.collector: SeedBatchedCollector | None = None  # built at the first rollout, as PPO's
        c = self.config = self.agents[0].config
        problem = unsupported_for_batching(c)
        if problem is None and self.agents[0].device.type != "cpu":
            problem = f"seed batching updates every seed on the CPU as one model: device must be cpu, not {c.device}"
        if problem is not None:
            self.close()  # the agents' envs (async ones have worker processes)
            raise ConfigError(problem)
        self.model = SeedBatchedActorCritic.from_policies([agent.policy for agent in self.agents])
        fast_path_problem = seed_batched_unsupported_reason(self.model)
        if fast_path_problem is not None and (c.target_kl is not None or c.autoreset_mode != "same_step"):
            self.close()
            setting = "target_kl" if c.target_kl is not None else f"autoreset_mode={c.autoreset_mode}"
            raise ConfigError(
                f"{setting} with seed batching needs the numpy fast path, which does not cover {fast_path_problem}"
            )
        # One Adam over the stacked parameters is one Adam per seed (module docstring).
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, eps=c.adam_eps, fused=True)
        # as PPO.use_numpy_gradient: the hand-written gradient where the model allows (same numbers)
        self.use_numpy_gradient = True
        self._numpy_gradient: NumpyPolicyGradient | None = None
        self._numpy_adam: NumpyOptimizer | None = None
        self.wall_seconds = 0.0
        self.seed_steps = np.zeros(len(seeds), dtype=np.float32)  # each seed's own Adam step count
        self.seed_lrs = np.full(len(seeds), c.lr)  # each seed's own learning rate (annealed by its own budget)
        self._run_dir: Path | None = None
        self.env = env
        self.early_stopping = self._early_stopping_state = None  # each seed's agent holds its own (learn)
        self._keep_recorders = False  # set by learn(): with a run folder, checkpoints replay the envs
        self._restored_collectors: list[Any] | None = None  # set by load_checkpoints()

    # -- the learn loop's view of a group: its members are the seeds' agents --------------------

    @property
    def total_steps(self) -> int:
        return self.agents[0].total_steps

    @property
    def updates(self) -> int:
        return self.agents[0].updates

    @property
    def logger(self):
        return self.agents[0].logger

    def seed_members(self) -> list[tuple[PPO, str]]:
        return [(agent, f"seed_{seed}") for seed, agent in zip(self.seeds, self.agents)]

    def prepare_learning(self, run_dir: Path | None) -> None:
        self._keep_recorders = run_dir is not None  # only checkpoints replay what the recorders keep
        self._run_dir = run_dir
        self._final_checkpoints: set[PPO] = set()  # seeds whose last checkpoint is written

    def write_checkpoint(self, run_dir: Path) -> str:
        self.save_checkpoints(run_dir)
        return f"{run_dir}/seed_*/checkpoint"

    def end_learning(self, run_dir: Path | None) -> None:
        self._unstack_into_agents()
        if run_dir is not None:
            self.save_checkpoints(run_dir)
            for seed, agent in zip(self.seeds, self.agents):
                # no summary.json yet: it marks a seed as finished, and comes after its final evaluation
                agent.save(run_dir / f"seed_{seed}", summary=False)

    def fast_path_problem(self) -> str | None:
        """Why the seeds cannot act through the shared numpy twin (the stacked model's layers and
        head, or the seeds' policies: their observations, for one), or None."""
        return seed_batched_unsupported_reason(self.model) or unsupported_reason(self.agents[0].policy)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    # -- one iteration ---------------------------------------------------------------------

    def collect(self) -> list[tuple[Any, Any]]:
        """Each seed's rollout with its own envs, normalisers and random numbers: ``[(rollout, episodes)]``.

        Where the model has a seed-batched numpy twin, all seeds step together
        (pgrad/rollout.py: one loop over every seed's envs, each seed acting through its own
        compiled step, or one numpy forward for all seeds).
        Otherwise each seed collects in turn with its own ordinary collector and policy copy, its
        generator's state swapped into torch's global one, which that path samples from.
        """
        policies = [agent.policy for agent in self.agents]
        if self.collector is None and self.fast_path_problem() is None:
            self.collector = SeedBatchedCollector(
                self.model,
                policies,
                [agent.envs for agent in self.agents],
                self.seeds,
                self.generators,
                [agent.total_steps for agent in self.agents],
                keep_recorders=self._keep_recorders,
                restored=self._restored_collectors,
            )
            for agent in self.agents:
                agent.collector = None  # a resumed agent's own collector: its state now lives in the shared one
                agent.shared_collector = self.collector
            self._restored_collectors = None
        frozen = self._stopped_seeds()
        if self.collector is not None:
            self.collector.freeze(frozen)  # a stopped seed's statistics stay as they were when it stopped
            return self.collector.collect_per_seed(self.config.n_steps)  # its twin reads the stacked weights
        self.model.copy_to(policies)  # each seed acts with its own policy here
        results = []
        global_state = torch.get_rng_state()
        for agent, generator, stopped in zip(self.agents, self.generators, frozen):
            if stopped:  # collects nothing; the update masks its rows (filled in below)
                results.append(None)
                continue
            torch.set_rng_state(generator.get_state())
            results.append(agent._ensure_collector().collect(self.config.n_steps))
            generator.set_state(torch.get_rng_state())
        torch.set_rng_state(global_state)
        placeholder = next(result for result in results if result is not None)
        return [placeholder if result is None else result for result in results]

    def _stopped_seeds(self) -> np.ndarray:
        """``(S,)`` True for the seeds that sit this iteration out: their periodic evaluation stopped
        them, or they reached the budget before the others (next-step autoreset)."""
        running = getattr(self, "running_members", self.agents)
        return np.array([agent not in running for agent in self.agents])

    def train_iteration(self, progress_remaining: float) -> list[IterationResult]:
        """Collect for every seed, then one batched PPO update; each seed's result."""
        c = self.config
        if c.anneal_lr:
            decay_learning_rate(self.optimizer, c.lr, progress_remaining)
            # each seed anneals by its own budget (seeds count their own transitions)
            self.seed_lrs = np.array([c.lr * agent.learn_budget.remaining(agent.total_steps) for agent in self.agents])
        else:
            self.seed_lrs = np.full(self.n_seeds, self.optimizer.param_groups[0]["lr"])
        frozen = self._stopped_seeds()
        if self._run_dir is not None:
            # a seed that just finished (budget reached, or stopped early) keeps the checkpoint of
            # that moment, as its lone run ends there, before its envs step on with the group's
            finished_now = [a for a, f in zip(self.agents, frozen) if f and a not in self._final_checkpoints]
            if finished_now:
                self.save_checkpoints(self._run_dir, final=finished_now)
        collected = self.collect()
        self.rollout_end()

        # Per seed: GAE over its (T, N) rollout, flattened to its batch of real transitions (next-step
        # autoreset steps are not: then each seed has its own batch size).
        per_seed = []
        every_step_a_transition = all(bool(rollout.valid.all()) for rollout, _ in collected)
        for rollout, _ in collected:
            advantages, returns = rollout.gae(c.gamma, c.gae_lambda)
            columns = (
                rollout.obs.reshape(-1, rollout.obs.shape[-1]),
                rollout.actions.reshape(-1, *rollout.actions.shape[2:]),
                rollout.log_probs.reshape(-1),
                rollout.values.reshape(-1),
                advantages.reshape(-1),
                returns.reshape(-1),
            )
            valid = rollout.valid.reshape(-1)
            per_seed.append(columns if every_step_a_transition else tuple(column[valid] for column in columns))
        batch_sizes = [len(columns[0]) for columns in per_seed]

        use_numpy = self.use_numpy_gradient and NumpyPolicyGradient.supports_seed_batched(self.model)
        gradient_step = self._numpy_gradient_step if use_numpy else self._autograd_step
        optimizer_step = self.optimizer.step
        if use_numpy:
            self._numpy_gradient = NumpyPolicyGradient.reuse_or_build(self.model, self._numpy_gradient)
            # as in PPO: Adam on the flat stacked buffers, per seed the same numbers
            self._numpy_adam, optimizer_step = NumpyOptimizer.prepared_step(
                self.optimizer, self._numpy_gradient, self._numpy_adam
            )
        if (c.target_kl is not None or not every_step_a_transition) and (self._numpy_adam is None or not use_numpy):
            raise ConfigError(
                "target_kl and next-step autoreset with seed batching need the numpy fast path (seeds step apart)"
            )
        # Seeds still taking steps: each stops its epochs when its own approx KL passes target_kl, as
        # its lone run does; the others go on (Adam steps only theirs, pgrad/numpy_twin/optim.py).
        active = ~frozen
        if every_step_a_transition:
            outcome = self._update_stacked(per_seed, active, gradient_step, optimizer_step, use_numpy)
        else:
            outcome = self._update_ragged(per_seed, active, optimizer_step)
        metric_sums, n_updates, epochs_done, approx_kl_last_epoch = outcome

        steps_taken = np.maximum(n_updates, 1)  # a seed that sat out has no metrics (its result is None)
        means = {
            key: (np.asarray(value, dtype=np.float64) / steps_taken).tolist() for key, value in metric_sums.items()
        }
        means["approx_kl_last_epoch"] = approx_kl_last_epoch.tolist()
        results: list[IterationResult | None] = []
        for s, (_, episodes) in enumerate(collected):
            if frozen[s]:
                results.append(None)
                continue
            metrics = {
                **{key: values[s] for key, values in means.items()},
                "epochs": int(epochs_done[s]),
                "explained_variance": explained_variance(per_seed[s][3], per_seed[s][5]),
                "lr": float(self.seed_lrs[s]),
            }
            results.append(IterationResult(n_transitions=batch_sizes[s], episodes=episodes, metrics=metrics))
        return results

    def _update_stacked(self, per_seed, active, gradient_step, optimizer_step, use_numpy):
        """The epochs of minibatch steps when every seed has the same batch: ``(S, B, ...)`` stacked.

        Returns ``(metric sums, minibatch steps per seed, epochs per seed, approx KL of each seed's
        last epoch)``."""
        c = self.config
        b_obs, b_actions, b_log_probs, b_values, b_advantages, b_returns = (
            torch.stack(column) for column in zip(*per_seed)
        )
        batch_size = b_obs.shape[1]  # per seed
        n_minibatches = max(1, round(batch_size / c.batch_size))
        # the single-seed minibatch boundaries (np.array_split of a shuffled index)
        bounds = [(chunk[0], chunk[-1] + 1) for chunk in np.array_split(np.arange(batch_size), n_minibatches)]
        seed_rows = torch.arange(self.n_seeds).unsqueeze(1)  # (S, 1) pairs each seed with its own permutation
        metric_sums: dict[str, Any] = {}
        n_updates = np.zeros(self.n_seeds, dtype=np.int64)  # minibatch steps each seed took
        epochs_done = np.zeros(self.n_seeds, dtype=np.int64)
        approx_kl_last_epoch = np.zeros(self.n_seeds)
        for _ in range(c.n_epochs):
            kl_this_epoch = []
            # a seed that stopped draws no more permutations, as its lone run draws none
            permutation = torch.from_numpy(
                np.stack(
                    [
                        agent.rng.permutation(batch_size) if active[s] else np.arange(batch_size)
                        for s, agent in enumerate(self.agents)
                    ]
                )
            )  # (S, B)
            epoch_batch = [
                tensor[seed_rows, permutation]
                for tensor in (b_obs, b_actions, b_log_probs, b_values, b_advantages, b_returns)
            ]
            if use_numpy:
                epoch_batch = [tensor.numpy() for tensor in epoch_batch]  # shares memory
            for start, stop in bounds:
                step_metrics = gradient_step(*(tensor[:, start:stop] for tensor in epoch_batch))
                self._optimizer_step(optimizer_step, active)
                all_active = bool(active.all())
                for key, value in step_metrics.items():
                    value = value if all_active else np.where(active, value, np.zeros_like(value))
                    metric_sums[key] = metric_sums.get(key, 0.0) + value
                kl_this_epoch.append(step_metrics["approx_kl"])
                n_updates += active
            epochs_done += active
            # (S,): each seed's mean over a contiguous row, the summation its lone run's np.mean does
            kl_rows = np.stack([np.asarray(kl, dtype=np.float64) for kl in kl_this_epoch], axis=1)
            epoch_kl = np.array([np.mean(row) for row in kl_rows])
            approx_kl_last_epoch = np.where(active, epoch_kl, approx_kl_last_epoch)
            # Early stop at the end of an epoch, per seed, as PPO does for one (CleanRL's rule)
            if c.target_kl is not None:
                active &= ~(epoch_kl > c.target_kl)
                if not active.any():
                    break
        return metric_sums, n_updates, epochs_done, approx_kl_last_epoch

    def _update_ragged(self, per_seed, active, optimizer_step):
        """The epochs of minibatch steps when the seeds' batches differ in size (next-step autoreset).

        Each seed cuts its own batch into its lone run's minibatches (its own count and sizes);
        step ``k`` of an epoch pads every seed's ``k``-th minibatch to the largest and tells the
        gradient which rows are real; a seed with fewer minibatches sits the extra steps out.
        Advantages are normalised over each seed's real rows, as its lone run does. Returns what
        :meth:`_update_stacked` returns."""
        c = self.config
        data = [[column.numpy() for column in columns] for columns in per_seed]  # per seed, per column
        bounds = [
            [(chunk[0], chunk[-1] + 1) for chunk in np.array_split(np.arange(n), max(1, round(n / c.batch_size)))]
            for n in (len(columns[0]) for columns in data)
        ]
        metric_sums: dict[str, Any] = {}
        n_updates = np.zeros(self.n_seeds, dtype=np.int64)
        epochs_done = np.zeros(self.n_seeds, dtype=np.int64)
        approx_kl_last_epoch = np.zeros(self.n_seeds)
        for _ in range(c.n_epochs):
            # a seed that stopped draws no more permutations, as its lone run draws none
            orders = [
                agent.rng.permutation(len(data[s][0])) if active[s] else None for s, agent in enumerate(self.agents)
            ]
            kl_this_epoch: list[list[float]] = [[] for _ in range(self.n_seeds)]
            for k in range(max(len(bounds[s]) for s in np.flatnonzero(active))):
                stepping = active & np.array([k < len(seed_bounds) for seed_bounds in bounds])
                picks = [
                    orders[s][slice(*bounds[s][k])] if stepping[s] else np.zeros(1, dtype=np.int64)
                    for s in range(self.n_seeds)
                ]
                width = max(len(pick) for pick in picks)
                rows = np.array([np.arange(width) < len(pick) for pick in picks])  # (S, width) real rows
                padded = [np.concatenate([pick, np.full(width - len(pick), pick[0])]) for pick in picks]
                minibatch = [np.stack([data[s][i][padded[s]] for s in range(self.n_seeds)]) for i in range(6)]
                obs, actions, old_log_probs, old_values, advantages, returns = minibatch
                for s in range(self.n_seeds):
                    real = advantages[s, : len(picks[s])].copy()
                    advantages[s] = 0.0
                    advantages[s, : len(picks[s])] = normalize_advantages(real) if c.norm_adv else real
                self._numpy_gradient.bind()
                step_metrics = self._numpy_gradient.step_gradient(
                    obs, actions, old_log_probs, old_values, advantages, returns, rows=rows, **loss_settings(c)
                )
                self._optimizer_step(optimizer_step, stepping)
                for key, value in step_metrics.items():
                    metric_sums[key] = metric_sums.get(key, 0.0) + np.where(stepping, value, np.zeros_like(value))
                for s in np.flatnonzero(stepping):
                    kl_this_epoch[s].append(float(step_metrics["approx_kl"][s]))
                n_updates += stepping
            epochs_done += active
            epoch_kl = np.array([np.mean(kls) if kls else 0.0 for kls in kl_this_epoch])  # (S,)
            approx_kl_last_epoch = np.where(active, epoch_kl, approx_kl_last_epoch)
            if c.target_kl is not None:
                active = active & ~(epoch_kl > c.target_kl)
                if not active.any():
                    break
        return metric_sums, n_updates, epochs_done, approx_kl_last_epoch

    def evaluate_members(self, running: list[tuple[PPO, str]], run_dir: Path | None) -> None:
        """Each running seed's periodic evaluation, on its agent's policy (the stacked weights copied in first)."""
        self.model.copy_to([agent.policy for agent in self.agents])
        super().evaluate_members(running, run_dir)

    def _optimizer_step(self, optimizer_step, active: np.ndarray) -> None:
        """One optimiser step for the seeds in ``active``, each with its own Adam step count.

        While every seed steps together (always, without target_kl) this is the plain step; once
        a seed sat out a step its count lags the others', and every step passes the counts."""
        counts = self.seed_steps + active  # each seed's count after this step
        twin = self._numpy_adam
        same_lr = bool(np.all(self.seed_lrs == self.optimizer.param_groups[0]["lr"]))
        together = bool(active.all()) and same_lr and (twin is None or bool(np.all(counts == twin.steps[0] + 1)))
        if together:
            optimizer_step()
        else:
            twin.step(active=active, seed_steps=counts, seed_lrs=None if same_lr else self.seed_lrs)
        self.seed_steps = counts.astype(np.float32)

    def _advantages_per_seed(self, advantages):
        """Advantages normalised over each seed's own minibatch ``(S, b)``, as PPO does for one seed."""
        return normalize_advantages(advantages) if self.config.norm_adv else advantages

    def _autograd_step(self, obs, actions, old_log_probs, old_values, advantages, returns) -> dict[str, Any]:
        """Set ``.grad`` of the stacked parameters to each seed's clipped PPO gradient, by autograd;
        metrics are ``(S,)`` tensors. Inputs are ``(S, b, ...)`` minibatches."""
        c = self.config
        dist = self.model.distribution(obs)
        entropy = dist.entropy().mean(1)  # (S,)
        policy_loss, policy_metrics = seed_batched_clipped_surrogate_loss(
            dist.log_prob(actions), old_log_probs, self._advantages_per_seed(advantages), c.clip_coef
        )
        critic_loss, critic_metrics = seed_batched_value_loss(
            self.model.value(obs), returns, old_values, c.vf_clip_coef if c.clip_vloss else None
        )
        loss_per_seed = policy_loss + c.vf_coef * critic_loss - c.ent_coef * entropy  # (S,)
        self.optimizer.zero_grad(set_to_none=True)
        loss_per_seed.sum().backward()  # slice [s] of each gradient is seed s's own gradient
        grad_norm = per_seed_grad_norm_clip_(list(self.model.parameters()), c.max_grad_norm)
        metrics = {**policy_metrics, **critic_metrics, "entropy": entropy.detach(), "grad_norm": grad_norm}
        if isinstance(dist, torch.distributions.Independent):
            metrics["action_std"] = dist.base_dist.scale.detach().mean((1, 2))
        return {key: value.numpy() for key, value in metrics.items()}

    def _numpy_gradient_step(self, obs, actions, old_log_probs, old_values, advantages, returns) -> dict[str, Any]:
        """The same as :meth:`_autograd_step`, by hand in numpy (pgrad/numpy_twin/gradient.py); ``(S,)`` metrics."""
        c = self.config
        gradient = self._numpy_gradient
        gradient.bind()
        return gradient.step_gradient(
            obs,
            actions,
            old_log_probs,
            old_values,
            gradient.normalized_advantages(advantages) if c.norm_adv else advantages,
            returns,
            **loss_settings(c),
        )

    # -- checkpoints -------------------------------------------------------------------------
    # A seed-batched run writes, for every seed, the checkpoint that seed's single-seed run writes
    # at the same iteration (RUN/seed_<S>/checkpoint): its weights and slice [s] of the stacked
    # Adam state go into its own agent, its generator stands in for torch's global one and its
    # rows of the shared collector for its own collector. Resuming loads each seed's checkpoint
    # into its agent, as a single-seed resume does, and stacks the agents again.

    def _unstack_into_agents(self) -> None:
        """Write the batched weights, Adam state (slice ``[s]``, the seed's own step count) and lr into every agent."""
        policies = [agent.policy for agent in self.agents]
        self.model.copy_to(policies)
        for s, agent in enumerate(self.agents):
            agent.optimizer.state.clear()
            for stacked, per_seed in self.model.parameter_pairs(policies):
                saved = self.optimizer.state.get(stacked)
                if saved:  # Adam holds no state before its first step (or, adopted by NumpyAdam, zeros at step 0)
                    agent.optimizer.state[per_seed[s]] = {
                        key: torch.full_like(value, float(self.seed_steps[s]))
                        if key == "step"
                        else value[s].clone()
                        if value.shape == stacked.shape
                        else value.clone()
                        for key, value in saved.items()
                    }
            for group in agent.optimizer.param_groups:
                group["lr"] = float(self.seed_lrs[s])  # each seed's own (their annealing may differ)

    def _stack_from_agents(self) -> None:
        """The inverse of :meth:`_unstack_into_agents`, after each agent loaded its own checkpoint."""
        policies = [agent.policy for agent in self.agents]
        self.model.copy_from(policies)
        self.optimizer.state.clear()
        for stacked, per_seed in self.model.parameter_pairs(policies):
            states = [agent.optimizer.state.get(parameter) for agent, parameter in zip(self.agents, per_seed)]
            if states[0]:
                self.optimizer.state[stacked] = {
                    key: torch.stack([state[key] for state in states])
                    if value.shape == per_seed[0].shape
                    # the step count of the stacked optimiser is its number of steps: the most any seed took
                    else torch.stack([state[key] for state in states]).max()
                    if key == "step"
                    else value.clone()
                    for key, value in states[0].items()
                }
                self.seed_steps = np.array([float(state["step"]) for state in states], dtype=np.float32)
        self.seed_lrs = np.array([agent.optimizer.param_groups[0]["lr"] for agent in self.agents])
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.seed_lrs[0])

    def save_checkpoints(self, run_dir: str | Path, final: list[PPO] | None = None) -> None:
        """Write every seed's ordinary single-seed checkpoint to ``run_dir/seed_<S>/checkpoint``.

        A seed that finished before the others (stopped early, or reached the budget first) keeps
        the checkpoint of that moment: its envs go on stepping with the group's, unlike its lone
        run's. ``final``: write only these agents' checkpoints, their last ones."""
        self._unstack_into_agents()
        done = getattr(self, "_final_checkpoints", set())
        for s, (seed, agent) in enumerate(zip(self.seeds, self.agents)):
            if (agent not in final) if final is not None else agent in done:
                continue
            if final is not None:
                done.add(agent)
            collector = self.collector.seed_state(s) if self.collector is not None else None  # else the agent's own
            # keep the seed's last checkpoint until every seed has its new one: a kill between two
            # seeds' writes then resumes from the step all of them still have (seed_batched.py)
            current = Path(run_dir) / f"seed_{seed}" / "checkpoint" / "state.safetensors"
            if current.is_file():
                # previous.safetensors becomes a second name of the current file (a hard link swapped
                # in atomically), so the folder has a complete state.safetensors at every moment
                link = current.with_name(".previous.safetensors.tmp")
                link.unlink(missing_ok=True)
                os.link(current, link)
                os.replace(link, current.with_name("previous.safetensors"))
            agent.save_checkpoint(
                Path(run_dir) / f"seed_{seed}" / "checkpoint",
                collector=collector,
                torch_rng_state=self.generators[s].get_state(),
            )

    def load_checkpoints(self, run_dir: str | Path, keep_hyperparameters: bool = False) -> None:
        """Continue from ``run_dir/seed_<S>/checkpoint`` of every seed (all written at the same iteration).

        Each agent loads its checkpoint as a single-seed resume does (weights, Adam, generators,
        counters, collector, envs by replay, logger rows); then the model and Adam are stacked again.
        """
        for seed, agent, generator in zip(self.seeds, self.agents, self.generators):
            folder = Path(run_dir) / f"seed_{seed}"
            agent.load_checkpoint_state(
                folder / "checkpoint", run_dir=folder, keep_hyperparameters=keep_hyperparameters
            )
            generator.set_state(torch.get_rng_state())  # the checkpoint's "global" generator is the seed's own
        if len({(agent.total_steps, agent.updates) for agent in self.agents}) != 1:
            raise not_in_lockstep({seed: agent.total_steps for seed, agent in zip(self.seeds, self.agents)})
        self._stack_from_agents()
        self.wall_seconds = self.agents[0].wall_seconds
        self._restored_collectors = [agent.collector for agent in self.agents] if self.agents[0].collector else None
        # a shared collector from earlier training holds the envs' state of then, not the checkpoint's:
        # the next collect() builds a new one from the restored collectors, as a fresh object's does
        self.collector = None

    def _check_finite_weights(self) -> None:
        for name, tensor in self.model.named_parameters():
            finite = torch.isfinite(tensor.detach().reshape(self.n_seeds, -1)).all(1)
            if not bool(finite.all()):
                seed = self.seeds[int(torch.nonzero(~finite)[0, 0])]
                raise NonFiniteError(
                    f"training diverged: parameter {name} of seed {seed} became NaN or inf; try a lower lr or "
                    "max_grad_norm"
                )

    def close(self) -> None:
        """Close every seed's envs and logs (the collector steps the seeds' own envs)."""
        for agent in self.agents:
            agent.close()
