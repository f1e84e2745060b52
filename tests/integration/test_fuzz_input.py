"""Property-based fuzzing of user input (issue "Faults and hostile input"): ``--set`` values, preset
files, env options and whole command lines. Whatever a user types, pgrad answers with exit status 0,
or 2 and one line ``pgrad: error: ...`` (argparse's ``pgrad CMD: error: ...``), never a traceback.

What runs for real and what does not: every check pgrad makes before training (argument parsing,
configs, presets, env options, building the agent and its envs, resume and init checks, the env
doctor, eval, plot, report, export) runs as a user would meet it. Only the training itself is
stubbed in the CLI properties (:func:`sandbox`): ``learn`` returns at once, multi-seed runs and
``pgrad tune``'s trials do not train, so a fuzzed config that happens to be valid costs a few
milliseconds instead of a training run. ``test_valid_set_values_train_for_real`` (slow) trains
valid draws for real. Draws whose valid config would be slow merely to build (thousands of envs,
huge networks, more torch threads than the machine's cores) are skipped by :func:`cheap`.

Failures found whose fix belongs outside pgrad/config.py and pgrad/envs/options.py are listed in
KNOWN_BUGS: each is a strict xfail regression test, and the properties skip its inputs until the
entry is deleted. Examples are derandomised, so a run is reproducible; ``PGRAD_FUZZ_SCALE=20`` runs
twenty times as many, with fresh random draws each time, to hunt for more.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from pgrad.algos import ALGORITHMS
from pgrad.cli import main
from pgrad.config import PRESET_META_KEYS, parse_set_args, resolve_preset
from pgrad.envs.options import WrapperSpec, check_env_kwargs, parse_env_kwargs, parse_wrappers
from pgrad.errors import ConfigError
from pgrad.experiments.runner import TrainSpec, build_agent, resolve_steps

SCALE = int(os.environ.get("PGRAD_FUZZ_SCALE", "1"))


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings: ``max_examples`` draws (times PGRAD_FUZZ_SCALE), no deadline (the first
    draw of a test imports torch, gymnasium or optuna), no example database written into the repo."""
    return settings(
        max_examples=max_examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


ALGOS = list(ALGORITHMS)
CONFIGS = {name: ALGORITHMS[name].Config for name in ALGOS}
ALL_KEYS = sorted({key for config in CONFIGS.values() for key in config.keys()})
ENV_OF = {"ars": "Pendulum-v1"}  # the env each algorithm's --set draws train on (CartPole-v1 otherwise)

# -- strategies ------------------------------------------------------------------------------

# Real argv can hold any text but NUL (the OS cannot pass it), and undecodable bytes arrive as
# surrogates, which pytest's capture cannot print (the real stderr escapes them):
# test_undecodable_argument_in_a_real_process covers those.
ARG_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
arg_text = st.text(ARG_CHARS, max_size=12)

EDGE_VALUES = ["", " ", "\t\n", "0", "1", "-1", "-0", "2", "8", "64", "0.5", "1.5", "2.0", "1e3", "1e-400", "1e400"]
EDGE_VALUES += ["-1e400", "9" * 30, "9" * 400, "1" * 5000, "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "0x10"]
EDGE_VALUES += ["1_000", "_1", "1__0", "1/2", "\u0663", "\uff11\uff12"]  # float() reads Arabic-Indic, fullwidth digits
EDGE_VALUES += ["1,2,,3", ",", ",,", "64,64", "64, 64", "[64, 64]", "(64,)", "[]", "()", "{}", '{"a": 1}', "[[1]]"]
EDGE_VALUES += ["none", "None", "null", "true", "False", "yes", "off", " 7 ", "=", "a=b", "image,direction"]
EDGE_VALUES += ["tanh", "relu", "auto", "cpu", "cuda", "async", "linear", "mlp", "hard", "polyak"]
set_values = st.one_of(
    st.sampled_from(EDGE_VALUES),
    arg_text,
    st.integers().map(str),
    st.floats().map(repr),
    st.lists(st.one_of(st.integers(-3, 300).map(str), st.just(""), st.sampled_from(["nan", "x", " "])), max_size=4).map(
        ",".join
    ),
)
set_keys = st.one_of(st.sampled_from(ALL_KEYS), st.sampled_from(ALL_KEYS).map(str.upper), arg_text)
set_pairs = st.lists(st.tuples(set_keys, set_values), max_size=4)


def set_items(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{key}={value}" for key, value in pairs]


# -- helpers ---------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``pgrad ARGV`` in this process: (exit status, stderr). argparse exits by SystemExit."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def assert_clean(argv: list[str], status: int, err: str, allowed: tuple[int, ...] = (0, 2)) -> None:
    """The contract: an allowed status, no traceback, and a usage error as exactly one line."""
    assert "Traceback" not in err, (argv, err)
    assert status in allowed, (argv, status, err)
    if status == 2:
        assert one_line(err), (argv, err)
        assert err.startswith("pgrad: error: ") or re.match(r"pgrad [a-z]+: error: ", err), (argv, err)


def one_line(message: str) -> bool:
    """A message as one line of text: no line break inside (a carriage return counts, as it does
    on a terminal and for CRLF readers; other control characters do not break lines)."""
    return message.strip() != "" and not re.search(r"[\r\n]", message.strip())


def cheap(config) -> bool:
    """Whether building an agent of this valid config (and its stubbed training) is quick and
    harmless for one fuzz example: few envs, small networks, this process's one torch thread."""
    widths = [
        *getattr(config, "hidden_sizes", ()),
        *(getattr(config, "pi_hidden_sizes", None) or ()),
        *(getattr(config, "vf_hidden_sizes", None) or ()),
    ]
    return (
        getattr(config, "n_envs", 1) <= 8
        and getattr(config, "vectorization", "sync") == "sync"  # async: a process per env
        and len(widths) <= 16
        and all(width <= 512 for width in widths)
        and getattr(config, "cnn_features", 1) <= 1024
        and getattr(config, "lstm_hidden_size", 1) <= 256
        and getattr(config, "lstm_layers", 1) <= 4
        and getattr(config, "backend", "local") == "local"
        and config.torch_threads <= 2
    )


def config_of(algo: str, env: str, preset: str | None, items: list[str]):
    """The config ``pgrad train ALGO ENV --preset PRESET --set ITEMS`` would build, or None where
    that input is an error (which the CLI must then report)."""
    if algo not in CONFIGS:
        return None
    try:
        _, values = resolve_preset(algo, env, preset)
        for key in ("env_kwargs", "wrappers"):
            values.pop(key, None)
        return CONFIGS[algo].build({**values, **parse_set_args(items)})
    except ConfigError:
        return None


# -- the sandbox: a working directory of its own, training stubbed ---------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A real (tiny) PPO run folder for eval, export, plot, report, --init and --resume draws."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    argv = ["train", "ppo", "CartPole-v1", "--steps", "64", "--preset", "none", "--set", "n_steps=32"]
    argv += ["--set", "batch_size=32", "--set", "n_epochs=1", "--eval-episodes", "1", "--quiet", "--out", str(run)]
    assert main(argv) == 0
    return run


@pytest.fixture
def sandbox(tmp_path, monkeypatch, trained_run):
    """``tmp_path`` as the working directory (relative paths of a draw land there), preset files
    to name, and training stubbed: ``learn`` returns at once, multi-seed runs and tune's trials do
    not train (each trial completes with return 0)."""
    import pgrad.experiments.runner as runner
    import pgrad.experiments.seed_batched as seed_batched
    import pgrad.experiments.tune as tuning
    from pgrad.algos.ars import ARS
    from pgrad.algos.base import Algorithm

    monkeypatch.chdir(tmp_path)

    def no_learning(self, total_steps, run_dir=None, *args, **kwargs):
        return self

    def no_seed_runs(spec, seeds, workers=None, backend="local"):
        return {"eval_mean_return": {"n": 0}}, []

    def trials_without_training(spec, study, n_trials, workers, log):
        for _ in range(n_trials):
            trial = study.ask()
            tuning.SEARCH_SPACES[spec.algo](trial)
            study.tell(trial, 0.0)

    monkeypatch.setattr(Algorithm, "learn", no_learning)
    monkeypatch.setattr(ARS, "learn", no_learning)
    monkeypatch.setattr(runner, "run_seeds", no_seed_runs)
    monkeypatch.setattr(seed_batched, "run_seeds_batched", no_seed_runs)
    monkeypatch.setattr(tuning, "_run_local", trials_without_training)
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "good.toml").write_text(
        '["CartPole-v1"]\nalgo = "ppo"\nsteps = 64\nn_steps = 16\nbatch_size = 16\nhidden_sizes = [8]\n'
        'env_kwargs = {sutton_barto_reward = true}\n\n["Pendulum-v1"]\nsteps = 100\nlr = 0.01\n'
    )
    (presets / "bad.toml").write_bytes(b"[CartPole-v1\n\xff\xfe = 1\n")
    (presets / "other.toml").write_text('["CartPole-v1"]\nalgo = "a2c"\n')
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "note.txt").write_text("not a run\n")
    return tmp_path


PLACEHOLDERS = ("<RUN>", "<RUN_COPY>", "<FRESH>", "<PRESETS>", "<SANDBOX>")


def resolve(argv: list[str], sandbox: Path, trained_run: Path) -> list[str]:
    """Put this example's paths into a drawn argv: the trained run, a fresh copy of it (for
    --resume, which may write), a new folder name, the preset files, the sandbox."""
    if not any(p in arg for arg in argv for p in PLACEHOLDERS):
        return argv
    fresh = Path(tempfile.mkdtemp(dir=sandbox)) / "out"
    copy = None
    out = []
    for arg in argv:
        if "<RUN_COPY>" in arg and copy is None:
            copy = Path(tempfile.mkdtemp(dir=sandbox)) / "run"
            shutil.copytree(trained_run, copy)
        arg = arg.replace("<RUN_COPY>", str(copy)).replace("<RUN>", str(trained_run))
        arg = arg.replace("<FRESH>", str(fresh)).replace("<PRESETS>", str(sandbox / "presets"))
        out.append(arg.replace("<SANDBOX>", str(sandbox)))
    return out


def parsed(argv: list[str]) -> argparse.Namespace | None:
    """``argv`` as pgrad's parser reads it, or None for a usage error (or --help)."""
    from pgrad.cli import build_parser

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return build_parser().parse_args(argv)
        except SystemExit:
            return None


# -- known bugs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownBug:
    """A failure the fuzzing found whose fix belongs in a file these tests do not own. Its
    ``argv`` is a regression test, xfail (strict) until the fix; meanwhile the properties skip
    the inputs ``matches`` (argv, and argparse's reading of it or None) recognises.
    Fixed? Delete the entry: the regression test and the skip go with it."""

    name: str
    raises: type[BaseException]  # what the regression test fails with until the fix
    reason: str
    argv: tuple[str, ...]
    matches: Callable[[list[str], argparse.Namespace | None], bool]


# An argv that trains nothing (training is stubbed anyway) and writes into a new folder.
CHEAP_TRAIN = ("--steps", "64", "--preset", "none", "--set", "n_steps=8", "--set", "batch_size=8", "--quiet")
CHEAP_TRAIN += ("--eval-episodes", "0", "--out", "<FRESH>")


def _under_a_file(path: str | None) -> bool:
    return path is not None and any(p.is_file() for p in (Path(path), *Path(path).parents))


def _huge_network(args: argparse.Namespace) -> bool:
    config = config_of(args.algo, args.env, args.preset, args.set or [])
    widths = [*getattr(config, "hidden_sizes", ()), *(getattr(config, "pi_hidden_sizes", None) or ())]
    return any(width >= 2**31 for width in widths + list(getattr(config, "vf_hidden_sizes", None) or ()))


def _unwritable(path: str | None) -> bool:
    """A file path that names a folder or lies under a file."""
    return path is not None and (Path(path).is_dir() or any(p.is_file() for p in Path(path).parents))


# The envs of GOOD_ENVS and BAD_ENVS that build, with other spaces than the trained run's CartPole-v1.
NOT_CARTPOLE = {"Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1", "pgrad/ContinuousCartPole-v0", "FrozenLake-v1"}
NOT_CARTPOLE |= {"MiniGrid-Empty-5x5-v0", "InvertedPendulum-v5", "Blackjack-v1", "ALE/Pong-v5", "MinAtar/Breakout-v1"}
NOT_CARTPOLE |= {"dm_control/cartpole-swingup-v0"}


def _env_failure(args: argparse.Namespace | None) -> str | None:
    """What the env of a command (with its --env-kwarg and --wrapper) does wrong: "build" if
    building it raises anything but ConfigError, "step" if its reset or first episode does."""
    from pgrad.envs import make_env
    from pgrad.envs.options import with_options

    if args is None or args.command not in ("train", "tune", "eval", "check"):
        return None
    env_id = (getattr(args, "env", None) or "CartPole-v1").strip()  # eval: the trained run's env
    try:
        env = make_env(with_options(env_id, parse_env_kwargs(args.env_kwarg or []), args.wrapper or None))
    except ConfigError:
        return None
    except Exception:
        return "build"
    try:
        env.reset(seed=0)
        for _ in range(200):
            if any(env.step(env.action_space.sample())[2:4]):
                break
    except Exception:
        return "step"
    finally:
        env.close()
    return None


IMAGE_SUFFIXES = {"", ".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp"}
IMAGE_SUFFIXES |= {".gif", ".avif", ".raw", ".rgba", ".pgf"}  # what matplotlib's savefig writes


KNOWN_BUGS: list[KnownBug] = []  # every bug these tests found is fixed; a new one goes here first


def known_bug(argv: list[str]) -> KnownBug | None:
    args = parsed(argv)
    return next((bug for bug in KNOWN_BUGS if bug.matches(argv, args)), None)


# -- 1. --set values -------------------------------------------------------------------------


@fuzz(400)
@given(algo=st.sampled_from(ALGOS), pairs=set_pairs)
@example(algo="ppo", pairs=[("torch_threads", "9" * 30)])
@example(algo="ppo", pairs=[("log_std_init", "nan")])
@example(algo="ppo", pairs=[("n_steps", "9007199254740993")])  # read through float(): ...992
def test_set_values_build_a_config_or_raise_config_error(algo, pairs):
    """The core property: ``Config.build(parse_set_args(...))`` returns a config or raises
    ConfigError with a one-line message; never ValueError, TypeError, OverflowError... What it
    accepts is what was typed (no nan; an int exactly), and config.json records it and builds it
    again into the same config."""
    try:
        overrides = parse_set_args(set_items(pairs))
        config = CONFIGS[algo].build(overrides)
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)
        return
    for key, value in config.to_dict().items():
        assert not (isinstance(value, float) and math.isnan(value)), f"{key}=nan accepted"
        text = overrides.get(key)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and re.fullmatch(r"\s*-?[0-9]{1,4000}\s*", text or "")
        ):
            assert value == int(text), f"{key}={text} read as {value}"
    recorded = json.loads(json.dumps(config.to_dict()))
    assert CONFIGS[algo].build(recorded) == config


