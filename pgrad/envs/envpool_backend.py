"""``vectorization=envpool``: an EnvPool pool stepped as if it were a Gymnasium 1.x vector env.

EnvPool (Weng et al. 2022, "EnvPool: A Highly Parallel Reinforcement Learning Environment Execution
Engine"; https://envpool.readthedocs.io) runs batches of C++ reimplementations of the classic
control, MuJoCo and Atari environments on its own thread pool. :class:`EnvPoolVectorEnv` puts one
such pool behind the interface pgrad's rollout collector reads (pgrad/rollout.py), keeping pgrad's
semantics:

* **Autoreset.** EnvPool resets an env on the step *after* the one that ended its episode
  (EnvPool docs, "Python Interface" / auto-reset): that step ignores the env's action, returns the
  new episode's first observation with reward 0 and both flags False, and ``info["elapsed_step"]``
  0. That is Gymnasium's NEXT_STEP mode, which EnvPool 1.2.5's Gymnasium pools declare in
  ``metadata["autoreset_mode"]`` (envpool/python/gymnasium_envpool.py), and the collector already
  handles it: the reset step is stored with ``valid=False`` and dropped from every batch, and the
  step that ended the episode returns the final observation itself, so a truncated episode
  bootstraps from V(final observation) and episode returns and lengths are counted by the
  collector as for Gymnasium envs (``episodes.csv`` is written the same way). pgrad's
  ``autoreset_mode`` setting applies to Gymnasium vector envs only.
* **One known difference.** EnvPool computes ``terminated = done & ~trunc``, and sets ``trunc``
  whenever the time limit is reached, so an episode that terminates on exactly its last allowed
  step is reported as truncated (Gymnasium reports both, and pgrad lets terminated win): that one
  transition is then bootstrapped. It needs termination on precisely step ``max_episode_steps``,
  which is rare; the tests pin it.
* **Seeding.** pgrad resets a training vector env once, with ``reset(seed=seed)``, and expects
  copy ``i`` to be seeded with ``seed + i``. EnvPool fixes its seeds when a pool is built and
  ignores ``reset(seed=...)`` (with a warning), so the pool is built at the first seeded reset
  (and again at any later seeded one) with ``env_seed=[seed, seed + 1, ...]``. EnvPool seeds are
  32-bit: ``seed + n_envs - 1`` must stay below 2**31. An unseeded first reset draws a seed.
  Later resets, the automatic ones included, continue each copy's own generator, as in Gymnasium.
* **Spaces and dtypes.** The spaces are those of the Gymnasium env of the same id and keywords
  (one copy is built to read them, then closed), so that a policy trained here is the policy
  ``pgrad eval`` and the final evaluation load, which keep using Gymnasium envs. EnvPool's spaces
  must agree in type, shape and action bounds, or the id is refused. Observations are cast to the
  Gymnasium dtype (both are float64 for MuJoCo, float32 for classic control, uint8 for Atari),
  actions to EnvPool's own, rewards to float64 as in Gymnasium's vector envs.
* **Atari.** ``ALE/Name-v5`` runs EnvPool's ``Name-v5`` with the preprocessing of
  pgrad/envs/atari.py in training (84x84 greyscale, frame skip 4 with max-pooling, 4 stacked
  frames, up to 30 no-op starts, FIRE on reset, sticky actions with probability 0.25, episodic
  life and reward clipping), done by EnvPool in C++.
* **Resume.** EnvPool's copies live in C++ and cannot be wrapped in pgrad's EpisodeRecorder
  (pgrad/envs/recorder.py), so a checkpoint cannot put them back mid-episode. A resumed run
  restores everything else (weights, optimisers, normalisers, generators, counters) and starts
  new episodes in every copy (:meth:`EnvPoolVectorEnv.restart_episodes`), with a
  ResumeNotExactWarning: the episodes running at the checkpoint are dropped, unlogged.

Anything EnvPool cannot do is refused before any work starts with a one-line ConfigError
(:func:`envpool_task`): an id it lacks or that is not classic control, MuJoCo or ``ALE/``,
constructor keywords it does not take, wrappers, rendering, env instances and callables.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pgrad.envs.atari import ATARI_PREFIX, NOOP_MAX
from pgrad.envs.options import ConfiguredEnv
from pgrad.errors import ConfigError

if TYPE_CHECKING:
    from pgrad.rollout import RolloutCollector

__all__ = ["ENVPOOL_INSTALL", "EnvPoolTask", "EnvPoolVectorEnv", "envpool_task", "make_envpool_vector_env"]

ENVPOOL_INSTALL = "pip install 'pgrad[envpool]'"
# The Gymnasium families whose ids EnvPool reimplements with the same id (entry-point prefixes).
_FAMILIES = {"gymnasium.envs.classic_control": "classic control", "gymnasium.envs.mujoco": "MuJoCo"}
# Pool-level entries of EnvPool's config: the backend sets them, they are not env keywords.
_POOL_KEYS = frozenset(
    {"num_envs", "batch_size", "num_threads", "max_num_players", "thread_affinity_offset", "base_path", "seed"}
    | {"env_seed", "gym_reset_return_info"}
)
# Same name, different meaning: Gymnasium's MuJoCo xml_file is a path, EnvPool's a file of its assets.
_DIFFERENT_MEANING = frozenset({"xml_file"})
# pgrad/envs/atari.py's training preprocessing in EnvPool's Atari options (the rest are EnvPool's
# defaults already: 84x84 greyscale, frame skip 4, 4 stacked frames, FIRE on reset).
_ATARI_TRAINING = {
    "noop_max": NOOP_MAX,
    "repeat_action_probability": 0.25,
    "episodic_life": True,
    "reward_clip": True,
    "use_fire_reset": True,
}
# vector_kwargs that go to envpool.make: how many threads step the pool, and where they are pinned.
_POOL_OPTIONS = ("num_threads", "thread_affinity_offset")
_MAX_SEED = 2**31 - 1  # EnvPool seeds are C++ int32


def check_seed(seed: Any, n_envs: int) -> None:
    """ConfigError unless EnvPool can seed ``n_envs`` copies with ``seed, seed + 1, ...`` (32-bit ints)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= _MAX_SEED - n_envs + 1:
        raise ConfigError(
            f"vectorization=envpool takes seeds from 0 to 2**31-{n_envs} with n_envs={n_envs} "
            f"(EnvPool seeds copy i with seed+i, a 32-bit int); got {seed!r}"
        )


