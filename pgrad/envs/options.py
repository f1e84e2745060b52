"""Env options: constructor keywords and wrappers given with an env id, recorded with the run.

``pgrad train ppo LunarLander-v3 --env-kwarg continuous=true --wrapper
gymnasium.wrappers:ClipReward:{"min_reward": -1, "max_reward": 1}`` builds every env of the run
(training, evaluation, video) as ``ClipReward(gymnasium.make("LunarLander-v3", continuous=True),
min_reward=-1, max_reward=1)``. In Python: ``pgrad.PPO("LunarLander-v3", env_kwargs={...},
wrappers=["gymnasium.wrappers:ClipReward", ...])``; a preset file may hold ``env_kwargs`` and
``wrappers`` too. config.json records both, so ``pgrad eval RUN`` builds the same env.

Wrappers are classes named ``module:Class``, applied in the order given, each called as
``Class(env, **kwargs)``. Importing a module runs its code, so pgrad imports a wrapper's module
only when the person running pgrad named it (on the command line, in Python, in a preset they
chose) or when it is Gymnasium's or pgrad's own; a wrapper of another module that comes from a
run's files is an error saying to pass it again (``--wrapper``), never an import.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

from pgrad.errors import ConfigError

# Modules a wrapper named in a run's files may come from without the user naming it again: the
# libraries pgrad itself imports anyway.
TRUSTED_MODULES = ("gymnasium", "pgrad")


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--env-kwarg``) as a dict; values are JSON (``true``, ``2.5``,
    ``[1, 2]``, ``"text"``), or plain strings where they are not valid JSON (``mode=rgb_array``)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--env-kwarg {item!r} must be KEY=VALUE with KEY a Python identifier")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
        except (ValueError, RecursionError) as exc:
            # JSON that Python's json module refuses: an int of more than 4300 digits, or nesting
            # too deep
            raise ConfigError(f"--env-kwarg {key}: cannot read its value as JSON ({exc})") from None
    return kwargs


def check_env_kwargs(env_kwargs: Any) -> dict[str, Any]:
    """``env_kwargs`` as a plain dict of JSON data (it is recorded in config.json), or ConfigError."""
    if env_kwargs is None:
        return {}
    if not isinstance(env_kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in env_kwargs):
        raise ConfigError(f"env_kwargs={env_kwargs!r} must be a dict with identifier keys")
    try:
        return json.loads(json.dumps(env_kwargs))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env_kwargs must be JSON data (numbers, strings, bools, lists, dicts): {exc}") from None


@dataclass(frozen=True)
class WrapperSpec:
    """One wrapper: ``module:Class`` with JSON keyword arguments.

    ``user_named``: whether the person running pgrad named it (so its module may be imported);
    False for one read from a run's files (see the module docstring).
    """

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    user_named: bool = True

    @classmethod
    def parse(cls, text: Any, user_named: bool = True) -> WrapperSpec:
        """From ``"module:Class"``, ``'module:Class:{"k": 1}'``, or the recorded form
        ``{"target": ..., "kwargs": {...}}``."""
        if isinstance(text, WrapperSpec):
            return text
        if isinstance(text, dict):
            target, kwargs = text.get("target"), text.get("kwargs") or {}
        elif isinstance(text, str):
            module, _, rest = text.strip().partition(":")
            name, _, raw_kwargs = rest.partition(":")
            target = f"{module}:{name}"
            try:
                kwargs = json.loads(raw_kwargs) if raw_kwargs.strip() else {}
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, an int too long, nesting too deep
                message = f"wrapper {text!r}: its kwargs after module:Class: must be a JSON object ({exc})"
                raise ConfigError(message) from None
        else:
            raise ConfigError(f"wrapper {text!r} must be 'module:Class' or 'module:Class:{{json kwargs}}'")
        module, _, name = str(target).partition(":")
        if not module or not name.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
            raise ConfigError(
                f"wrapper {text!r} must name a class as module:Class (e.g. gymnasium.wrappers:ClipReward)"
            )
        if not isinstance(kwargs, dict):
            raise ConfigError(f"wrapper {text!r}: its kwargs must be a JSON object, got {kwargs!r}")
        return cls(str(target), check_env_kwargs(kwargs), user_named)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "kwargs": self.kwargs}

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def may_import(self) -> bool:
        """Whether pgrad may import this wrapper's module (the module docstring says when)."""
        return self.user_named or self.module.split(".")[0] in TRUSTED_MODULES

    def load(self) -> type:
        """The wrapper class (ConfigError if it may not be imported, is missing or is no class)."""
        if not self.may_import():
            raise ConfigError(
                f"this run's env uses the wrapper {self.target} from a run file; pgrad imports no module because a "
                f"file names it: give it again (--wrapper {self.target}, or wrappers=[...] in Python)"
            )
        module_name, _, name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"wrapper {self.target}: cannot import {module_name} ({exc})") from None
        wrapper = getattr(module, name, None)
        if not isinstance(wrapper, type):
            raise ConfigError(f"wrapper {self.target}: {module_name} has no class {name}")
        return wrapper