@fuzz(60)
@given(
    algo=st.sampled_from(ALGOS),
    pairs=set_pairs,
    preset=st.sampled_from([None, "none"]),
    equals_form=st.booleans(),
)
def test_train_with_fuzzed_set_values_exits_0_or_2(algo, pairs, preset, equals_form, sandbox, trained_run, capsys):
    """``pgrad train ALGO ENV --set KEY=VALUE ...`` (ars on Pendulum-v1, the others on CartPole-v1)."""
    env = ENV_OF.get(algo, "CartPole-v1")
    items = set_items(pairs)
    config = config_of(algo, env, preset, items)
    assume(config is None or cheap(config))
    argv = ["train", algo, env, "--steps", "64", "--quiet", "--eval-episodes", "0", "--out", "<FRESH>"]
    argv += ["--preset", preset] if preset else []
    for item in items:
        argv += [f"--set={item}"] if equals_form else ["--set", item]
    status, err = run_cli(resolve(argv, sandbox, trained_run), capsys)
    assert_clean(argv, status, err)
    if config is None:  # what Config.build rejects, the command rejects
        assert status == 2, (argv, err)


# -- 2. preset files -------------------------------------------------------------------------


class Raw(str):
    """A TOML literal written as it is (dates and times have no JSON form)."""


