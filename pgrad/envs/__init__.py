"""Building environments from whatever users pass, and pgrad's bundled environments.

``make_env`` accepts a Gymnasium id, a ``pgrad/`` id, a ``module:Class`` (or ``module:function``)
entry point, a callable returning an env, or an env instance; ``make_vector_env`` turns any of
them but an instance into a Sync- or AsyncVectorEnv with an explicit autoreset mode.

Importing this package registers the bundled ids (``REGISTERED_IDS``) with Gymnasium, so that
``gymnasium.make("pgrad/ContinuousCartPole-v0")`` works after ``import pgrad.envs``;
``gymnasium.make("pgrad.envs:pgrad/ContinuousCartPole-v0")`` works without it.
"""

from __future__ import annotations

import os

# MuJoCo picks its OpenGL backend when it is first imported; on headless machines (this one,
# CI, clusters) only EGL renders off-screen, and GLFW would fail without a display. A value the
# user already set wins.
os.environ.setdefault("MUJOCO_GL", "egl")

import difflib  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
from gymnasium.envs.registration import EnvSpec  # noqa: E402
from gymnasium.vector import AutoresetMode, VectorEnv  # noqa: E402

from pgrad.env_ids import REGISTERED_IDS, env_package_of, register_bundled_envs  # noqa: E402
from pgrad.envs.atari import atari_env, is_atari_id  # noqa: E402
from pgrad.envs.mujoco_messages import filtered_mujoco_warnings  # noqa: E402
from pgrad.envs.options import ConfiguredEnv  # noqa: E402
from pgrad.envs.recorder import with_recorder  # noqa: E402
from pgrad.envs.vector import LeanSyncVectorEnv, TimedAsyncVectorEnv  # noqa: E402
from pgrad.errors import ConfigError  # noqa: E402

__all__ = ["REGISTERED_IDS", "env_id_of", "make_env", "make_vector_env"]

EnvLike = str | EnvSpec | gym.Env | Callable[..., gym.Env]

register_bundled_envs(gym)

_VECTORIZATIONS = {"sync": LeanSyncVectorEnv, "async": TimedAsyncVectorEnv}
_AUTORESET_MODES = {"same_step": AutoresetMode.SAME_STEP, "next_step": AutoresetMode.NEXT_STEP}
_ACCEPTED_ENVS = "Accepted: any Gymnasium id, a pgrad/ id (pgrad list), or module:Class"


def make_env(
    env: EnvLike,
    render_mode: str | None = None,
    *,
    atari_preprocessing: bool = True,
    atari_training: bool = False,
    **kwargs: Any,
) -> gym.Env:
    """Build one environment.

    Args:
        env: a Gymnasium id (``"CartPole-v1"``), a :class:`pgrad.envs.options.ConfiguredEnv` (an
            id with keywords and wrappers), a pgrad id (``"pgrad/ContinuousCartPole-v0"``),
            an ``EnvSpec``, an entry point ``"some.module:EnvClass"`` or ``"some.module:make_fn"``
            (the module is imported and the attribute called with ``kwargs``; ``"module:Env-v0"``,
            an id the module registers on import, works as in ``gymnasium.make``), a callable
            returning an env (called with ``kwargs``, and ``render_mode`` if given), or an env
            instance, returned as is. Ids of other packages' families (``MiniGrid-``, ``BabyAI-``,
            ``ALE/``, ``MinAtar/``, ``dm_control/``: ``pgrad.env_ids.ENV_PACKAGES``) import their
            package first; a missing one is a ConfigError naming the pgrad extra that installs it.
        render_mode: passed to the environment's constructor when not None.
        atari_preprocessing: ``ALE/`` ids only (ignored for others): True (the default) builds
            them through :func:`pgrad.envs.atari.atari_env`, the standard Atari preprocessing
            (84x84 greyscale, frame skip 4, a 4-frame stack: ``Box(0, 255, (4, 84, 84), uint8)``);
            False gives the raw ALE env, as ``gymnasium.make`` does.
        atari_training: ``ALE/`` ids with preprocessing only (ignored for others): True adds the
            training-only steps, episodic life and reward clipping; False (the default, for
            evaluation) reports unclipped scores of whole games. Training envs set it.
        **kwargs: constructor keywords (for ids, anything ``gymnasium.make`` takes, such as
            ``max_episode_steps``).

    Raises:
        ConfigError: unknown id (with close matches), missing dependency, bad entry point,
            keywords the env does not take, or something that does not produce a ``gym.Env``.
    """
    if isinstance(env, gym.Env):
        _check_instance_options(env, render_mode, kwargs)
        return env
    if isinstance(env, ConfiguredEnv):  # an env with its --env-kwarg and --wrapper options
        options = dict(atari_preprocessing=atari_preprocessing, atari_training=atari_training)
        return env.wrap(make_env(env.env, render_mode, **options, **{**env.kwargs, **kwargs}))
    if isinstance(env, (str, EnvSpec)):
        name = env if isinstance(env, EnvSpec) else env.strip()
        if isinstance(name, str) and name not in gym.registry:
            _register_from_package(name)
        atari = _atari_mode(atari_preprocessing, atari_training)
        if isinstance(name, EnvSpec) or name in gym.registry:
            build = functools.partial(_make_registered, name, render_mode, kwargs, atari)
        elif ":" in name:
            build = functools.partial(_make_entry_point, name, render_mode, kwargs, atari)
        else:
            raise ConfigError(_unknown_id_message(name))
    elif callable(env):
        build = functools.partial(_call_factory, env, env_id_of(env), render_mode, kwargs)
    else:
        raise ConfigError(
            f"cannot build an environment from {type(env).__name__} {env!r}; pass a Gymnasium id, "
            "a pgrad/ id, 'module:Class', a callable returning a gymnasium.Env, or an env instance"
        )
    # Only MuJoCo envs need the filter; sparing the others the mujoco import keeps them quick.
    with filtered_mujoco_warnings(import_if_missing=_may_load_mujoco(env)):
        return build()


