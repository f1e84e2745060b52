"""`pgrad --help` and `pgrad list` must not import torch or Gymnasium; the public API still resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "gymnasium", "numpy")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("argv", [["list"], ["--help"]])
def test_cli_listing_imports_no_heavy_module(argv):
    code = f"import pgrad.cli\ntry:\n    pgrad.cli.main({argv!r})\nexcept SystemExit:\n    pass"
    loaded = _modules_after(code)
    assert not [m for m in HEAVY if m in loaded]


def test_import_pgrad_is_light_and_public_names_resolve():
    loaded = _modules_after("import pgrad")
    assert not [m for m in HEAVY if m in loaded]
    import pgrad
    from pgrad.algos.ppo import PPO

    assert pgrad.PPO is PPO
    assert set(pgrad.ALGORITHMS) >= {"ppo", "a2c", "actor-critic", "reinforce", "reinforce-baseline"}
    assert pgrad.ALGORITHMS["ppo"] is PPO and callable(pgrad.load) and callable(pgrad.evaluate)
    assert "PPO" in dir(pgrad)
    with pytest.raises(AttributeError):
        pgrad.NoSuchThing  # noqa: B018


def test_summary_read_from_source_matches_docstring():
    from pgrad.algos import ALGORITHMS, algorithm_summary

    for name in ALGORITHMS:
        assert algorithm_summary(name) == ALGORITHMS[name].__doc__.strip().splitlines()[0]


def test_import_pgrad_registers_the_bundled_envs_once_gymnasium_is_imported():
    """`import pgrad` then `gymnasium.make("pgrad/...")` works, in either import order, without
    `import pgrad` importing Gymnasium itself."""
    for code in (
        "import pgrad, sys; assert 'gymnasium' not in sys.modules\nimport gymnasium as gym",
        "import gymnasium as gym\nimport pgrad",
    ):
        check = code + "\nfor i in ('pgrad/ContinuousCartPole-v0', 'pgrad/CartPoleNoVel-v1', 'pgrad/PendulumNoVel-v1'): gym.make(i).close()"
        subprocess.run([sys.executable, "-c", check], check=True, capture_output=True)