TOML_LITERALS = [Raw(t) for t in ("1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27T00:32:00.999999")]

# Wrapper classes a fuzzed preset or --wrapper may name: Gymnasium's (rejecting kwargs and envs
# in their several ways), classes that are no wrappers, a missing class and module. Never a
# random module: importing one runs its code.
WRAPPER_TARGETS = ["ClipReward", "TimeLimit", "ClipAction", "RescaleAction", "NormalizeObservation"]
WRAPPER_TARGETS += ["FlattenObservation", "DtypeObservation", "ReshapeObservation", "FrameStackObservation"]
WRAPPER_TARGETS += ["TransformReward", "RecordEpisodeStatistics", "NoSuchWrapper"]
WRAPPER_TARGETS = [f"gymnasium.wrappers:{name}" for name in WRAPPER_TARGETS]
WRAPPER_TARGETS += ["gymnasium:Wrapper", "gymnasium:Env", "builtins:str", "builtins:dict", "collections:OrderedDict"]
WRAPPER_TARGETS += ["pgrad.envs.options:ConfiguredEnv", "pgrad_fuzz_no_such_module:Wrapper"]
WRAPPER_KWARG_NAMES = ["min_reward", "max_reward", "max_episode_steps", "min_action", "max_action", "epsilon", "dtype"]
WRAPPER_KWARG_NAMES += ["shape", "stack_size", "padding_type", "buffer_length", "env"]
# Small numbers only: a valid TimeLimit(max_episode_steps=10**9) would make an evaluation run long.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(-1000, 1000),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.sampled_from(["float32", "int64", "reset", "x", ""]),
    st.text(max_size=4),
)
json_data = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=5,
)
wrapper_kwargs = st.dictionaries(
    st.one_of(st.sampled_from(WRAPPER_KWARG_NAMES), st.text(max_size=4)), json_data, max_size=2
)
wrapper_texts = st.one_of(
    st.sampled_from(WRAPPER_TARGETS),
    st.builds(lambda t, k: f"{t}:{json.dumps(k)}", st.sampled_from(WRAPPER_TARGETS), wrapper_kwargs),
    st.builds(
        lambda t, s: f"{t}:{s}", st.sampled_from(WRAPPER_TARGETS), st.one_of(arg_text, st.sampled_from(EDGE_VALUES))
    ),
    arg_text.filter(lambda s: ":" not in s),  # no module to import
    st.builds(lambda c: f"gymnasium.wrappers:{c}", arg_text),  # getattr on a module, never an import
)
wrapper_tables = st.builds(
    lambda t, k: {"target": t, "kwargs": k}, st.one_of(st.sampled_from(WRAPPER_TARGETS), json_scalars), wrapper_kwargs
)
toml_scalars = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.sampled_from(EDGE_VALUES),
    st.text(max_size=8),
    st.sampled_from(TOML_LITERALS),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=2)),
    max_leaves=6,
)


