"""Typed, frozen, validated hyperparameter configs, their ``--set`` parsing and presets.

Each field is declared with :func:`param`, which carries a one-line doc and its valid range; the
doc is what ``pgrad list`` and error messages show. A config validates every field on
construction, so a bad value fails before any work starts, with a message that names the key,
the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from pgrad.errors import ConfigError

_INTERVAL_TEXT = {
    (True, True): "[{}, {}]",
    (False, True): "({}, {}]",
    (True, False): "[{}, {})",
    (False, False): "({}, {})",
}


def param(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """Declare a config field with a one-line doc, an optional range and optional choices."""
    return field(
        default=default,
        metadata={
            "doc": doc,
            "low": low,
            "high": high,
            "low_open": low_open,
            "high_open": high_open,
            "choices": choices,
        },
    )


def _range_text(meta: dict[str, Any]) -> str:
    low, high = meta["low"], meta["high"]
    if meta["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if low is None and high is None:
        return ""
    if high is None:
        return f"{'>' if meta['low_open'] else '>='} {low}"
    if low is None:
        return f"{'<' if meta['high_open'] else '<='} {high}"
    return "in " + _INTERVAL_TEXT[(not meta["low_open"], not meta["high_open"])].format(low, high)


def _type_name(annotation: Any) -> str:
    if annotation in (int, float, str, bool):
        return annotation.__name__
    if typing.get_origin(annotation) is tuple:
        return f"comma-separated {typing.get_args(annotation)[0].__name__}s"
    args = typing.get_args(annotation)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"{_type_name(inner)} or none"
    return str(annotation)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Return ``value`` as ``annotation`` or raise ConfigError; accepts strings from the CLI."""
    args = typing.get_args(annotation)
    optional = type(None) in args and (typing.get_origin(annotation) in (typing.Union, types.UnionType))
    if optional:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        annotation = [a for a in args if a is not type(None)][0]
    bad = ConfigError(f"{name}={value!r} is not a valid {_type_name(annotation)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise bad
    if annotation is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:  # exactly, where float() would round an int beyond 2**53
                return int(value.replace("_", ""))
            except ValueError:
                pass
            try:  # "1e3", "64.0"
                number = float(value.replace("_", ""))
            except ValueError:
                raise bad from None
            if number.is_integer():
                return int(number)
        raise bad
    if annotation is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float's range, as TOML can hold
                raise bad from None
        elif isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                raise bad from None
        else:
            raise bad
        # nan passes no range check (every comparison is False) and would reach training from a
        # field without a range (log_std_init), to fail there; inf passes a lower bound (lr=inf)
        # and diverges at the first update. No hyperparameter means either.
        if not math.isfinite(number):
            raise ConfigError(f"{name}={value!r} is not a valid float: it must be finite")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value.strip()
        raise bad
    if typing.get_origin(annotation) is tuple:
        if isinstance(value, str):
            parts = [p for p in value.strip().strip("[]()").replace(" ", "").split(",") if p]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            raise bad
        inner = typing.get_args(annotation)[0]
        try:
            return tuple(_coerce(name, inner, p) for p in parts)
        except ConfigError:
            raise bad from None
    raise bad


@dataclass(frozen=True)
class Config:
    """The base of every algorithm's config: typed, range-checked fields, each with a docstring.

    Subclasses add fields with :func:`param`; construction coerces and checks every field, then
    calls :meth:`validate` for cross-field checks.
    """

    # high: torch.set_num_threads takes a C int and fails with ValueError above it; no machine has
    # more cores than this, so a larger value is a typo
    torch_threads: int = param(
        1, "torch intra-op and numpy BLAS threads per process (1 is fastest for small networks)", low=1, high=1024
    )

    # Fields an earlier pgrad wrote into this algorithm's config.json, policy.json and checkpoints
    # that the config no longer has: ignored when reading those files (saved_values), still an
    # error when a user sets them.
    RETIRED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
            self._check_range(f, value)
        self.validate()

    @staticmethod
    def _check_range(f: dataclasses.Field, value: Any) -> None:
        meta = f.metadata
        if value is None or not meta:
            return
        ok = True
        if meta["choices"] is not None:
            ok = value in meta["choices"]
        else:
            if meta["low"] is not None:
                ok &= value > meta["low"] if meta["low_open"] else value >= meta["low"]
            if meta["high"] is not None:
                ok &= value < meta["high"] if meta["high_open"] else value <= meta["high"]
        if not ok:
            raise ConfigError(f"{f.name}={value!r} is out of range: must be {_range_text(meta)}")

    def validate(self) -> None:
        """Cross-field checks; subclasses extend this."""

    # -- construction from user input --------------------------------------------------------

    @classmethod
    def _fields_in_order(cls) -> list[dataclasses.Field]:
        """Every field, the algorithm's first and this base class's (process settings) last."""
        fields = dataclasses.fields(cls)
        own = {f.name for f in dataclasses.fields(Config)}
        return [f for f in fields if f.name not in own] + [f for f in fields if f.name in own]

    @classmethod
    def keys(cls) -> list[str]:
        """Every field name, in declaration order (this base class's fields last)."""
        return [f.name for f in cls._fields_in_order()]

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """``(name, type, default, doc + range)`` for every field, for help text."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in cls._fields_in_order():
            extra = _range_text(f.metadata)
            doc = f.metadata.get("doc", "") + (f" ({extra})" if extra else "")
            rows.append((f.name, _type_name(hints[f.name]), f.default, doc))
        return rows

    @classmethod
    def build(cls, overrides: dict[str, Any]) -> Config:
        """Construct from a dict of (possibly string) values, rejecting unknown keys by name."""
        valid = cls.keys()
        for key in overrides:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"unknown hyperparameter {key!r}{hint}; valid keys: {', '.join(valid)}")
        return cls(**overrides)

    @classmethod
    def saved_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A saved config's values without the :attr:`RETIRED` fields, for :meth:`build` or comparison."""
        return {k: v for k, v in values.items() if k not in cls.RETIRED}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field."""
        values = dataclasses.asdict(self)
        return {k: list(values[k]) if isinstance(values[k], tuple) else values[k] for k in self.keys()}


@dataclass(frozen=True)
class OnPolicyConfig(Config):
    """Fields the algorithms share that train a stochastic MLP policy from a vector env's rollouts
    (REINFORCE, actor-critic, A2C, PPO, recurrent PPO); each extends this with its own."""

    n_envs: int = param(1, "parallel environments stepped per rollout", low=1)
    gamma: float = param(0.99, "discount factor", low=0.0, high=1.0)
    lr: float = param(3e-4, "optimizer learning rate", low=0.0, low_open=True)
    hidden_sizes: tuple[int, ...] = param(
        (64, 64), "hidden layer widths of the policy and value networks, e.g. 64,64 (empty: linear)"
    )
    pi_hidden_sizes: tuple[int, ...] | None = param(
        None, "the actor's hidden widths if not hidden_sizes (with share_trunk: widths after the trunk)"
    )
    vf_hidden_sizes: tuple[int, ...] | None = param(
        None, "the critic's hidden widths if not hidden_sizes (with share_trunk: widths after the trunk)"
    )
    share_trunk: bool = param(
        False, "actor and critic share an MLP of hidden_sizes (the image encoder is always shared)"
    )
    layer_norm: bool = param(False, "LayerNorm after each hidden layer (Ba et al. 2016)")
    activation: str = param("tanh", "hidden activation", choices=("tanh", "relu", "elu", "gelu", "silu"))
    action_dist: str = param(
        "auto",
        "action distribution (auto: categorical for Discrete, gaussian for Box)",
        choices=("auto", "categorical", "gaussian", "truncated_normal"),
    )
    log_std_init: float = param(0.0, "initial log standard deviation of continuous policies")
    state_dependent_std: bool = param(False, "std from the network via softplus instead of a free log-std parameter")
    trainable_std: bool = param(True, "learn the state-independent log std (false: fixed at log_std_init)")
    ortho_init: bool = param(
        True,
        "orthogonal init (gains sqrt 2, 0.01 policy output, 1 value output); false: PyTorch's default init, as SB3's "
        "ortho_init=False",
    )
    normalize_obs: bool = param(
        True, "normalize observations with running mean/std (saved with the policy; never image pixels)"
    )
    normalize_reward: bool = param(False, "scale rewards by the running std of the discounted return")
    obs_keys: tuple[str, ...] = param((), "Dict observations: the keys the policy reads, e.g. image,direction (all)")
    cnn: str = param(
        "auto",
        "CNN for image observations (auto: nature for images of 36 pixels a side or more, small below)",
        choices=("auto", "nature", "small"),
    )
    cnn_features: int = param(512, "output width of each image observation's CNN", low=1)
    action_mask: str = param(
        "auto",
        "invalid-action masking (Discrete/MultiDiscrete): auto = on when the env reports info['action_mask'] "
        "or has an action_mask observation key",
        choices=("auto", "on", "off"),
    )
    device: str = param(
        "cpu",
        "where updates run (auto: cuda when torch sees a GPU and the policy has a CNN); acting stays on the CPU",
        choices=("cpu", "cuda", "auto"),
    )
    vectorization: str = param(
        "sync",
        "how vector envs step: in this process (sync), one subprocess each (async), or EnvPool's C++ envs "
        "for classic control, MuJoCo and ALE/ ids (envpool: pip install 'pgrad[envpool]'; resume starts new episodes)",
        choices=("sync", "async", "envpool"),
    )
    env_timeout: float | None = param(
        600.0,
        "vectorization=async: fail the run if an env's reset or step takes longer than this many seconds "
        "(none: wait for ever)",
        low=0.0,
        low_open=True,
    )
    autoreset_mode: str = param(
        "same_step",
        "Gymnasium vector-env autoreset mode used for the envs pgrad builds",
        choices=("same_step", "next_step"),
    )

    def validate(self) -> None:
        super().validate()
        for sizes in (self.hidden_sizes, self.pi_hidden_sizes or (), self.vf_hidden_sizes or ()):
            check_hidden_sizes(sizes, allow_empty=True)


@dataclass(frozen=True)
class TargetCriticConfig(OnPolicyConfig):
    """The fields of algorithms that bootstrap from a critic (one-step actor-critic, A2C, PPO) and
    can take those bootstrap values from a slowly moving copy of it, a target critic (Mnih et al.
    2015's target network, applied to V)."""

    target_critic: str = param(
        "none",
        "bootstrap V(s') from a target copy of the critic: none, hard (copied every target_period updates), "
        "polyak (moved by target_tau every update)",
        choices=("none", "hard", "polyak"),
    )
    target_period: int = param(100, "updates between hard target-critic copies", low=1)
    target_tau: float = param(0.005, "polyak step of the target critic towards the critic", low=0.0, high=1.0)


def check_hidden_sizes(hidden_sizes: tuple[int, ...], allow_empty: bool = False) -> None:
    """ConfigError unless ``hidden_sizes`` is one or more positive ints (or none, if ``allow_empty``:
    a linear policy)."""
    if (not hidden_sizes and not allow_empty) or any(h < 1 for h in hidden_sizes):
        need = "positive ints, or nothing for a linear policy" if allow_empty else "one or more positive ints"
        raise ConfigError(f"hidden_sizes={hidden_sizes!r} must be {need}, e.g. 64,64")


def parse_set_args(pairs: list[str]) -> dict[str, str]:
    """Turn ``["lr=3e-4", "n_envs=8"]`` into a dict; values stay strings for typed coercion."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


# -- presets ---------------------------------------------------------------------------------


def _preset_file(algo: str) -> dict[str, dict[str, Any]]:
    path = resources.files("pgrad.presets").joinpath(f"{algo}.toml")
    if not path.is_file():
        return {}
    return tomllib.loads(path.read_text())


def preset_names(algo: str) -> list[str]:
    """Names of the presets shipped for ``algo`` (usually env ids)."""
    return list(_preset_file(algo))


# Preset entries that describe the preset rather than set a hyperparameter.
PRESET_META_KEYS = ("source", "steps", "algo")


def is_preset_path(name: str) -> bool:
    """True if ``--preset`` names a TOML file (``pgrad tune`` writes them) rather than a shipped preset."""
    return name.split("#", 1)[0].endswith(".toml")


def _user_preset_entry(algo: str, name: str) -> dict[str, Any]:
    """Table ``TABLE`` of ``FILE.toml#TABLE``; the file has the same format as pgrad/presets/ALGO.toml."""
    from pathlib import Path

    path, _, table = name.partition("#")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read preset file {_shown(path)}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8 (UnicodeDecodeError), or a NUL in the path
        raise ConfigError(f"cannot read preset file {_shown(path)}: {exc}") from None
    try:
        presets = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # TOMLDecodeError is a ValueError; tomllib also raises a plain ValueError for an int of
        # more than 4300 digits and RecursionError for arrays or tables nested too deep
        raise ConfigError(f"preset file {_shown(path)} is not valid TOML: {exc}") from None
    if table not in presets or not isinstance(presets[table], dict):
        tables = ", ".join(_shown(t) for t in presets) or "none"
        raise ConfigError(f"preset file {_shown(path)} has no table [{_shown(table)}]; tables: {tables}")
    entry = presets[table]
    if entry.get("algo", algo) != algo:
        raise ConfigError(
            f"preset file {_shown(path)} [{_shown(table)}] is for algorithm {entry['algo']!r}, not {algo!r}"
        )
    return _checked_entry(f"preset file {_shown(path)} [{_shown(table)}]", entry)


def _shown(text: str) -> str:
    """``text`` in a one-line message: as it is if printable, else as its repr (a file or table
    name with a newline would split the message over lines)."""
    return text if text.isprintable() else repr(text)


def _checked_entry(where: str, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` after checking the values that are not hyperparameters (Config.build checks those):
    pgrad would take them as they are, and fail later on a bad one with a TypeError."""
    steps = entry.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"{where}: steps={steps!r} must be a positive int")
    if not isinstance(entry.get("env_kwargs", {}), dict):
        raise ConfigError(f"{where}: env_kwargs={entry['env_kwargs']!r} must be a table of env constructor keywords")
    return entry


def _preset_entry(algo: str, name: str) -> dict[str, Any]:
    if is_preset_path(name):
        return _user_preset_entry(algo, name)
    presets = _preset_file(algo)
    if name not in presets:
        names = ", ".join(presets) or "none shipped"
        raise ConfigError(f"unknown preset {name!r} for {algo}; available: {names}, or 'none'")
    return presets[name]


def load_preset(algo: str, name: str) -> dict[str, Any]:
    """Hyperparameters of preset ``name`` for ``algo`` (its ``source`` and ``steps`` removed)."""
    return {k: v for k, v in _preset_entry(algo, name).items() if k not in PRESET_META_KEYS}


def preset_steps(algo: str, name: str | None) -> int | None:
    """The training budget a preset recommends (``steps``), if it names one."""
    return None if name is None else _preset_entry(algo, name).get("steps")


def resolve_preset(algo: str, env_id: str | None, preset: str | None) -> tuple[str | None, dict[str, Any]]:
    """Pick the preset to apply: the named one, none for ``'none'``, else the env's own if shipped.

    A name ending in ``.toml`` is a preset file (as ``pgrad tune`` writes); its table for the env
    id is applied (``FILE.toml#TABLE`` picks another table), and recorded as ``FILE.toml#TABLE``.
    """
    if preset is not None and preset.lower() == "none":
        return None, {}
    if preset is not None and is_preset_path(preset):
        path, _, table = preset.partition("#")
        name = f"{path}#{table or env_id}"
        return name, load_preset(algo, name)
    if preset is not None:
        return preset, load_preset(algo, preset)
    if env_id is not None and env_id in _preset_file(algo):
        return env_id, load_preset(algo, env_id)
    return None, {}
