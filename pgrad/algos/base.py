"""``Algorithm``: what every pgrad algorithm shares, so each algorithm file holds only its maths.

A subclass sets ``name`` and ``Config``, builds its optimisers in :meth:`setup`, and implements
:meth:`train_iteration` (collect experience, update, return metrics). This class owns the learn
loop, logging, checkpoints, ``predict``, ``save`` and loading. One level of inheritance, no more.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from pgrad import __version__, checkpointing
from pgrad.callbacks import CheckpointCallback, EvalCallback, as_callbacks
from pgrad.config import Config, resolve_preset
from pgrad.devices import resolve_device
from pgrad.early_stopping import EarlyStopping
from pgrad.envs import env_id_of, make_env, make_vector_env
from pgrad.envs.envpool_backend import EnvPoolVectorEnv
from pgrad.envs.options import env_options_of, with_options
from pgrad.envs.vector import LeanSyncVectorEnv, close_vector_env
from pgrad.errors import ConfigError, NonFiniteError, PolicyFileError
from pgrad.io import (
    check_policy_size,
    save_policy,
    space_from_json,
    space_to_json,
    write_json,
)
from pgrad.logger import Progress, RunLogger, write_csv
from pgrad.masking import MASK_KEY, has_mask_key, mask_size
from pgrad.normalize import RewardScaler
from pgrad.numpy_twin import NumpyActorCritic, unsupported_reason
from pgrad.numpy_twin.layers import all_parameters
from pgrad.numpy_twin.policy import compiled_kernels
from pgrad.observations import is_single_observation, select_keys
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import EpisodeLog, RolloutCollector, env_failure

NOT_TRAINABLE = (
    "this agent was loaded to act only; to train it, load it with an env: pgrad.load(path, env=ENV) "
    "(pgrad train ... --init RUN)"
)


@dataclass
class IterationResult:
    """What one training iteration did: transitions consumed, episodes finished, metrics."""

    n_transitions: int
    episodes: EpisodeLog
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LearnBudget:
    """The ``learn`` call in progress: where it started and how many steps it was given.

    Saved in checkpoints, so a resumed run anneals learning rates and stops exactly where the
    uninterrupted ``learn`` call would have.
    """

    start_step: int
    total_steps: int
    start_updates: int

    @property
    def end_step(self) -> int:
        return self.start_step + self.total_steps

    @classmethod
    def for_call(
        cls, interrupted: LearnBudget | None, total_steps: int, steps: int, updates: int, resume: bool
    ) -> LearnBudget:
        """The budget of a ``learn(total_steps)`` call made at ``steps``/``updates``; a resumed
        call continues the ``interrupted`` one (its start, this budget)."""
        if resume and interrupted is not None:
            return cls(interrupted.start_step, total_steps, interrupted.start_updates)
        return cls(steps, total_steps, updates)

    def starts_another(self, steps: int) -> bool:
        """Whether ``learn`` starts another iteration at ``steps``: while the budget is not reached, so
        a run trains at least ``total_steps``, rounded up to whole iterations (rollouts)."""
        return steps < self.end_step

    def remaining(self, steps: int) -> float:
        """The fraction of the budget left at ``steps`` (1 at the start), for lr annealing."""
        return 1.0 - (steps - self.start_step) / self.total_steps


def check_learn_arguments(total_steps: Any, checkpoint_every: Any) -> None:
    """Raise ConfigError unless ``total_steps`` and ``checkpoint_every`` (None: off) are positive ints."""
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ConfigError(f"total_steps={total_steps!r} must be a positive int")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ConfigError(f"checkpoint_every={checkpoint_every!r} must be a positive number of steps")


def check_encoder_kwargs(encoder: type | None, encoder_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """``encoder_kwargs`` as saved in policy.json: ConfigError unless it is JSON data (a policy
    file holds no pickled objects) and given with an ``encoder``."""
    if encoder_kwargs is None:
        return None
    if encoder is None:
        raise ConfigError("encoder_kwargs given without an encoder class")
    try:
        return json.loads(json.dumps(encoder_kwargs))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"encoder_kwargs must be JSON data (numbers, strings, lists, dicts): {exc}") from None


def saved_encoder(description: dict[str, Any], custom_objects: dict[str, type] | None) -> tuple[type | None, Any]:
    """The custom encoder class (looked up in ``custom_objects``, never imported) and kwargs a
    saved policy names, or ``(None, None)``; PolicyFileError naming the class to pass if missing."""
    saved = description.get("policy", {}).get("encoder")
    if saved is None:
        return None, None
    name = saved.get("class")
    found = (custom_objects or {}).get(name)
    if found is None:
        raise PolicyFileError(
            f"this policy uses the custom encoder class {name!r}; pass it: "
            f"pgrad.load(path, custom_objects={{{name!r}: {name}}})"
        )
    return found, saved.get("kwargs") or {}


def decay_learning_rate(optimizer: torch.optim.Optimizer, initial_lr: float, progress_remaining: float) -> None:
    """Linear decay to 0 over a ``learn`` call: set every group's lr to its initial one (``initial_lr``,
    or the group's own ``base_lr``, see :func:`parameter_groups`) times ``progress_remaining``."""
    for group in optimizer.param_groups:
        group["lr"] = group.get("base_lr", initial_lr) * progress_remaining