@st.composite
def preset_entries(draw, algo: str) -> dict:
    """One preset table: hyperparameters of ``algo`` (and others), steps, algo, env_kwargs, wrappers."""
    keys = CONFIGS[algo].keys()
    entry = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(keys), st.sampled_from(ALL_KEYS), st.text(max_size=8)), toml_values, max_size=4
        )
    )
    if draw(st.booleans()):
        entry["steps"] = draw(st.one_of(st.integers(-2, 10**6), toml_values))
    if draw(st.integers(0, 3)) == 0:
        entry["algo"] = draw(st.one_of(st.sampled_from(ALGOS), toml_values))
    if draw(st.integers(0, 3)) == 0:
        entry["env_kwargs"] = draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["sutton_barto_reward", "g", "render_mode", "x"]), json_data, max_size=2
                ),
                toml_values,
            )
        )
    if draw(st.integers(0, 3)) == 0:
        entry["wrappers"] = draw(st.one_of(st.lists(st.one_of(wrapper_texts, wrapper_tables), max_size=2), toml_values))
    for key in PRESET_META_KEYS:
        if key == "source" and draw(st.booleans()):
            entry[key] = draw(st.text(max_size=10))
    return entry


def toml_value(value) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)  # None: TOML has no null, the entry is left out


def drop_none(value):
    if isinstance(value, list):
        return [drop_none(v) for v in value if v is not None]
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    return value


def toml_document(tables: dict) -> str:
    lines = []
    for name, entry in tables.items():
        lines.append(f"[{json.dumps(name, ensure_ascii=False)}]")
        lines += [f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in drop_none(entry).items()]
        lines.append("")
    return "\n".join(lines)


@st.composite
def preset_files(draw, algo: str, env: str) -> bytes:
    """Preset files: mostly valid TOML with a table for ``env`` (as ``pgrad tune`` writes), some
    with other tables only, some damaged (cut, or with stray bytes), some random bytes."""
    tables = draw(st.dictionaries(st.text(max_size=6), preset_entries(algo), max_size=2))
    if draw(st.integers(0, 4)):
        tables = {env: draw(preset_entries(algo)), **tables}
    data = toml_document(tables).encode("utf-8", "surrogatepass")
    damage = draw(st.integers(0, 9))
    if damage == 0:
        return draw(st.binary(max_size=64))
    if damage == 1:
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=4)) + data[at:]
    if damage == 2:
        return data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def preset_cases(draw):
    algo = draw(st.sampled_from(ALGOS))
    env = ENV_OF.get(algo, "CartPole-v1")
    return algo, env, draw(preset_files(algo, env))


@fuzz(80)
@given(
    case=preset_cases(),
    table=st.sampled_from(["", "", "#", "#CartPole-v1", "#Pendulum-v1", "#x"]),
    steps=st.sampled_from([64, None]),
)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nsteps = "many"\n'), table="", steps=None)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nenv_kwargs = 5\n'), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nwrappers = 5\n'), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nlr = 1' + b"0" * 400 + b"\n"), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b"a = " + b"[" * 2000 + b"]" * 2000 + b"\n"), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b"a = 1" + b"0" * 5000 + b"\n"), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nsource = "\xff"\n'), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b'["a\\nb"]\nlr = 1\n'), table="", steps=64)
@example(
    case=(
        "ppo",
        "CartPole-v1",
        b'["CartPole-v1"]\nwrappers = ["gymnasium.wrappers:TimeLimit:{\\"max_episode_steps\\": 0}"]\n',
    ),
    table="",
    steps=64,
)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nwrappers = ["builtins:str"]\n'), table="", steps=64)
@example(case=("ppo", "CartPole-v1", b'["CartPole-v1"]\nenv_kwargs = {render_mode = "human"}\n'), table="", steps=64)
def test_preset_files_build_an_agent_or_raise_config_error(case, table, steps, tmp_path):
    """``--preset FILE.toml[#TABLE]``: building the agent (as ``pgrad train`` does, before any
    work) and resolving its budget raise only ConfigError, with a one-line message."""
    algo, env, data = case
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "preset.toml"
    path.write_bytes(data)
    preset = f"{path}{table}"
    config = config_of(algo, env, preset, [])
    assume(config is None or cheap(config))
    spec = TrainSpec(algo=algo, env=env, seed=0, out="", steps=steps, preset=preset)
    try:
        agent = build_agent(spec)
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)
        return
    try:
        budget = resolve_steps(spec, agent)
        assert isinstance(budget, int) and not isinstance(budget, bool) and budget > 0
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)
    finally:
        agent.close()