def make_vector_env(
    env: EnvLike,
    n_envs: int,
    seed: int | None,
    vectorization: str = "sync",
    autoreset_mode: str | AutoresetMode = "same_step",
    render_mode: str | None = None,
    *,
    vector_kwargs: dict[str, Any] | None = None,
    record_episodes: bool = False,
    keep_infos: bool | tuple[str, ...] = True,
    **kwargs: Any,
) -> VectorEnv:
    """Build ``n_envs`` copies of ``env`` (anything ``make_env`` takes) as one vector env.

    The vector env is not reset: the caller resets it with its seed, ``envs.reset(seed=seed)``,
    which seeds copy ``i`` with ``seed + i``.

    Args:
        env: as for ``make_env``; an env instance only with ``n_envs=1`` and ``"sync"``.
        n_envs: number of copies, >= 1.
        seed: seeds the samplers of the action and observation spaces (``envs.action_space
            .sample()``, used for random exploration); None leaves them unseeded.
        vectorization: ``"sync"`` (one process, best for fast envs such as classic control),
            ``"async"`` (one subprocess per copy, pays off when a step costs far more than the
            inter-process round trip, e.g. heavy MuJoCo models) or ``"envpool"`` (EnvPool's C++
            classic control, MuJoCo and ``ALE/`` envs on its thread pool, the ``envpool`` extra;
            always NEXT_STEP autoreset; :mod:`pgrad.envs.envpool_backend` says what it refuses).
        autoreset_mode: ``"same_step"``: the step that ends an episode returns the new
            episode's first observation and keeps the final one in ``info["final_obs"]``;
            ``"next_step"`` (Gymnasium's default): the step after it is a reset step with reward
            0 that must not be stored as a transition. See https://farama.org/Vector-Autoreset-Mode.
        render_mode: passed to every copy.
        vector_kwargs: extra keywords for the vector-env class (for example ``context="spawn"``
            or ``shared_memory=False`` for AsyncVectorEnv).
        record_episodes: wrap every copy in :class:`pgrad.envs.recorder.EpisodeRecorder`, which
            training checkpoints use to restore the envs exactly on resume.
        keep_infos: with ``"sync"``, batch every per-step env info as Gymnasium does; False
            returns only the episode-end entries (``final_obs``, ``final_info``), which is all
            pgrad's training collector reads (pgrad/envs/vector.py: cheaper per step); a tuple
            of keys keeps those as well. ``"async"`` always keeps them all.
        **kwargs: constructor keywords of every copy, as for ``make_env``.
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ConfigError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if str(vectorization).lower() == "envpool":
        # EnvPool's own C++ copies, NEXT_STEP autoreset whatever autoreset_mode says; the copies
        # cannot be wrapped, so record_episodes and keep_infos do not apply (pgrad/envs/envpool_backend.py).
        from pgrad.envs.envpool_backend import make_envpool_vector_env

        return make_envpool_vector_env(env, n_envs, seed, render_mode, vector_kwargs, **kwargs)
    vector_class = _VECTORIZATIONS.get(str(vectorization).lower())
    if vector_class is None:
        accepted = ", ".join([*_VECTORIZATIONS, "envpool"])
        raise ConfigError(f"unknown vectorization {vectorization!r}; accepted: {accepted}")
    mode = _parse_autoreset_mode(autoreset_mode)

    if isinstance(env, gym.Env):
        if n_envs > 1:
            raise ConfigError(
                f"an environment instance ({env_id_of(env)}) cannot be copied into {n_envs} envs; "
                "pass an id or a callable that builds one"
            )
        if vector_class is not LeanSyncVectorEnv:
            raise ConfigError(
                f"an environment instance ({env_id_of(env)}) lives in this process and cannot run in "
                "an async worker; use vectorization='sync' or pass an id or a callable"
            )
        _check_instance_options(env, render_mode, kwargs)
        env_fns = [lambda: env]
    else:
        # functools.partial of a module-level function pickles by reference, so the same
        # builder runs in AsyncVectorEnv workers (and applies make_env's MuJoCo filter there).
        env_fns = [functools.partial(make_env, env, render_mode, **kwargs)] * n_envs
    if record_episodes:
        env_fns = [functools.partial(with_recorder, fn) for fn in env_fns]
    if vector_class is LeanSyncVectorEnv:
        vector_kwargs = {"keep_infos": keep_infos, **(vector_kwargs or {})}
    envs = vector_class(env_fns, autoreset_mode=mode, **(vector_kwargs or {}))
    if seed is not None:
        envs.action_space.seed(seed)
        envs.observation_space.seed(seed)
    return envs


def env_id_of(env: EnvLike | VectorEnv) -> str:
    """A printable name for ``env``: its id, its entry point ``module:Name``, or its class name."""
    if isinstance(env, str):
        return env.strip()
    if isinstance(env, ConfiguredEnv):
        return env_id_of(env.env)
    if isinstance(env, EnvSpec):
        return env.id
    if isinstance(env, (gym.Env, VectorEnv)):
        if env.spec is not None:
            return env.spec.id
        unwrapped = env.unwrapped if isinstance(env, gym.Env) else env
        return _qualified_name(type(unwrapped))
    if isinstance(env, functools.partial):
        return env_id_of(env.func)
    if hasattr(env, "__qualname__"):
        return _qualified_name(env)
    return type(env).__name__


def _register_from_package(env_id: str) -> None:
    """Import the package whose import registers ``env_id`` (``MiniGrid-``, ``ALE/``, ...: the
    table ``pgrad.env_ids.ENV_PACKAGES``), as ``gymnasium.make("module:Id")`` would.

    Only modules of that fixed table are ever imported. Raises ConfigError naming pgrad's extra
    when the package is missing; an id still unknown afterwards is left to make_env's message.
    """
    found = env_package_of(env_id)
    if found is None:
        return
    prefix, package = found
    needs = " and ".join(package.packages)
    needs = f"the {needs} package{'s' if len(package.packages) > 1 else ''}"
    advice = f"pip install 'pgrad[{package.extra}]'"
    try:
        module = importlib.import_module(package.module)
    except ImportError as error:  # ModuleNotFoundError included
        # The package itself is missing, or it is installed and one of its own imports failed.
        missing_itself = isinstance(error, ModuleNotFoundError) and error.name == package.module.split(".")[0]
        reason = "" if missing_itself else f" (import {package.module}: {_one_line(error)})"
        raise ConfigError(f"env {env_id!r} needs {needs}: {advice}{reason}") from error
    if package.register is not None and not _any_registered(prefix):
        getattr(module, package.register, lambda: None)()
    if not _any_registered(prefix):
        # Imported, yet no id of the family: e.g. shimmy without dm-control registers no dm_control/.
        raise ConfigError(f"env {env_id!r} needs {needs}: {advice} ({package.module} registered no {prefix} id)")


def _any_registered(prefix: str) -> bool:
    folded = prefix.casefold()
    return any(env_id.casefold().startswith(folded) for env_id in gym.registry)


def _atari_mode(preprocessing: bool, training: bool) -> bool | None:
    """How to build an ``ALE/`` id: None raw, else ``atari_env``'s ``training`` flag."""
    return bool(training) if preprocessing else None


