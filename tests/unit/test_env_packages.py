"""Env ids of other packages (MiniGrid-, BabyAI-, ALE/, MinAtar/, dm_control/) work as typed.

make_env imports the package of pgrad.env_ids.ENV_PACKAGES whose import registers the id, and
says which pgrad extra installs it when it is missing (a ConfigError: exit status 2 in the CLI).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import gymnasium as gym
import pytest

from pgrad.cli import main
from pgrad.env_ids import ENV_PACKAGES, env_package_of
from pgrad.envs import make_env
from pgrad.errors import ConfigError

# One id of each family, and the extra that installs its package.
EXAMPLES = {
    "MiniGrid-Empty-5x5-v0": "minigrid",
    "BabyAI-GoToRedBall-v0": "minigrid",
    "ALE/Breakout-v5": "atari",
    "MinAtar/Breakout-v1": "minatar",
    "dm_control/cartpole-swingup-v0": "dmc",
}


@pytest.fixture
def unregistered(monkeypatch):
    """``unregistered(prefix)``: for this test, Gymnasium knows no id starting with ``prefix``
    (as before the package is first imported); ids registered during the test are removed after."""
    prefixes = []

    def forget(prefix: str) -> None:
        prefixes.append(prefix)
        for env_id in [env_id for env_id in gym.registry if env_id.startswith(prefix)]:
            monkeypatch.delitem(gym.registry, env_id)

    yield forget
    # Runs before monkeypatch puts the original entries back.
    for env_id in [env_id for env_id in gym.registry if env_id.startswith(tuple(prefixes))]:
        del gym.registry[env_id]


class _NotInstalled(importlib.abc.MetaPathFinder):
    """An import finder that reports a distribution's top-level package as not installed."""

    def __init__(self, top: str) -> None:
        self.top = top

    def find_spec(self, name, path=None, target=None):
        if name == self.top or name.startswith(self.top + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _without_module(monkeypatch, module: str) -> None:
    """Make ``import module`` fail as it does when its distribution is not installed."""
    top = module.split(".")[0]
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NotInstalled(top), *sys.meta_path])


# ---------------------------------------------------------------- the table (pure)


@pytest.mark.parametrize("env_id, extra", EXAMPLES.items())
def test_prefix_lookup_finds_the_extra(env_id, extra):
    prefix, package = env_package_of(env_id)
    assert env_id.startswith(prefix) and package is ENV_PACKAGES[prefix]
    assert package.extra == extra


@pytest.mark.parametrize(
    "env_id",
    ["CartPole-v1", "pgrad/ContinuousCartPole-v0", "minigrid:MiniGrid-Empty-5x5-v0", "ALE", "", "Breakout-v5"],
)
def test_prefix_lookup_of_other_ids_is_none(env_id):
    assert env_package_of(env_id) is None


def test_prefix_lookup_ignores_case_and_surrounding_spaces():
    assert env_package_of(" minigrid-empty-5x5-v0 ")[1].extra == "minigrid"
    assert env_package_of("ale/Pong-v5")[1].extra == "atari"


def test_every_extra_of_the_table_is_in_pyproject():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    in_all = set(re.fullmatch(r"pgrad\[(.*)\]", extras["all"][0]).group(1).split(","))
    for package in ENV_PACKAGES.values():
        # Distribution names in the extra's requirements, including those of their own extras.
        named = set(
            re.findall(r"[A-Za-z0-9_.-]+", " ".join(re.sub(r"[<>=!~].*", "", r) for r in extras[package.extra]))
        )
        assert set(package.packages) <= named, (package, named)
        assert package.extra in in_all
    assert any(requirement.startswith("minigrid") for requirement in extras["test"])


# ---------------------------------------------------------------- with the package installed


def test_minigrid_id_works_as_typed():
    # minigrid is in the test extra.
    env = make_env("MiniGrid-Empty-5x5-v0")
    observation, _ = env.reset(seed=0)
    assert env.spec.id == "MiniGrid-Empty-5x5-v0" and isinstance(env.action_space, gym.spaces.Discrete)
    assert isinstance(observation, dict) and observation["image"].shape == (7, 7, 3)
    env.step(0)
    env.close()