# -- 4. --env-kwarg and --wrapper ------------------------------------------------------------

env_kwarg_items = st.lists(
    st.one_of(
        st.builds(
            lambda key, sep, value: f"{key}{sep}{value}",
            st.one_of(
                st.sampled_from(["g", "max_episode_steps", "render_mode", "env", "sutton_barto_reward", "x"]), arg_text
            ),
            st.sampled_from(["=", "=", " = ", "==", ":"]),
            st.one_of(json_data.map(json.dumps), st.sampled_from(EDGE_VALUES), arg_text),
        ),
        arg_text,
    ),
    max_size=3,
)


@fuzz(400)
@given(items=env_kwarg_items)
@example(items=["a=" + "1" * 5000])
@example(items=["a=" + "[" * 100_000])
@example(items=["render_mode=human"])
def test_env_kwargs_parse_or_raise_config_error(items):
    """``--env-kwarg`` items give a dict of identifier keys and JSON data, or ConfigError."""
    from pgrad.envs.options import with_options

    try:
        kwargs = parse_env_kwargs(items)
        assert all(isinstance(key, str) and key.isidentifier() for key in kwargs)
        assert check_env_kwargs(kwargs).keys() == kwargs.keys()
        env = with_options("CartPole-v1", kwargs)
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)
        return
    # make_env takes these itself, beside the env kwargs: the same name twice is a TypeError there
    assert not {"env", "render_mode", "atari_preprocessing", "atari_training"} & set(getattr(env, "kwargs", {}))


@fuzz(400)
@given(
    text=st.one_of(
        wrapper_texts, wrapper_tables, json_data, st.lists(st.one_of(wrapper_texts, json_scalars), max_size=2)
    )
)
@example(text='gymnasium.wrappers:ClipReward:{"min_reward": ' + "1" * 5000 + "}")
@example(text="gymnasium.wrappers:ClipReward:" + "[" * 100_000)
@example(text=5)
def test_wrappers_parse_or_raise_config_error(text):
    """``--wrapper`` strings (and the tables a preset or config.json holds) parse into specs
    that round-trip through their recorded form, or raise ConfigError; parsing imports nothing."""
    try:
        specs = parse_wrappers(text)
    except ConfigError as exc:
        assert one_line(str(exc)), str(exc)
        return
    for spec in specs:
        module, _, name = spec.target.partition(":")
        assert name.isidentifier() and all(part.isidentifier() for part in module.split("."))
        recorded = json.loads(json.dumps(spec.to_json()))
        assert json.dumps(WrapperSpec.parse(recorded).to_json()) == json.dumps(spec.to_json())


# -- 3. whole command lines ------------------------------------------------------------------


def mostly(valid, invalid):
    """Three draws in four from ``valid``: flags whose values are mostly valid take a command past
    argparse, into pgrad's own checks."""
    return st.integers(0, 3).flatmap(lambda i: invalid if i == 0 else valid)


# Envs a draw names: cheap ones with several kinds of space, misspelt and unknown ids, entry
# points (of no module that runs code on import), other packages' families. Random text never has
# a ":" here: make_env would import the module it names.
GOOD_ENVS = ["CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1", "pgrad/ContinuousCartPole-v0"]
GOOD_ENVS += ["FrozenLake-v1", "MiniGrid-Empty-5x5-v0", "InvertedPendulum-v5"]
GOOD_ENVS += ["gymnasium.envs.classic_control:CartPoleEnv"]
BAD_ENVS = ["Blackjack-v1", "ALE/Pong-v5", "dm_control/cartpole-swingup-v0", "MinAtar/Breakout-v1", "CartPol-v1"]
BAD_ENVS += ["nope", "", " ", "gymnasium.envs.classic_control:NoSuchEnv", "gymnasium:Env", "builtins:str", ":"]
BAD_ENVS += ["gymnasium:", "pgrad_fuzz_no_such_module:Env"]
envs = mostly(st.sampled_from(GOOD_ENVS), st.one_of(st.sampled_from(BAD_ENVS), arg_text.filter(lambda s: ":" not in s)))
algos = mostly(st.sampled_from(ALGOS), st.one_of(st.sampled_from(["ppoo", "PPO", "reinforce_baseline", ""]), arg_text))
small_ints = mostly(
    st.integers(1, 300).map(str), st.sampled_from(["0", "-1", "-2", "1e3", "", "x", "9" * 30, "1.5", "0x10", " 3"])
)
seeds = mostly(
    st.integers(0, 20).map(str),
    st.one_of(st.sampled_from(["-1", str(2**31), str(2**32 - 1), str(2**64), "x", "", "1.0"]), arg_text),
)
floats_text = mostly(
    st.floats(-1000, 1000).map(repr), st.sampled_from(["nan", "inf", "-inf", "-1", "0", "x", "", "1e400"])
)
run_dirs = mostly(
    st.sampled_from(["<RUN>", "<RUN>/policy.json", "<RUN>/policy.safetensors", "<RUN>/checkpoint"]),
    st.sampled_from(["<RUN>/config.json", "<SANDBOX>/missing", "<SANDBOX>/note.txt", "<SANDBOX>/empty_dir", ""]),
)
presets = mostly(
    st.sampled_from(["none", "CartPole-v1", "Pendulum-v1", "<PRESETS>/good.toml", "<PRESETS>/good.toml#Pendulum-v1"]),
    st.one_of(
        st.sampled_from(["None", "auto", "nope", "", "<PRESETS>/good.toml#", "<PRESETS>/good.toml#x"]),
        st.sampled_from(["bad.toml", "other.toml", "missing.toml"]).map(lambda name: f"<PRESETS>/{name}"),
        st.sampled_from(["<SANDBOX>/empty_dir.toml", "<SANDBOX>/note.txt"]),
        arg_text,
        arg_text.map(lambda s: s + ".toml"),
    ),
)
# --set: a real key of some algorithm with a plausible value, or anything.
PLAUSIBLE_SETS = ["n_steps=16", "batch_size=16", "n_envs=2", "lr=0.01", "hidden_sizes=8,8", "gamma=0.9", "n_epochs=2"]
PLAUSIBLE_SETS += ["activation=relu", "action_dist=gaussian", "normalize_obs=false", "torch_threads=1", "seq_len=4"]
PLAUSIBLE_SETS += ["n_directions=4", "n_top=2", "policy_type=mlp", "n_workers=0", "target_critic=hard", "device=auto"]
set_texts = mostly(
    st.sampled_from(PLAUSIBLE_SETS), st.tuples(set_keys, set_values).map(lambda pair: f"{pair[0]}={pair[1]}")
)
env_kwarg_texts = mostly(
    st.sampled_from(["sutton_barto_reward=true", "g=9.0", "max_episode_steps=50", "goal_velocity=0.1", "size=5"]),
    env_kwarg_items.map(lambda items: items[0] if items else ""),
)
GOOD_WRAPPERS = ["gymnasium.wrappers:RecordEpisodeStatistics", 'gymnasium.wrappers:TimeLimit:{"max_episode_steps": 50}']
GOOD_WRAPPERS += ['gymnasium.wrappers:ClipReward:{"min_reward": -1, "max_reward": 1}', "gymnasium.wrappers:ClipAction"]
wrapper_args = mostly(st.sampled_from(GOOD_WRAPPERS), wrapper_texts)
not_runs = st.sampled_from(["<SANDBOX>/missing", "<SANDBOX>/note.txt", "<SANDBOX>/empty_dir", "<RUN>/checkpoint", ""])
# Output paths: new, existing files and folders, under a file, and relative ones (in the sandbox).
relative = arg_text.filter(lambda s: "/" not in s and s.strip(". ") != "")