def parameter_groups(policy: torch.nn.Module, lr: float, vf_lr: float | None) -> Any:
    """The policy's parameters for its optimiser: all in one group, or with ``vf_lr`` (when it
    differs from ``lr``) the critic's (``critic.*``, ``critic_lstm.*``) in a group of their own.
    Each group records its ``base_lr`` for :func:`decay_learning_rate`. A shared image encoder or
    trunk learns at ``lr``. A target critic (``target.*``) is in neither: it moves by copying."""
    trained = [(name, p) for name, p in policy.named_parameters() if not name.startswith("target.")]
    if vf_lr is None or vf_lr == lr:
        return policy.parameters() if getattr(policy, "target", None) is None else [p for _, p in trained]
    critic, actor = [], []
    for name, parameter in trained:
        (critic if name.startswith(("critic.", "critic_lstm.")) else actor).append(parameter)
    return [{"params": actor, "lr": lr, "base_lr": lr}, {"params": critic, "lr": vf_lr, "base_lr": vf_lr}]


def built_in_callbacks(
    callbacks: list[Any], checkpoint_every: int | None, early_stopping: EarlyStopping | None
) -> tuple[int | None, EarlyStopping | None]:
    """``learn``'s ``checkpoint_every`` and ``early_stopping`` with the :class:`CheckpointCallback`
    and :class:`EvalCallback` of ``callbacks`` folded in: the learn loop carries those two out
    itself (their state goes into checkpoints; each seed of a group evaluates its own policy).
    ConfigError if one is given both ways."""
    for item in callbacks:
        if isinstance(item, CheckpointCallback):
            if checkpoint_every is not None and checkpoint_every != item.every:
                raise ConfigError("checkpoint_every given twice: as an argument and as a CheckpointCallback")
            checkpoint_every = item.every
        elif isinstance(item, EvalCallback):
            if early_stopping is not None and early_stopping is not item.stopping:
                raise ConfigError("periodic evaluation given twice: early_stopping and an EvalCallback")
            early_stopping = item.stopping
    return checkpoint_every, early_stopping


@contextlib.contextmanager
def allocation_errors_as_config_errors():
    """Turn torch's failure to allocate a network (widths beyond memory) into a one-line ConfigError."""
    try:
        yield
    except MemoryError:
        raise ConfigError("the network is too large for this machine's memory; use smaller hidden sizes") from None
    except RuntimeError as exc:
        message = str(exc)
        if "allocate" not in message and "overflow" not in message.lower():
            raise
        reason = message.strip().splitlines()[0]
        raise ConfigError(f"the network cannot be allocated ({reason}); use smaller hidden sizes") from None


def set_compute_threads(n_threads: int) -> None:
    """Use ``n_threads`` for torch's intra-op work and for numpy's BLAS (OpenBLAS), process-wide.

    The numpy twin (pgrad/numpy_twin/) multiplies small matrices in numpy, whose OpenBLAS
    otherwise starts a thread per core that spins between calls: on 2 cores that made
    `pgrad train ppo CartPole-v1` slower and doubled its CPU time (BENCHMARKS.md, "Speed"), and a
    second process on the other core would lose it too.
    """
    torch.set_num_threads(n_threads)
    from threadpoolctl import threadpool_limits

    # The compiled update's products go through SciPy's OpenBLAS (numba calls it), a second
    # library beside numpy's: loaded first (with the compiled kernels, where numba is installed),
    # so that the limit covers it too.
    compiled_kernels()
    threadpool_limits(n_threads, user_api="blas")  # called as a function: holds until changed