def test_minigrid_id_works_in_a_process_that_never_imported_minigrid():
    code = (
        "import sys\nfrom pgrad.envs import make_env\nassert 'minigrid' not in sys.modules\n"
        "make_env('MiniGrid-Empty-5x5-v0').reset(seed=0)\nassert 'minigrid' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_miscased_id_of_a_package_suggests_the_real_one():
    with pytest.raises(ConfigError, match="did you mean MiniGrid-Empty-5x5-v0") as info:
        make_env("minigrid-empty-5x5-v0")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("env_id", [env_id for env_id in EXAMPLES if not env_id.startswith("MiniGrid-")])
def test_other_families_work_as_typed_when_installed(env_id):
    module = env_package_of(env_id)[1].module
    if importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"{module} is not installed (not in the test extra)")
    # In a subprocess: dm_control loads its own MuJoCo bindings and GL setup, which aborts later
    # MuJoCo tests in the same process.
    code = (
        f"from pgrad.envs import make_env\nenv = make_env({env_id!r})\nenv.reset(seed=0)\n"
        "env.step(env.action_space.sample())\nenv.close()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_register_function_runs_when_the_import_registers_nothing(monkeypatch, unregistered):
    # MinAtar <= 1.0.15 (and minigrid < 2.5 under Gymnasium 1.x) register only when asked.
    unregistered("MinAtar/")
    calls = []

    def register_envs():
        calls.append(1)
        gym.register(id="MinAtar/Fake-v1", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv")

    monkeypatch.setitem(sys.modules, "minatar.gym", types.SimpleNamespace(register_envs=register_envs))
    env = make_env("MinAtar/Fake-v1")
    assert calls == [1] and env.spec.id == "MinAtar/Fake-v1"
    with pytest.raises(ConfigError, match="unknown environment 'MinAtar/Fak-v1'; did you mean MinAtar/Fake-v1"):
        make_env("MinAtar/Fak-v1")
    assert calls == [1]  # ids of the family are registered: not called again


# ---------------------------------------------------------------- with the package missing


@pytest.mark.parametrize("env_id, extra", EXAMPLES.items())
def test_missing_package_names_the_extra(monkeypatch, unregistered, env_id, extra):
    prefix, package = env_package_of(env_id)
    unregistered(prefix)
    _without_module(monkeypatch, package.module)
    with pytest.raises(ConfigError) as info:
        make_env(env_id)
    needs = " and ".join(package.packages) + (" packages" if len(package.packages) > 1 else " package")
    assert str(info.value) == f"env {env_id!r} needs the {needs}: pip install 'pgrad[{extra}]'"


def test_missing_minigrid_message_as_users_see_it(monkeypatch, unregistered):
    unregistered("MiniGrid-")
    _without_module(monkeypatch, "minigrid")
    with pytest.raises(ConfigError) as info:
        make_env("MiniGrid-Empty-5x5-v0")
    assert str(info.value) == "env 'MiniGrid-Empty-5x5-v0' needs the minigrid package: pip install 'pgrad[minigrid]'"


def test_broken_install_adds_the_import_error(monkeypatch, unregistered):
    # The package is there but one of its own imports fails: the reason is kept, on the same line.
    unregistered("ALE/")
    import_module = importlib.import_module

    def failing_import(name, package=None):
        if name == "ale_py":
            raise ImportError("libale.so: cannot open shared object file")
        return import_module(name, package)

    monkeypatch.setattr(importlib, "import_module", failing_import)
    with pytest.raises(ConfigError) as info:
        make_env("ALE/Breakout-v5")
    assert str(info.value) == (
        "env 'ALE/Breakout-v5' needs the ale-py package: pip install 'pgrad[atari]' "
        "(import ale_py: libale.so: cannot open shared object file)"
    )


def test_package_that_registers_no_id_of_its_family(monkeypatch, unregistered):
    # shimmy imports without dm-control installed, but registers no dm_control/ id.
    unregistered("dm_control/")
    monkeypatch.setitem(sys.modules, "shimmy", types.ModuleType("shimmy"))
    with pytest.raises(ConfigError) as info:
        make_env("dm_control/cartpole-swingup-v0")
    assert str(info.value) == (
        "env 'dm_control/cartpole-swingup-v0' needs the shimmy and dm-control packages: "
        "pip install 'pgrad[dmc]' (shimmy registered no dm_control/ id)"
    )


def test_only_modules_of_the_table_are_imported(monkeypatch):
    imported = []
    monkeypatch.setattr(importlib, "import_module", imported.append)
    for env_id in ("NoSuchPackage-Env-v0", "os/Env-v0", "subprocess-v0"):
        with pytest.raises(ConfigError, match="unknown environment"):
            make_env(env_id)
    assert imported == []


def test_cli_exits_2_with_one_line_when_the_package_is_missing(monkeypatch, unregistered, tmp_path, capsys):
    unregistered("MiniGrid-")
    _without_module(monkeypatch, "minigrid")
    assert main(["train", "ppo", "MiniGrid-Empty-5x5-v0", "--steps", "64", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the minigrid package: pip install 'pgrad[minigrid]'" in err
    assert len(err.splitlines()) == 1