def outputs(*suffixes: str):
    new = [f"<FRESH>{suffix}" for suffix in suffixes]
    return st.one_of(
        st.sampled_from([*new, "<FRESH>", "<SANDBOX>/empty_dir", "<SANDBOX>/note.txt", "<SANDBOX>/note.txt/x"]),
        relative,
    )


def tokens(strategy):
    """A flag's value: one token."""
    return strategy.map(lambda value: [value])


SWITCH = st.just([])
ENV_OPTIONS = {"--env-kwarg": tokens(env_kwarg_texts), "--wrapper": tokens(wrapper_args)}
TRAIN_FLAGS = {
    "--steps": tokens(small_ints),
    "--seed": tokens(seeds),
    "--seeds": st.lists(seeds, min_size=1, max_size=3),
    "--out": tokens(st.one_of(outputs(), st.just("<RUN_COPY>"))),
    "--preset": tokens(presets),
    "--set": tokens(set_texts),
    "--backend": tokens(mostly(st.just("local"), st.sampled_from(["bogus", ""]))),  # never ray: it starts a cluster
    "--workers": tokens(mostly(st.sampled_from(["1", "2"]), small_ints)),
    "--batched": SWITCH,
    "--no-batched": SWITCH,
    "--resume": tokens(
        st.sampled_from(["<RUN_COPY>", "<SANDBOX>/missing", "<SANDBOX>/empty_dir", "<SANDBOX>/note.txt", ""])
    ),
    "--allow-changes": SWITCH,
    "--checkpoint-every": tokens(small_ints),
    "--eval-every": tokens(small_ints),
    "--patience": tokens(small_ints),
    "--min-delta": tokens(floats_text),
    "--periodic-eval-episodes": tokens(small_ints),
    "--init": tokens(run_dirs),
    "--stop-at-return": tokens(floats_text),
    "--track": tokens(st.sampled_from(["wandb", "mlflow", "bogus"])),
    **ENV_OPTIONS,
}
COMMAND_FLAGS = {
    "train": TRAIN_FLAGS,
    "eval": {
        "--episodes": tokens(mostly(st.sampled_from(["1", "2", "3"]), st.sampled_from(["0", "-1", "x", ""]))),
        "--deterministic": SWITCH,
        "--stochastic": SWITCH,
        "--seed": tokens(seeds),
        "--env": tokens(envs),
        "--video": tokens(outputs(".mp4", ".txt", "/v.mp4")),
        "--json": SWITCH,
        **ENV_OPTIONS,
    },
    "plot": {"--out": tokens(outputs(".png", ".pdf", ".txt", "")), "--smooth": tokens(small_ints)},
    "report": {"--out": tokens(outputs(".md", ".txt", "/r.md", "")), "--smooth": tokens(small_ints)},
    "export": {"--onnx": tokens(outputs(".onnx", "", "/p.onnx"))},
    "tune": {
        "--trials": tokens(mostly(st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "x"]))),
        "--steps": tokens(small_ints),
        "--backend": TRAIN_FLAGS["--backend"],
        "--workers": tokens(small_ints),
        "--out": tokens(outputs()),
        "--seed": tokens(seeds),
        "--preset": tokens(presets),
        "--set": TRAIN_FLAGS["--set"],
        "--evaluations": tokens(mostly(st.sampled_from(["1", "4"]), st.sampled_from(["-1", "0", "5", "x"]))),
        "--eval-episodes": tokens(mostly(st.sampled_from(["1", "3"]), st.sampled_from(["-1", "0"]))),
        **ENV_OPTIONS,
    },
    "check": {"--steps": tokens(small_ints), "--seed": tokens(seeds), **ENV_OPTIONS},
    "list": {},
}
POSITIONALS = {
    "train": [algos, envs],
    "eval": [run_dirs],
    "plot": [st.lists(mostly(st.just("<RUN_COPY>"), not_runs), min_size=1, max_size=2)],
    "report": [st.lists(mostly(st.just("<RUN>"), not_runs), min_size=1, max_size=2)],
    "export": [run_dirs],
    "tune": [algos, envs],
    "check": [envs],
    "list": [st.one_of(st.just([]), tokens(algos))],
}
ALL_FLAGS = sorted({flag for flags in COMMAND_FLAGS.values() for flag in flags} | {"--help", "-h"})