def _make_registered(
    env_id: str | EnvSpec, render_mode: str | None, kwargs: dict[str, Any], atari: bool | None = False
) -> gym.Env:
    """``gymnasium.make(env_id)``; an ``ALE/`` id through ``atari_env(training=atari)`` unless ``atari`` is None."""
    name = env_id.id if isinstance(env_id, EnvSpec) else env_id
    if atari is not None and is_atari_id(name):
        factory = functools.partial(atari_env, env_id, atari)
    else:
        factory = functools.partial(gym.make, env_id)
    try:
        return _call_factory(factory, name, render_mode, kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise ConfigError(f"environment {name!r} needs a package that is not installed: {_one_line(error)}") from error
    except ImportError as error:
        raise ConfigError(f"environment {name!r} cannot be imported: {_one_line(error)}") from error


def _make_entry_point(
    entry_point: str, render_mode: str | None, kwargs: dict[str, Any], atari: bool | None = False
) -> gym.Env:
    module_name, _, attribute = entry_point.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"bad entry point {entry_point!r}; expected 'module.path:Name'. {_ACCEPTED_ENVS}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"cannot import module {module_name!r} of entry point {entry_point!r}: {_one_line(error)}"
        ) from error
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            break
    if factory is None:
        # gymnasium.make's "module:Env-v0": importing the module registered the id.
        if attribute in gym.registry:
            return _make_registered(attribute, render_mode, kwargs, atari)
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r} (entry point {entry_point!r})")
    if not callable(factory):
        raise ConfigError(f"entry point {entry_point!r} is a {type(factory).__name__}, not a class or function")
    return _call_factory(factory, entry_point, render_mode, kwargs)