def versions() -> dict[str, str]:
    """Library versions recorded with every run, for reproducibility; ``numba`` when the run took
    the compiled path (pgrad/numpy_twin/compiled.py), whose float rounding differs from numpy's."""
    recorded = {
        "pgrad": __version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    kernels = compiled_kernels()
    if kernels is not None:
        recorded["numba"] = kernels.numba.__version__
    return recorded


class Algorithm:
    """Base of every algorithm: construction from an env and hyperparameters, learn, predict, save."""

    name: ClassVar[str]
    Config: ClassVar[type[Config]]
    uses_critic: ClassVar[bool] = True
    # Whether updates can run on a GPU (pgrad/devices.py): batch updates only.
    updates_on_device: ClassVar[bool] = False
    # Recurrent algorithms' predict takes and returns a state: (action, state) = predict(obs, state, episode_start).
    recurrent: ClassVar[bool] = False

    def __init__(
        self,
        env: Any,
        seed: int = 0,
        *,
        preset: str | None = "auto",
        encoder: type | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        wrappers: list[Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        """Build envs and policy.

        Args:
            env: a Gymnasium id, ``pgrad/...`` id, ``module:Class`` entry point, env instance or a
                zero-argument callable returning an env.
            seed: seeds the policy initialisation, action sampling, minibatch order and the envs.
            preset: ``"auto"`` applies the shipped preset for this env if there is one, ``None`` or
                ``"none"`` applies none, any other string names a preset (``pgrad list``).
            encoder: a ``torch.nn.Module`` class to encode observations instead of pgrad's
                (:class:`pgrad.encoders.CustomEncoder` says what it receives and returns); saved
                as its class name and ``encoder_kwargs`` (which must be JSON data), so loading
                needs ``pgrad.load(path, custom_objects={"Name": Name})``.
            encoder_kwargs: keyword arguments of ``encoder``.
            env_kwargs: constructor keywords of every env the agent builds (JSON data; recorded
                in config.json), e.g. ``{"continuous": True}``; they extend a preset's.
            wrappers: wrapper classes applied in order to every env the agent builds, each as
                ``"module:Class"`` or ``'module:Class:{"kwarg": 1}'``
                (:mod:`pgrad.envs.options`); they replace a preset's.
            **hyperparameters: fields of ``Config``; they override the preset.
        """
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed={seed!r} must be an int from 0 to 2**63-1")
        self.env_id = env_id_of(env)
        self.seed = seed
        self.encoder_class, self.encoder_kwargs = encoder, check_encoder_kwargs(encoder, encoder_kwargs)
        auto = preset == "auto"
        self.preset, preset_values = resolve_preset(self.name, self.env_id, None if auto else (preset or "none"))
        # a preset's env options: its env_kwargs under the given ones, its wrappers unless others are given
        env_kwargs = {**preset_values.pop("env_kwargs", {}), **(env_kwargs or {})}
        wrappers = wrappers if wrappers is not None else preset_values.pop("wrappers", None)
        preset_values.pop("wrappers", None)
        self.env = with_options(env, env_kwargs, wrappers)
        self.config = self.Config.build({**preset_values, **hyperparameters})
        set_compute_threads(self.config.torch_threads)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.trainable = True  # False for an agent rebuilt from a policy file
        self.envs = self.make_envs()
        self.observation_space, self.action_space = self.env_spaces()
        self.action_mask_source = self.find_action_mask_source()
        if self.action_mask_source != "info" and isinstance(self.envs, LeanSyncVectorEnv):
            self.envs.keep_infos = False  # no info key is read: the vector env's leanest step
        self.policy = self.build_policy()
        # the policy's copy that updates run on: the policy itself on the CPU, a GPU copy on cuda
        self.device = resolve_device(
            getattr(self.config, "device", "cpu"),
            getattr(self.policy, "encoder", None) is not None,
            self.name,
            self.updates_on_device,
        )
        self.learner = self.policy if self.device.type == "cpu" else copy.deepcopy(self.policy).to(self.device)
        self.collector: RolloutCollector | None = None
        # in a seed-batched group (pgrad/algos/ppo_batched.py), the group's collector, which steps
        # this agent's envs instead of an own one
        self.shared_collector: RolloutCollector | None = None
        self.total_steps = 0
        self.updates = 0
        self.wall_seconds = 0.0
        self.learn_budget: LearnBudget | None = None
        self.early_stopping: EarlyStopping | None = None
        self._early_stopping_state: dict[str, Any] | None = None  # from a checkpoint, until learn()
        self.logger = RunLogger(None)
        self.setup()

    # -- hooks for subclasses ----------------------------------------------------------------

    def make_envs(self) -> VectorEnv | None:
        """The vector env the collector steps (override where the algorithm steps envs elsewhere)."""
        c = self.config
        return make_vector_env(
            self.env,
            c.n_envs,
            seed=self.seed,
            vectorization=c.vectorization,
            autoreset_mode=c.autoreset_mode,
            vector_kwargs={"step_timeout": c.env_timeout} if c.vectorization == "async" else None,
            record_episodes=True,  # replayed on resume
            # the collector reads only final_obs and action_mask; batching every info costs time every step
            keep_infos=(MASK_KEY,),
            atari_training=True,  # ALE/ ids: episodic life and reward clipping (pgrad/envs/atari.py)
        )

    def env_spaces(self) -> tuple[gymnasium.Space, gymnasium.Space]:
        """``(observation_space, action_space)`` of one env (a Dict observation restricted to the
        config's ``obs_keys``, if any: the policy reads only those)."""
        return select_keys(self.envs.single_observation_space, self.config.obs_keys), self.envs.single_action_space

    def find_action_mask_source(self) -> str | None:
        """Where the env reports its allowed actions (:mod:`pgrad.masking`): ``"observation"`` (a
        Dict observation's ``action_mask`` key), ``"info"`` (``info["action_mask"]`` of a reset,
        seen on a separate copy of the env), or None (no masking: ``action_mask=off``, actions
        that are not Discrete/MultiDiscrete, or an env that reports no mask)."""
        setting = getattr(self.config, "action_mask", "off")
        discrete = isinstance(self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete))
        if setting == "off" or (setting == "auto" and not discrete):
            return None
        mask_size(self.action_space)  # action_mask=on with other actions: the one-line error
        if has_mask_key(self.observation_space):
            return "observation"
        probe = make_env(self.env)
        try:
            info = probe.reset(seed=self.seed)[1]
        except Exception as exc:
            raise env_failure(exc, "reset", 0) from exc
        finally:
            if probe is not self.env:  # an env instance is the user's (and the vector env's)
                probe.close()
        if MASK_KEY in info:
            return "info"
        if setting == "on":
            raise ConfigError(
                "action_mask=on, but the env reports no action mask: expected info['action_mask'] from reset "
                "and step, or an action_mask key in a Dict observation"
            )
        return None

    def build_policy(self) -> ActorCriticPolicy:
        """The policy network for this algorithm (override for another architecture)."""
        with allocation_errors_as_config_errors():
            policy = ActorCriticPolicy(
                self.observation_space, self.action_space, with_critic=self.uses_critic, **self.policy_options()
            )
        return self.finish_policy(policy)

    def policy_options(self) -> dict[str, Any]:
        """The config's network settings, as the policy classes take them."""
        c = self.config
        return dict(
            hidden_sizes=c.hidden_sizes,
            activation=c.activation,
            action_dist=c.action_dist,
            log_std_init=c.log_std_init,
            state_dependent_std=c.state_dependent_std,
            normalize_obs=c.normalize_obs,
            cnn=c.cnn,
            cnn_features=c.cnn_features,
            action_mask=self.action_mask_source,
            pi_hidden_sizes=c.pi_hidden_sizes,
            vf_hidden_sizes=c.vf_hidden_sizes,
            share_trunk=c.share_trunk,
            layer_norm=c.layer_norm,
            trainable_std=c.trainable_std,
            encoder_class=self.encoder_class,
            encoder_kwargs=self.encoder_kwargs,
        )

    def finish_policy(self, policy: torch.nn.Module) -> torch.nn.Module:
        """The config's initialisation and return scaling applied to a freshly built policy."""
        c = self.config
        if not c.ortho_init:
            policy.use_torch_default_init()
        if getattr(c, "target_critic", "none") != "none":
            policy.add_target_critic()
        # The return statistics travel with the policy's weights, like the observation ones.
        policy.reward_scaler = RewardScaler(c.n_envs, c.gamma) if c.normalize_reward else None
        return policy

    def learner_from_policy(self) -> None:
        """Before an update on a GPU: copy the acting policy's weights and statistics (which a
        resume or a rollout may have changed) into the learner. Nothing on the CPU."""
        if self.learner is not self.policy:
            self.learner.load_state_dict(self.policy.state_dict())

    def policy_from_learner(self) -> None:
        """After an update on a GPU: copy the learner's weights back to the acting policy."""
        if self.learner is not self.policy:
            self.policy.load_state_dict(self.learner.state_dict())

    def rollout_end(self) -> None:
        """Called by :meth:`train_iteration` once its rollout is collected, before the update:
        runs the callbacks' ``on_rollout_end``."""
        for item in getattr(self, "callbacks", ()):
            item.on_rollout_end(self)

    def update_target_critic(self) -> None:
        """After an update: move the target critic (``target_critic=hard``: a copy every
        ``target_period`` updates; ``polyak``: a step of ``target_tau``). Nothing without one."""
        c = self.config
        mode = getattr(c, "target_critic", "none")
        if mode == "polyak":
            self.learner.update_target(c.target_tau)
        elif mode == "hard" and (self.updates + 1) % c.target_period == 0:
            self.learner.update_target(1.0)

    def setup(self) -> None:
        """Create optimisers and anything else the algorithm keeps between iterations."""
        raise NotImplementedError

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        """Collect experience and update once; ``progress_remaining`` goes from 1 to 0 over ``learn``."""
        raise NotImplementedError

    # -- hooks of the learn loop: one seed (this class) or a seed-batched group of them ------------

    def seed_members(self) -> list[tuple[Algorithm, str]]:
        """The seeds ``learn`` trains, each with its folder inside the run folder: this agent in the
        run folder itself; a seed-batched group (pgrad/algos/ppo_batched.py) its seeds' agents in
        ``seed_<S>/``. :meth:`train_iteration` returns one :class:`IterationResult` per member."""
        return [(self, "")]

    def prepare_learning(self, run_dir: Path | None) -> None:
        """Called once at the start of :meth:`learn`, before anything is logged."""
        self._ensure_collector()

    def write_checkpoint(self, run_dir: Path) -> Path:
        """Write what ``--resume`` continues from into ``run_dir``; return where it went."""
        self.save_checkpoint(run_dir / "checkpoint")
        return run_dir / "checkpoint"

    def end_learning(self, run_dir: Path | None) -> None:
        """Called once when :meth:`learn` finishes its iterations (not when it fails)."""
        if run_dir is not None:
            self.write_checkpoint(run_dir)

    def fast_path_problem(self) -> str | None:
        """Why the numpy twin (pgrad/numpy_twin/) cannot serve this agent's policy, or None if it
        does: the run then acts (and, for PPO and A2C, updates) on torch throughout, with the same
        maths, slower. Recorded as ``fast_path`` in summary.json; ``pgrad train`` says it once."""
        return unsupported_reason(self.policy) or unsupported_reason(self.learner)

    def compiled_act(self) -> bool:
        """Whether the rollout's policy step runs compiled (numba installed, pgrad/numpy_twin/compiled.py)
        rather than as numpy calls: the same maths, float32 rounding apart. Recorded as
        ``compiled_act`` in summary.json."""
        collector = self.shared_collector if self.shared_collector is not None else self.collector
        fast = collector.fast if collector is not None else None
        return fast is not None and fast.compiled is not None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers whose state goes into checkpoints."""
        return {}

    def checkpoint_extra(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(json, tensors)`` of algorithm state beyond weights, optimisers and the collector."""
        return {}, {}

    def restore_checkpoint_extra(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`checkpoint_extra`."""

    # -- training loop -----------------------------------------------------------------------

    def _ensure_collector(self) -> RolloutCollector:
        if not self.trainable:
            raise ConfigError(NOT_TRAINABLE)
        if self.collector is None:
            self.collector = RolloutCollector(
                self.envs,
                self.policy,
                seed=self.seed,
                reward_scaler=self.policy.reward_scaler,
                start_step=self.total_steps,
            )
        return self.collector

    def learn(
        self,
        total_steps: int,
        run_dir: str | Path | None = None,
        quiet: bool = False,
        checkpoint_seconds: float = 60.0,
        callback: Any = None,
        *,
        checkpoint_every: int | None = None,
        early_stopping: EarlyStopping | None = None,
        resume: bool = False,
    ) -> Algorithm:
        """Train for ``total_steps`` more environment transitions.

        Args:
            total_steps: transitions (summed over envs) to train for, at least: iterations run until
                the budget is reached, so it is rounded up to whole iterations (PPO and A2C:
                ``n_steps * n_envs`` transitions; REINFORCE: whole episodes; ARS: 2N rollouts).
            run_dir: if given, stream config.json, metrics.csv, episodes.csv, TensorBoard events and
                a checkpoint into it (every ``checkpoint_seconds``, every ``checkpoint_every``
                steps, on early stop, on SIGINT/SIGTERM and at the end). A first SIGINT or SIGTERM
                then finishes the current iteration, writes the checkpoint and raises
                :class:`pgrad.errors.Interrupted`.
            quiet: no progress display.
            callback: :mod:`pgrad.callbacks` objects (one or a list), or a function ``f(agent, row)``
                called after every update with the metrics row (returning False stops), or a list
                mixing both.
            checkpoint_every: also checkpoint each time the step count crosses a multiple of this
                (the same as a :class:`pgrad.callbacks.CheckpointCallback` in ``callback``).
            early_stopping: evaluate periodically and maybe stop early (:class:`EarlyStopping`);
                evaluations go to ``run_dir/evaluations.csv``, the best policy to ``run_dir/best/``
                (the same as a :class:`pgrad.callbacks.EvalCallback` in ``callback``).
            resume: continue the ``learn`` call a loaded checkpoint (:meth:`load_checkpoint_state`)
                interrupted: ``total_steps`` is then that call's whole budget, as first given, and
                the steps it already did count towards it.
        """
        check_learn_arguments(total_steps, checkpoint_every)
        callbacks = as_callbacks(callback)
        checkpoint_every, early_stopping = built_in_callbacks(callbacks, checkpoint_every, early_stopping)
        self.callbacks = callbacks
        if early_stopping is not None and isinstance(self.env, gymnasium.Env):
            raise ConfigError(
                "early stopping evaluates on a fresh env: pass an env id or a callable, not an env instance"
            )
        run_dir = Path(run_dir) if run_dir is not None else None
        self.prepare_learning(run_dir)
        members = self.seed_members()
        lead = members[0][0]  # every seed of a seed-batched group starts at the same step and update
        budget = LearnBudget.for_call(lead.learn_budget, total_steps, lead.total_steps, lead.updates, resume)
        for agent, folder in members:
            # each seed evaluates and stops on its own; a seed that stopped sits out the group's iterations
            agent.early_stopping = (
                None if early_stopping is None else (early_stopping if agent is self else early_stopping.fresh_copy())
            )
            if agent.early_stopping is not None and resume and agent._early_stopping_state is not None:
                agent.early_stopping.load_state(agent._early_stopping_state)
            agent._early_stopping_state = None
            agent.learn_budget = budget
            if run_dir is not None:
                # On resume, TensorBoard hides what the stopped run logged after its checkpoint.
                agent.logger.attach(run_dir / folder, purge_step=agent.total_steps + 1 if resume else None)
                write_json(run_dir / folder / "config.json", agent.describe_run())
        progress = None if quiet else Progress(budget.end_step, lead.total_steps)
        start = time.perf_counter()
        wall_before = self.wall_seconds
        schedule = checkpointing.CheckpointSchedule(checkpoint_seconds, checkpoint_every, lead.total_steps, start)
        signals = checkpointing.StopSignals() if run_dir is not None else contextlib.nullcontext()
        try:
            for item in callbacks:
                item.on_training_start(self, run_dir)
            with signals:
                while True:
                    # a member is done once its periodic evaluation stopped it or it reached the
                    # budget (seeds of a group count their own transitions; next-step autoreset
                    # gives them different counts)
                    running = [
                        member
                        for member in members
                        if not member[0].stopped_early and budget.starts_another(member[0].total_steps)
                    ]
                    if not running:
                        break
                    lead = running[0][0]
                    self.running_members = [agent for agent, _ in running]  # train_iteration's members this time
                    iteration_start = time.perf_counter()
                    results = self.train_iteration(budget.remaining(lead.total_steps))
                    # one per member; None for a member that stopped early and sat this iteration out
                    results = [results] if isinstance(results, IterationResult) else results
                    self._check_finite_weights()
                    now = time.perf_counter()
                    self.wall_seconds = wall_before + (now - start)
                    # every member's transitions over the iteration's wall time: this process's rate
                    n_transitions = sum(result.n_transitions for result in results if result is not None)
                    sps = n_transitions / max(now - iteration_start, 1e-9)
                    rows = []  # one per member that ran; the callbacks get the first
                    for (agent, _), result in zip(members, results, strict=True):
                        if result is None:
                            continue
                        agent.logger.log_episodes(result.episodes)
                        agent.total_steps += result.n_transitions
                        agent.updates += 1
                        agent.wall_seconds = self.wall_seconds
                        row = {
                            "step": agent.total_steps,
                            "wall_time": round(self.wall_seconds, 3),
                            "episode_return_mean": agent.logger.recent_return,
                            "episode_length_mean": agent.logger.recent_length,
                            "sps": sps,
                            **result.metrics,
                        }
                        agent.logger.log_update(row)
                        rows.append(row)
                    if progress is not None:
                        progress.update(lead.total_steps, lead.logger.recent_return)
                    if early_stopping is not None:
                        self.evaluate_members(running, run_dir)
                    # every callback sees every update, even after one of them asked to stop
                    stop = [item.on_update_end(self, rows[0]) for item in callbacks].count(False) > 0
                    if run_dir is not None and schedule.due(now, lead.total_steps):
                        self.write_checkpoint(run_dir)
                        schedule.written(now, lead.total_steps)
                    if getattr(signals, "received", None) is not None:
                        written_to = self.write_checkpoint(run_dir)
                        raise signals.interrupted(lead.total_steps, f"checkpoint written to {written_to}")
                    if stop:
                        break
                if progress is not None:
                    progress.update(lead.total_steps, lead.logger.recent_return, final=True)
                self.end_learning(run_dir)
                for item in callbacks:
                    item.on_training_end(self, run_dir)
        finally:
            self.callbacks = []
            for agent, _ in members:
                agent.logger.flush()
        return self

    @property
    def stopped_early(self) -> bool:
        """Whether this agent's periodic evaluation stopped its training (``learn``'s early_stopping)."""
        return self.early_stopping is not None and self.early_stopping.should_stop

    def evaluate_members(self, running: list[tuple[Algorithm, str]], run_dir: Path | None) -> None:
        """The periodic evaluation of every running member whose step count has reached it."""
        for agent, folder in running:
            if agent.early_stopping.due(agent.total_steps):
                agent._evaluate_during_training(agent.early_stopping, None if run_dir is None else run_dir / folder)

    def _evaluate_during_training(self, early_stopping: EarlyStopping, run_dir: Path | None) -> None:
        row = early_stopping.evaluate(self, self.total_steps)
        if run_dir is not None:
            write_csv(
                run_dir / "evaluations.csv", early_stopping.history, ["step", "mean_return", "std_return", "best"]
            )
            if row["improved"]:
                save_policy(run_dir / "best", self.policy_description(), self.policy.state_dict())

    def _check_finite_weights(self) -> None:
        """NonFiniteError naming the first parameter with a NaN or inf, after every update."""
        with torch.no_grad():
            # (all_parameters: Module.parameters()'s order, without its name-building generators)
            parameters = [parameter.reshape(-1) for parameter in all_parameters(self.policy)]
            # A sum is finite only if every term is (NaN and inf propagate): one reduction over all
            # weights instead of two ops per tensor, a tenth of an actor-critic update (one per env
            # step). Only a non-finite sum (or one that overflowed) needs the search by name below.
            if not parameters or math.isfinite(float(torch.cat(parameters).sum())):
                return
        for name, tensor in self.policy.named_parameters():
            if not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"training diverged: parameter {name} became NaN or inf in update {self.updates + 1} "
                    f"(step {self.total_steps}); try a lower lr or max_grad_norm"
                )

    # -- acting ------------------------------------------------------------------------------

    def predict(self, obs: Any, deterministic: bool = True, action_mask: Any = None) -> np.ndarray:
        """Actions the env accepts for one observation or a batch (numpy in, numpy out).

        ``action_mask``: the allowed actions (bool, one row per observation; what the env put in
        ``info["action_mask"]``) for a policy trained with masking; a Dict observation's
        ``action_mask`` key is read by itself. None: every action allowed.
        """
        policy = self.policy
        if action_mask is not None and not policy.mask_size:
            raise ConfigError("action_mask given, but this policy was trained without masking (action_mask=off)")
        fast = self._numpy_twin(read_std=not deterministic)  # None where it does not cover the policy
        if fast is not None:
            obs_np = fast.normalize(np.asarray(obs))
            raw = fast.deterministic_action(obs_np) if deterministic else fast.act(obs_np)[0]
        else:
            with torch.no_grad():
                tensor = policy.normalize(policy.obs_to_tensor(obs, action_mask, "given to predict"))
                dist = policy.distribution(tensor)
                raw = (policy.head.deterministic(dist) if deterministic else dist.sample()).numpy()
        action = policy.env_action(raw)
        if policy.layout.plain:
            single = np.shape(obs) == tuple(self.observation_space.shape)
        else:
            single = is_single_observation(obs, self.observation_space)
        return action[0] if single else action

    def _numpy_twin(self, read_std: bool) -> NumpyActorCritic | None:
        """The policy's numpy twin for :meth:`predict` (pgrad/numpy_twin/policy.py), None if unsupported.

        Evaluation calls ``predict`` once per env step, where torch's per-op overhead is most of
        the cost. The twin holds views of the parameters, so in-place updates show through; it
        is rebuilt when the policy or one of its parts was replaced, and the std (computed, not a
        view) is re-read when ``read_std`` (the stochastic policy needs it).
        """
        policy = self.policy
        key = (id(policy), id(policy.actor_body), id(policy.head), id(policy.obs_normalizer))
        cached = getattr(self, "_numpy_twin_cache", None)
        if cached is None or cached[0] != key:
            twin = NumpyActorCritic(policy) if NumpyActorCritic.supports(policy) else None
            self._numpy_twin_cache = cached = (key, twin)
        elif cached[1] is not None and read_std:
            cached[1].read_std()
        return cached[1]

    # -- saving ------------------------------------------------------------------------------

    def describe_run(self) -> dict[str, Any]:
        """The resolved config recorded in config.json and policy.json."""
        return {
            "algo": self.name,
            "env": self.env_id,
            "seed": self.seed,
            "preset": self.preset,
            **env_options_of(self.env),
            **({"init_from": self.init_from} if getattr(self, "init_from", None) else {}),
            "config": self.config.to_dict(),
            "versions": versions(),
        }

    def policy_description(self) -> dict[str, Any]:
        return {
            **self.describe_run(),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "policy": self.policy.spec,
        }

    def save(self, path: str | Path, evaluation: dict[str, Any] | None = None, summary: bool = True) -> None:
        """Write the run-folder files (config, CSVs, policy, and with ``summary`` summary.json) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "config.json", self.describe_run())
        self.logger.write_csvs(path)
        save_policy(path, self.policy_description(), self.policy.state_dict())
        if summary:
            write_json(path / "summary.json", self.summary(evaluation))

    def summary(self, evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
        recent = self.logger.recent_return
        return {
            "algo": self.name,
            "env": self.env_id,
            "seed": self.seed,
            "steps": self.total_steps,
            "updates": self.updates,
            "wall_seconds": round(self.wall_seconds, 3),
            "episodes": len(self.logger.episodes),
            "fast_path": self.fast_path_problem() is None,
            "compiled_act": self.compiled_act(),
            "last_100_episode_return_mean": recent if math.isfinite(recent) else None,
            "eval_mean_return": evaluation["mean_return"] if evaluation else None,
            "eval_std_return": evaluation["std_return"] if evaluation else None,
            "eval_episodes": evaluation["episodes"] if evaluation else None,
            # an env without a time limit: evaluation episodes cut at this many steps (pgrad/evaluation.py)
            **(
                {"eval_cut_episodes": evaluation["cut_episodes"]} if evaluation and "cut_episodes" in evaluation else {}
            ),
        }

    def save_checkpoint(
        self,
        folder: str | Path,
        *,
        collector: tuple[dict, dict] | None = None,
        torch_rng_state: torch.Tensor | None = None,
    ) -> None:
        """Write everything training carries between iterations to ``folder`` (pgrad/checkpointing.py).

        ``collector`` and ``torch_rng_state`` stand in for this agent's own collector state and
        torch's global generator when another object holds them (a seed-batched run's shared
        collector and per-seed generator, pgrad/algos/ppo_batched.py).
        """
        checkpointing.save_agent(self, folder, collector=collector, torch_rng_state=torch_rng_state)

    def load_checkpoint_state(
        self, folder: str | Path, run_dir: str | Path | None = None, keep_hyperparameters: bool = False
    ) -> None:
        """Restore what :meth:`save_checkpoint` wrote: weights, optimisers, RNGs, counters, collector, envs.

        Args:
            folder: the checkpoint folder (``RUN/checkpoint``).
            run_dir: the run folder whose metrics.csv and episodes.csv continue (rows the stopped
                run wrote after the checkpoint are dropped); None leaves the logger empty.
            keep_hyperparameters: keep this agent's optimiser hyperparameters (lr, eps, ...) instead
                of the checkpoint's, for a resume with deliberately changed hyperparameters.

        Warns :class:`pgrad.checkpointing.ResumeNotExactWarning` if the envs cannot be restored
        exactly, and raises :class:`PolicyFileError` for a checkpoint of another algorithm or spaces.
        """
        envpool = isinstance(self.envs, EnvPoolVectorEnv)
        with warnings.catch_warnings():
            if envpool:  # restart_episodes' own warning says what a resume does with EnvPool's envs
                warnings.simplefilter("ignore", checkpointing.ResumeNotExactWarning)
            budget = checkpointing.load_agent(self, folder, run_dir, keep_hyperparameters)
        if envpool and self.collector is not None:
            self.envs.restart_episodes(self.collector, self.seed, self.total_steps)
        self.learn_budget = LearnBudget(**budget) if budget is not None else None

    @classmethod
    def from_policy_file(
        cls,
        description: dict[str, Any],
        state_dict: dict[str, torch.Tensor],
        custom_objects: dict[str, type] | None = None,
    ) -> Algorithm:
        """Rebuild an agent that can ``predict`` from a saved policy (no envs are created).
        ``custom_objects``: the classes the policy names (a custom encoder), by name; nothing is
        imported because a file names it."""
        check_policy_size(description, state_dict, "policy.json")  # before building anything
        agent = cls.__new__(cls)
        agent.name = description.get("algo", cls.name)  # one class may serve several names
        agent.env = agent.env_id = description.get("env")
        agent.seed = description.get("seed", 0)
        agent.preset = description.get("preset")
        try:
            agent.config = cls.Config.build(cls.Config.saved_values(description.get("config", {})))
        except ConfigError as exc:
            raise PolicyFileError(f"policy.json holds an invalid config: {exc}") from None
        agent.rng = np.random.default_rng(agent.seed)
        agent.envs = None
        agent.trainable = False
        agent.collector = None
        agent.observation_space = space_from_json(description["observation_space"])
        agent.action_space = space_from_json(description["action_space"])
        agent.action_mask_source = description.get("policy", {}).get("action_mask")
        agent.encoder_class, agent.encoder_kwargs = saved_encoder(description, custom_objects)
        agent.policy = agent.build_policy()
        agent.device, agent.learner = torch.device("cpu"), agent.policy  # acting only
        try:
            agent.policy.load_state_dict(state_dict)
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise PolicyFileError(f"policy weights do not match policy.json: {first_line}") from None
        agent.total_steps = agent.updates = 0
        agent.wall_seconds = 0.0
        agent.learn_budget = agent.early_stopping = agent._early_stopping_state = None
        agent.logger = RunLogger(None)
        return agent

    def close(self) -> None:
        """Close the envs and log files."""
        if self.envs is not None:
            close_vector_env(self.envs)
        self.logger.close()