@st.composite
def command_lines(draw, command: str) -> list[str]:
    """``command`` with drawn positionals and flags (each flag as ``--flag VALUE`` or
    ``--flag=VALUE``), now and then a stray token anywhere."""
    argv = [command]
    for positional in POSITIONALS[command]:
        value = draw(positional)
        argv += value if isinstance(value, list) else [value]
    flags = COMMAND_FLAGS[command]
    if command == "tune" and draw(st.integers(0, 9)):
        argv += ["--trials", "1"]  # required; left out one time in ten
    if command == "export" and draw(st.integers(0, 9)):
        argv += ["--onnx", "<FRESH>.onnx"]
    for name in draw(st.lists(st.sampled_from(sorted(flags)), max_size=5)) if flags else []:
        values = draw(flags[name])
        if len(values) == 1 and draw(st.integers(0, 3)) == 0:
            argv.append(f"{name}={values[0]}")
        else:
            argv += [name, *values]
    if command in ("train", "tune"):
        argv += ["--quiet"]
    if command == "train":  # an evaluation after the (stubbed) training of at most one episode
        argv += ["--eval-episodes", draw(st.sampled_from(["0", "0", "1", "-1"]))]
    if draw(st.integers(0, 7)) == 0:
        stray = draw(st.one_of(st.sampled_from(ALL_FLAGS), arg_text))
        argv.insert(draw(st.integers(1, len(argv))), stray)
    return argv


def random_command_lines():
    """Any tokens: command names, flags of any command, text."""
    word = st.one_of(st.sampled_from([*COMMAND_FLAGS, "help", "--version"]), st.sampled_from(ALL_FLAGS), arg_text)
    return st.lists(word, max_size=6)


def too_slow(argv: list[str]) -> bool:
    """Whether a drawn command would run long though valid: many evaluation episodes or trials, a
    long env doctor, a video of many episodes, a config that is slow to build, or big numbers in
    env options (a valid TimeLimit(max_episode_steps=10**9) would make an evaluation run long)."""
    args = parsed(argv)
    if args is None:  # a usage error (or --help): fast
        return False
    limits = {"trials": 3, "episodes": 10, "eval_episodes": 2, "evaluations": 8, "periodic_eval_episodes": 5}
    if args.command == "check":
        limits["steps"] = 3000
    for name, limit in limits.items():
        if isinstance(getattr(args, name, None), int) and getattr(args, name) > limit:
            return True
    if getattr(args, "video", None) and args.episodes > 3:
        return True
    if args.command in ("train", "tune"):
        preset = "none" if getattr(args, "init", None) else args.preset
        config = config_of(args.algo, args.env, preset, args.set or [])
        if config is not None and not cheap(config):
            return True
    options = [*(getattr(args, "env_kwarg", None) or []), *(getattr(args, "wrapper", None) or [])]
    return any(big_number(text) for text in options)


def big_number(text: str) -> bool:
    """Whether ``text`` holds a number beyond 1000 (in any notation: 5000, 1e9, 1e999)."""
    return any(abs(float(n)) > 1000 for n in re.findall(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", text))


def check_command_line(argv, sandbox, trained_run, capsys) -> None:
    argv = resolve(argv, sandbox, trained_run)
    assume(not too_slow(argv))
    assume(known_bug(argv) is None)
    # pgrad check: exit 1 is the env doctor's "found an error" (its documented status), not a failure
    allowed = (0, 1, 2) if argv[:1] == ["check"] else (0, 2)
    status, err = run_cli(argv, capsys)
    # what the draws came to, in pytest --hypothesis-show-statistics
    event(f"exit {status}: {err.strip().splitlines()[-1][:40] if err.strip() else ''}")
    assert_clean(argv, status, err, allowed)


@fuzz(60)
@given(argv=command_lines("train"))
def test_train_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(40)
@given(argv=command_lines("eval"))
def test_eval_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(25)
@given(argv=st.one_of(command_lines("plot"), command_lines("report")))
def test_plot_and_report_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(10)
@given(argv=command_lines("export"))
def test_export_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(15)
@given(argv=command_lines("tune"))
def test_tune_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(30)
@given(argv=st.one_of(command_lines("check"), command_lines("list")))
def test_check_and_list_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


@fuzz(60)
@given(argv=random_command_lines())
def test_random_command_lines(argv, sandbox, trained_run, capsys):
    check_command_line(argv, sandbox, trained_run, capsys)


# -- the bugs found, until fixed -------------------------------------------------------------


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param(bug, marks=pytest.mark.xfail(strict=True, raises=bug.raises, reason=bug.reason), id=bug.name)
        for bug in KNOWN_BUGS
    ],
)
def test_known_bug(bug, sandbox, trained_run, capsys):
    argv = resolve(list(bug.argv), sandbox, trained_run)
    status, err = run_cli(argv, capsys)
    assert_clean(argv, status, err)


def test_known_bugs_are_what_the_properties_skip(sandbox, trained_run):
    for bug in KNOWN_BUGS:
        argv = resolve(list(bug.argv), sandbox, trained_run)
        assert known_bug(argv) is bug, bug.reason


# -- valid draws, trained for real -----------------------------------------------------------