def parse_wrappers(items: Any, user_named: bool = True) -> tuple[WrapperSpec, ...]:
    """A list of wrappers in any form :meth:`WrapperSpec.parse` takes (None: none)."""
    if items is None:
        return ()
    if isinstance(items, (str, dict, WrapperSpec)):
        items = [items]
    try:
        items = list(items)
    except TypeError:  # e.g. `wrappers = 5` in a preset file
        raise ConfigError(f"wrappers={items!r} must be a list of module:Class wrappers") from None
    return tuple(WrapperSpec.parse(item, user_named) for item in items)


def trust_named(recorded: tuple[WrapperSpec, ...], named: tuple[WrapperSpec, ...]) -> tuple[WrapperSpec, ...]:
    """``recorded`` (read from a run's files) with the wrappers the user named again (``named``,
    matched by ``module:Class``) allowed to import."""
    names = {spec.target for spec in named}
    return tuple(WrapperSpec(s.target, s.kwargs, s.user_named or s.target in names) for s in recorded)


@dataclass(frozen=True)
class ConfiguredEnv:
    """An env id (or entry point, or callable) with constructor keywords and wrappers: what
    :func:`pgrad.envs.make_env` builds when it is given one. Plain data, so it pickles to
    subprocesses and Ray workers."""

    env: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: tuple[WrapperSpec, ...] = ()

    def __post_init__(self) -> None:
        # make_env takes these itself and passes the env kwargs on beside them: the same name
        # twice would be a TypeError there
        clash = [key for key in ("env", "render_mode", "atari_preprocessing", "atari_training") if key in self.kwargs]
        if clash:
            raise ConfigError(f"{clash[0]} is pgrad's to set, not an env kwarg (--env-kwarg/env_kwargs)")

    def wrap(self, env: Any) -> Any:
        """Apply the wrappers, in order, to a built env."""
        import gymnasium

        for spec in self.wrappers:
            wrapper = spec.load()
            try:
                env = wrapper(env, **spec.kwargs)
            # how wrappers reject their kwargs or the env: Gymnasium's raise all four
            except (TypeError, ValueError, AssertionError, gymnasium.error.Error) as exc:
                raise ConfigError(f"wrapper {spec.target} with {spec.kwargs}: {type(exc).__name__}: {exc}") from None
            if not isinstance(env, gymnasium.Env):
                raise ConfigError(f"wrapper {spec.target} returned {type(env).__name__}, not a gymnasium.Env")
        return env

    def describe(self) -> dict[str, Any]:
        """What config.json records: ``env_kwargs`` and ``wrappers``."""
        return {"env_kwargs": dict(self.kwargs), "wrappers": [spec.to_json() for spec in self.wrappers]}


def with_options(env: Any, env_kwargs: Any = None, wrappers: Any = None) -> Any:
    """``env`` with ``env_kwargs`` and ``wrappers`` attached as a :class:`ConfiguredEnv` (``env`` as it
    is when there are none). An env instance takes no options: it is already built."""
    kwargs, specs = check_env_kwargs(env_kwargs), parse_wrappers(wrappers)
    if not kwargs and not specs:
        return env
    import gymnasium

    if isinstance(env, gymnasium.Env):
        raise ConfigError("env_kwargs and wrappers need an env id or a callable, not an env instance (already built)")
    if isinstance(env, ConfiguredEnv):
        return ConfiguredEnv(env.env, {**env.kwargs, **kwargs}, env.wrappers + specs)
    return ConfiguredEnv(env, kwargs, specs)


def recorded_env(description: dict[str, Any], env_kwargs: Any, named: tuple[WrapperSpec, ...]) -> Any:
    """The env a run's config.json/policy.json records (``env`` with its ``env_kwargs`` and
    ``wrappers``), as pgrad builds it again: ``env_kwargs`` given now extend the recorded ones,
    and a recorded wrapper may import its module only if it is Gymnasium's or pgrad's or is among
    the wrappers the user ``named`` now (:func:`trust_named`); the named ones not recorded are
    added after the recorded ones."""
    recorded = parse_wrappers(description.get("wrappers") or [], user_named=False)
    targets = {spec.target for spec in recorded}
    wrappers = trust_named(recorded, named) + tuple(spec for spec in named if spec.target not in targets)
    kwargs = {**(description.get("env_kwargs") or {}), **check_env_kwargs(env_kwargs)}
    env = description.get("env")
    return ConfiguredEnv(env, kwargs, wrappers) if (kwargs or wrappers) and env is not None else env


def env_options_of(env: Any) -> dict[str, Any]:
    """``{"env_kwargs": ..., "wrappers": [...]}`` of an env given to pgrad (empty for a plain one)."""
    return env.describe() if isinstance(env, ConfiguredEnv) else {"env_kwargs": {}, "wrappers": []}