def import_envpool() -> ModuleType:
    """The ``envpool`` module, or a one-line ConfigError naming pgrad's extra."""
    try:
        return importlib.import_module("envpool")
    except ImportError as error:
        missing_itself = isinstance(error, ModuleNotFoundError) and error.name == "envpool"
        reason = "" if missing_itself else f" (import envpool: {str(error).strip().splitlines()[0]})"
        raise ConfigError(f"vectorization=envpool needs the envpool package: {ENVPOOL_INSTALL}{reason}") from error


@dataclass(frozen=True)
class EnvPoolTask:
    """What to build: the Gymnasium env (for the spaces) and the EnvPool task standing in for it."""

    gymnasium_id: str  # the id pgrad was given, e.g. "Hopper-v5" or "ALE/Breakout-v5"
    envpool_id: str  # EnvPool's id of the same task, e.g. "Hopper-v5" or "Breakout-v5"
    gymnasium_kwargs: dict[str, Any] = field(default_factory=dict)  # for make_env (the spaces probe)
    envpool_kwargs: dict[str, Any] = field(default_factory=dict)  # task options for envpool.make


def envpool_task(env: Any, render_mode: str | None, kwargs: dict[str, Any]) -> EnvPoolTask:
    """Check that EnvPool can run ``env`` (what make_vector_env was given) and say how.

    ``kwargs`` are make_env's keywords: the env's constructor keywords and pgrad's own
    ``atari_preprocessing``/``atari_training``. Raises ConfigError saying what is wrong and what
    is accepted.
    """
    accepted = "accepted: a classic control, MuJoCo or ALE/ id that EnvPool has (envpool.list_all_envs())"
    if render_mode is not None:
        raise ConfigError(
            "vectorization=envpool does not render (no render_mode, no video); "
            "pgrad eval --video renders with Gymnasium envs"
        )
    env_kwargs = dict(kwargs)
    atari_preprocessing = env_kwargs.pop("atari_preprocessing", True)
    atari_training = env_kwargs.pop("atari_training", False)
    if isinstance(env, ConfiguredEnv):
        if env.wrappers:
            raise ConfigError(
                "vectorization=envpool cannot apply wrappers (--wrapper) to EnvPool's C++ envs; "
                "drop them or use vectorization=sync"
            )
        env_kwargs = {**env.kwargs, **env_kwargs}
        env = env.env
    if not isinstance(env, str):
        raise ConfigError(
            f"vectorization=envpool builds envs from an id, not a {type(env).__name__}; {accepted}, "
            "or use vectorization=sync"
        )
    name = env.strip()
    envpool = import_envpool()
    available = set(envpool.list_all_envs())
    if name.startswith(ATARI_PREFIX):
        envpool_id = name[len(ATARI_PREFIX) :]
        if not atari_preprocessing:
            raise ConfigError("vectorization=envpool runs ALE/ ids with pgrad's Atari preprocessing only")
        if not atari_training:
            raise ConfigError("vectorization=envpool builds training envs only; evaluation uses Gymnasium envs")
        base = dict(_ATARI_TRAINING)
    else:
        envpool_id = name
        spec = gym.registry.get(name)
        entry_point = spec.entry_point if spec is not None and isinstance(spec.entry_point, str) else ""
        if not any(entry_point.startswith(prefix) for prefix in _FAMILIES):
            raise ConfigError(f"vectorization=envpool does not run {name!r}; {accepted}")
        base = {}
    if envpool_id not in available:
        raise ConfigError(f"EnvPool has no {envpool_id!r} (envpool {envpool.__version__}); {accepted}")

    # EnvPool's task options are the non-pool entries of its config; a Gymnasium keyword of the
    # same name is passed on, max_episode_steps included (gymnasium.make's time limit).
    options = {key for key in envpool.make_spec(envpool_id).config._fields} - _POOL_KEYS
    refused = sorted(key for key in env_kwargs if key not in options or key in _DIFFERENT_MEANING)
    if refused:
        takes = ", ".join(sorted(options - _DIFFERENT_MEANING)) or "none"
        raise ConfigError(
            f"EnvPool's {envpool_id} does not take env_kwargs {refused}; it takes: {takes} (or use vectorization=sync)"
        )
    gymnasium_kwargs = {**env_kwargs}
    if name.startswith(ATARI_PREFIX):
        gymnasium_kwargs.update(atari_preprocessing=True, atari_training=True)
    return EnvPoolTask(name, envpool_id, gymnasium_kwargs, {**base, **env_kwargs})