def _call_factory(factory: Callable[..., Any], name: str, render_mode: str | None, kwargs: dict[str, Any]) -> gym.Env:
    # render_mode is only passed when set, so zero-argument factories keep working.
    call_kwargs = dict(kwargs) if render_mode is None else {**kwargs, "render_mode": render_mode}
    try:
        env = factory(**call_kwargs)
    except (TypeError, ValueError, AssertionError, gym.error.Error) as error:
        # With keywords given, the env refusing them (an unknown keyword, a value out of its range)
        # is a user input problem; without any, it is the env's own failure.
        if not kwargs:
            raise
        # gymnasium.make appends where the error came from, which this message already says.
        reason = _one_line(error).split(" was raised from the environment creator")[0] or type(error).__name__
        raise ConfigError(f"cannot build {name!r} with {call_kwargs}: {reason}") from error
    if not isinstance(env, gym.Env):
        raise ConfigError(f"{name!r} returned a {type(env).__name__}, not a gymnasium.Env")
    for attribute in ("observation_space", "action_space"):
        if not isinstance(getattr(env, attribute, None), gym.spaces.Space):
            raise ConfigError(f"{name!r} built an env without an {attribute}; a gymnasium.Env must set both spaces")
    return env


# make_env's own options, which say how to build an id; an instance is already built.
_BUILD_OPTIONS = ("atari_preprocessing", "atari_training")


def _check_instance_options(env: gym.Env, render_mode: str | None, kwargs: dict[str, Any]) -> None:
    kwargs = {key: value for key, value in kwargs.items() if key not in _BUILD_OPTIONS}
    if kwargs:
        raise ConfigError(
            f"keywords {sorted(kwargs)} cannot be applied to an environment instance "
            f"({env_id_of(env)}); pass an id or a callable instead"
        )
    if render_mode is not None and env.render_mode != render_mode:
        raise ConfigError(
            f"the environment instance ({env_id_of(env)}) has render_mode={env.render_mode!r}, "
            f"not {render_mode!r}; build it with that render_mode or pass an id"
        )


def _parse_autoreset_mode(autoreset_mode: str | AutoresetMode) -> AutoresetMode:
    if isinstance(autoreset_mode, AutoresetMode) and autoreset_mode in _AUTORESET_MODES.values():
        return autoreset_mode
    key = str(autoreset_mode).lower().replace("-", "_")
    if key not in _AUTORESET_MODES:
        raise ConfigError(f"unknown autoreset_mode {autoreset_mode!r}; accepted: {', '.join(_AUTORESET_MODES)}")
    return _AUTORESET_MODES[key]


def _unknown_id_message(name: str) -> str:
    ids_by_lowercase = {env_id.lower(): env_id for env_id in gym.registry}
    # Lowercase both sides so that 'cartpole-v1' still finds 'CartPole-v1'.
    close = difflib.get_close_matches(name.lower(), ids_by_lowercase, n=3, cutoff=0.8)
    suggestion = ""
    if close:
        names = [ids_by_lowercase[match] for match in close]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        suggestion = f" did you mean {listed}?"
    return f"unknown environment {name!r};{suggestion} {_ACCEPTED_ENVS}"


def _may_load_mujoco(env: Any) -> bool:
    """False only for envs known to be MuJoCo-free: Gymnasium's other families and pgrad's own."""
    spec = env if isinstance(env, EnvSpec) else gym.registry.get(env.strip()) if isinstance(env, str) else None
    if spec is None or not isinstance(spec.entry_point, str):
        return True
    entry_point = spec.entry_point
    if entry_point.startswith("pgrad.envs."):
        return False
    return not entry_point.startswith("gymnasium.envs.") or entry_point.startswith("gymnasium.envs.mujoco")


def _qualified_name(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