def valid_texts(config_class, key: str):
    """``--set`` values of ``key`` within its declared type and range, small enough to train fast
    (ints up to 16, floats up to 3 above their lower bound): the combinations are what is fuzzed."""
    import dataclasses
    import typing

    field = next(f for f in dataclasses.fields(config_class) if f.name == key)
    hint = typing.get_type_hints(config_class)[key]
    meta = field.metadata
    optional = type(None) in typing.get_args(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if meta.get("choices"):
        values = st.sampled_from([str(c) for c in meta["choices"]])
    elif hint is bool:
        values = st.sampled_from(["true", "false"])
    elif hint is int:
        low = int(meta["low"] or 0) + bool(meta["low_open"])
        values = st.integers(low, max(low, 16)).map(str)
    elif hint is float:
        low = -3.0 if meta["low"] is None else meta["low"]
        high = low + 3.0 if meta["high"] is None else meta["high"]
        values = st.floats(low, high, exclude_min=meta["low_open"], exclude_max=meta["high_open"]).map(repr)
    elif typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is int:
        values = st.lists(st.integers(1, 16), max_size=2).map(lambda ws: ",".join(map(str, ws)))
    else:  # obs_keys
        values = st.sampled_from(["", "image"])
    return st.one_of(values, st.just("none")) if optional else values


# Each algorithm's rollouts cut to a few dozen steps; the fuzzed values come after (and may
# override them), then what keeps the run in this process on one thread.
SMALL = {
    "ppo": ["n_steps=16", "batch_size=16", "n_epochs=1"],
    "ppo-lstm": ["n_steps=16", "batch_size=16", "n_epochs=1"],
}
SMALL["ars"] = ["n_directions=2", "horizon=50", "eval_every=0"]
LOCAL = ["n_workers=0", "vectorization=sync", "torch_threads=1", "n_envs=2", "device=cpu"]


@st.composite
def valid_set_draws(draw):
    algo = draw(st.sampled_from(ALGOS))
    config_class = CONFIGS[algo]
    keys = draw(st.lists(st.sampled_from(config_class.keys()), max_size=4, unique=True))
    items = SMALL.get(algo, []) + [f"{key}={draw(valid_texts(config_class, key))}" for key in keys]
    return algo, [item for item in items + LOCAL if item.partition("=")[0] in config_class.keys()]


@pytest.mark.slow
@fuzz(15)
@given(draw=valid_set_draws())
def test_valid_set_values_train_for_real(draw, tmp_path, capsys):
    """Valid ``--set`` values, in random combinations, train for real (64 steps): exit 0, or 2
    (a combination the algorithm or env does not take, said before training), or 1 (training
    failed, said in one line); never a traceback."""
    algo, items = draw
    env = ENV_OF.get(algo, "CartPole-v1")
    out = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    argv = ["train", algo, env, "--steps", "64", "--preset", "none", "--quiet", "--eval-episodes", "1"]
    argv += ["--out", str(out), *[f"--set={item}" for item in items]]
    status, err = run_cli(argv, capsys)
    event(f"exit {status}")
    assert_clean(argv, status, err, allowed=(0, 1, 2))
    if status == 1:
        assert one_line(err) and err.startswith("pgrad: error: training failed"), (argv, err)
    if config_of(algo, env, "none", items) is None:
        assert status == 2, (argv, err)
    if status == 0:
        assert (out / "policy.json").is_file()


def test_undecodable_argument_in_a_real_process(tmp_path):
    """Bytes that are not UTF-8 reach Python as surrogates, which only the real stderr (with its
    backslashreplace) can print: a preset file name of such bytes is exit 2 and one line."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "pgrad.cli", "train", "ppo", "CartPole-v1", "--preset", b"\xff\n.toml"]
    done = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120)
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 2 and "Traceback" not in err and one_line(err), err
    assert err.startswith("pgrad: error: cannot read preset file")


@pytest.mark.parametrize(
    "argv, message",
    [
        # torch.set_num_threads raised ValueError above a C int: torch_threads has an upper bound now
        (["train", "ppo", "CartPole-v1", "--set", "torch_threads=" + "9" * 30], "torch_threads=" + "9" * 30),
        # an env kwarg make_env takes itself reached it twice (TypeError: multiple values for 'render_mode')
        (["check", "CartPole-v1", "--env-kwarg", "render_mode=human"], "render_mode is pgrad's to set"),
        # Gymnasium's wrappers reject kwargs by ValueError and errors of their own, not only TypeError
        (["check", "CartPole-v1", "--wrapper", 'gymnasium.wrappers:TimeLimit:{"max_episode_steps": 0}'], "TimeLimit"),
        (["check", "CartPole-v1", "--wrapper", "builtins:str"], "returned str, not a gymnasium.Env"),
        # JSON the json module refuses (an int of more than 4300 digits) was a ValueError
        (["check", "CartPole-v1", "--env-kwarg", "g=" + "1" * 5000], "cannot read its value as JSON"),
        # a preset's steps went unchecked to `steps <= 0` (TypeError)
        (["train", "ppo", "CartPole-v1", "--preset", "<PRESETS>/steps.toml"], "steps='many' must be a positive int"),
    ],
    ids=["torch_threads", "render_mode", "wrapper_value_error", "wrapper_not_env", "huge_json_int", "preset_steps"],
)
def test_fixed_input_bugs_exit_2(argv, message, sandbox, trained_run, capsys):
    """Failures the fuzzing found and pgrad/config.py or pgrad/envs/options.py now turn into exit 2."""
    (sandbox / "presets" / "steps.toml").write_text('["CartPole-v1"]\nsteps = "many"\n')
    argv = resolve([*argv, "--quiet"] if argv[0] == "train" else argv, sandbox, trained_run)
    status, err = run_cli(argv, capsys)
    assert_clean(argv, status, err)
    assert status == 2 and message in err, err