def _check_same_spaces(task: EnvPoolTask, gym_obs: gym.Space, gym_action: gym.Space, pool: Any) -> None:
    """EnvPool's spaces must be Gymnasium's, apart from dtypes (which the backend casts)."""
    for what, mine, theirs in (
        ("observation", gym_obs, pool.single_observation_space),
        ("action", gym_action, pool.single_action_space),
    ):
        same = type(mine) is type(theirs)
        if same and isinstance(mine, gym.spaces.Box):
            same = mine.shape == theirs.shape
            if same and what == "action":  # pgrad rescales and clips actions to these bounds
                same = np.allclose(mine.low, theirs.low) and np.allclose(mine.high, theirs.high)
        elif same and isinstance(mine, gym.spaces.Discrete):
            same = mine.n == theirs.n and mine.start == theirs.start
        if not same:
            raise ConfigError(
                f"EnvPool's {task.envpool_id} has {what} space {theirs}, Gymnasium's {task.gymnasium_id} {mine}; "
                "vectorization=envpool needs them equal (use vectorization=sync)"
            )


class EnvPoolVectorEnv(VectorEnv):
    """``n_envs`` copies of one EnvPool task, stepped in lockstep (EnvPool's synchronous mode,
    ``batch_size == num_envs``), with Gymnasium's NEXT_STEP autoreset (module docstring).

    The pool itself is built at the first ``reset``: EnvPool takes its seeds at construction."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, task: EnvPoolTask, n_envs: int, pool_options: dict[str, Any] | None = None) -> None:
        from pgrad.envs import make_env  # the package imports this module lazily

        self.task = task
        self.num_envs = n_envs
        self.pool_options = dict(pool_options or {})
        self.render_mode = None
        self.closed = False
        self._envpool = import_envpool()
        # The Gymnasium env of the same id and keywords: its spaces are the ones pgrad's policy,
        # checkpoints and evaluation see. Building it also checks the keywords' values.
        probe = make_env(task.gymnasium_id, **task.gymnasium_kwargs)
        try:
            self.single_observation_space = probe.observation_space
            self.single_action_space = probe.action_space
            time_limit = probe.spec.max_episode_steps if probe.spec is not None else None
        finally:
            probe.close()
        self.observation_space = batch_space(self.single_observation_space, n_envs)
        self.action_space = batch_space(self.single_action_space, n_envs)
        self._envpool_kwargs = dict(task.envpool_kwargs)
        if time_limit is not None and not task.gymnasium_id.startswith(ATARI_PREFIX):
            # Gymnasium's TimeLimit, as registered or as given: EnvPool's max_episode_steps counts the same steps.
            self._envpool_kwargs.setdefault("max_episode_steps", time_limit)
        self._obs_dtype = getattr(self.single_observation_space, "dtype", None)
        self._pool: Any = None
        self._env_order = np.arange(n_envs)
        self._action_dtype: np.dtype | None = None
        self._build(seed=None, check_only=True)

    # -- the pool ------------------------------------------------------------------------------

    def _build(self, seed: int | None, check_only: bool = False) -> None:
        """(Re)build the pool with copy ``i`` seeded ``seed + i`` (a drawn seed if None)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0]) % (_MAX_SEED - self.num_envs + 2)
        check_seed(seed, self.num_envs)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        try:
            with warnings.catch_warnings():
                # EnvPool declares float32 Boxes with float64 bounds; Gymnasium's notice about that is noise here
                warnings.filterwarnings("ignore", message=".*precision lowered by casting", category=UserWarning)
                pool = self._envpool.make(
                    self.task.envpool_id,
                    env_type="gymnasium",
                    num_envs=self.num_envs,
                    batch_size=self.num_envs,  # synchronous: every step returns every copy, in order
                    seed=int(seed),
                    env_seed=[int(seed) + i for i in range(self.num_envs)],
                    **self.pool_options,
                    **self._envpool_kwargs,
                )
        except (TypeError, ValueError, AssertionError, RuntimeError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                f"EnvPool cannot build {self.task.envpool_id} with {self._envpool_kwargs}: {detail}"
            ) from error
        with warnings.catch_warnings():  # EnvPool builds its spaces when first read
            warnings.filterwarnings("ignore", message=".*precision lowered by casting", category=UserWarning)
            _check_same_spaces(self.task, self.single_observation_space, self.single_action_space, pool)
            self._action_dtype = pool.single_action_space.dtype
        if check_only:
            pool.close()
        else:
            self._pool = pool

    def _observations(self, obs: np.ndarray) -> np.ndarray:
        """EnvPool's observations in the dtype of the Gymnasium env's (no copy when they agree)."""
        return obs if self._obs_dtype is None or obs.dtype == self._obs_dtype else obs.astype(self._obs_dtype)

    # -- VectorEnv -----------------------------------------------------------------------------

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy. A seed (an int: copy ``i`` gets ``seed + i``) builds a new pool, as
        EnvPool seeds only at construction; without one, the first reset builds the pool with a
        drawn seed and later ones continue each copy's generator."""
        if options:
            raise ConfigError(f"vectorization=envpool takes no reset options; got {sorted(options)}")
        if isinstance(seed, (list, tuple)):
            raise ConfigError("vectorization=envpool takes one seed (copy i gets seed+i), not a list")
        if seed is not None or self._pool is None:
            self._build(seed)
        obs, info = self._pool.reset()
        (obs,), info = self._in_env_order((obs,), info)
        return self._observations(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every copy; a copy whose previous step ended its episode resets instead
        (its action is ignored, reward 0, both flags False: NEXT_STEP, EnvPool's autoreset)."""
        if self._pool is None:
            raise RuntimeError("EnvPoolVectorEnv.step before reset")
        actions = np.asarray(actions, dtype=self._action_dtype)
        if len(actions) != self.num_envs:
            raise ValueError(f"{len(actions)} actions for {self.num_envs} envs")
        obs, reward, terminated, truncated, info = self._pool.step(actions)
        (obs, reward, terminated, truncated), info = self._in_env_order((obs, reward, terminated, truncated), info)
        return self._observations(obs), reward.astype(np.float64), terminated, truncated, info

    def _in_env_order(
        self, arrays: tuple[np.ndarray, ...], info: dict[str, Any]
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        """The rows of a batch in env order. EnvPool's synchronous mode returns them so (each
        copy writes the slot of its env_id), which costs one comparison to confirm; were they
        ever in another order, rows and per-env info entries are sorted by ``info["env_id"]``
        rather than credited to the wrong copy."""
        env_ids = info.get("env_id")
        if env_ids is None or np.array_equal(env_ids, self._env_order):
            return arrays, info
        order = np.argsort(env_ids, kind="stable")
        rows = self.num_envs

        def sorted_entry(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: sorted_entry(entry) for key, entry in value.items()}
            is_rows = isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) == rows
            return value[order] if is_rows else value

        return tuple(array[order] for array in arrays), sorted_entry(info)

    def close_extras(self, **kwargs: Any) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- resume --------------------------------------------------------------------------------

    def restart_episodes(self, collector: RolloutCollector, seed: int, step: int) -> None:
        """After a checkpoint was restored into ``collector``: start new episodes in every copy.

        The copies' state cannot be saved (module docstring), so the episodes running at the
        checkpoint are dropped and the collector forgets them. The new pool's seed is derived
        from the run's seed and the step count, so resuming one checkpoint twice gives the same
        run, and its episodes are not the run's first ones again."""
        derived = int(np.random.SeedSequence([seed, step]).generate_state(1)[0]) % (_MAX_SEED - self.num_envs + 1)
        obs, _ = self.reset(seed=derived)
        collector.obs = obs
        collector.pending_reset[:] = False
        collector.episode_return[:] = 0.0
        collector.episode_length[:] = 0
        collector._episode_buffer = None  # collect_episodes' unfinished episodes ended with the pool
        collector.action_mask = None
        if collector.reward_scaler is not None:  # its running discounted returns belonged to those episodes
            collector.reward_scaler.discounted_return.zero_()
        warnings.warn(
            "resume will not reproduce the uninterrupted run exactly: vectorization=envpool cannot save its "
            f"envs' state, so the {self.num_envs} env(s) start new episodes here (the running ones are dropped)",
            _resume_warning(),
            stacklevel=3,
        )


def _resume_warning() -> type[Warning]:
    from pgrad.checkpointing import ResumeNotExactWarning

    return ResumeNotExactWarning


def make_envpool_vector_env(
    env: Any,
    n_envs: int,
    seed: int | None,
    render_mode: str | None = None,
    vector_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> EnvPoolVectorEnv:
    """:func:`pgrad.envs.make_vector_env` with ``vectorization="envpool"``: not reset (the
    collector resets it with its seed); ``seed`` seeds the space samplers, as for the others."""
    options = dict(vector_kwargs or {})
    unknown = sorted(key for key in options if key not in _POOL_OPTIONS)
    if unknown:
        raise ConfigError(f"vectorization=envpool takes vector_kwargs {', '.join(_POOL_OPTIONS)}; got {unknown}")
    if seed is not None:  # the collector resets with this seed: refuse it now, before any work
        check_seed(seed, n_envs)
    envs = EnvPoolVectorEnv(envpool_task(env, render_mode, kwargs), n_envs, options)
    if seed is not None:
        envs.action_space.seed(seed)
        envs.observation_space.seed(seed)
    return envs


def is_envpool(envs: Any) -> bool:
    """Whether ``envs`` is an EnvPool vector env (without importing envpool)."""
    return isinstance(envs, EnvPoolVectorEnv)
