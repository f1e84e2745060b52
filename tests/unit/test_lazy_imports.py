"""`pgrad --help` and `pgrad list` must not import torch or Gymnasium; the public API still resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "gymnasium", "numpy")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
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
        check = (
            code + "\nfor i in ('pgrad/ContinuousCartPole-v0', 'pgrad/CartPoleNoVel-v1', 'pgrad/PendulumNoVel-v1'): "
            "gym.make(i).close()"
        )
        subprocess.run([sys.executable, "-c", check], check=True, capture_output=True)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_cli_training_with_numpy_optimizer_steps_never_imports_dynamo(tmp_path, algo):
    """torch.optim's methods import torch._dynamo (~1.2 s) on first call; pgrad's CLI avoids it
    (pgrad.startup) where every update steps in numpy. The run still saves and reloads its state."""
    out = tmp_path / "run"
    code = (
        f"import pgrad.cli\nassert pgrad.cli.main(['train', {algo!r}, 'CartPole-v1', '--steps', '512', '--out', "
        f"{str(out)!r},"
        " '--quiet', '--eval-episodes', '1']) == 0\nimport pgrad\npgrad.load(" + repr(str(out)) + ")"
    )
    loaded = _modules_after(code)
    assert "torch" in loaded and "torch._dynamo" not in loaded


def test_cli_training_without_the_dynamo_import_learns_what_the_api_learns(tmp_path):
    """The start-up saving swaps torch's "never compile" wrappers for the plain functions they
    wrap; outside torch.compile the two are the same, so the CLI's weights equal an API run's."""
    import torch
    from safetensors.torch import load_file

    from pgrad.algos.ppo import PPO

    out = tmp_path / "run"
    arguments = ["train", "ppo", "CartPole-v1", "--steps", "768", "--out", str(out), "--quiet", "--eval-episodes", "0"]
    code = f"import pgrad.cli\nassert pgrad.cli.main({arguments!r}) == 0"
    assert "torch._dynamo" not in _modules_after(code)
    agent = PPO("CartPole-v1", seed=0)
    agent.learn(768)
    agent.save(tmp_path / "api")
    agent.close()
    cli, api = load_file(out / "policy.safetensors"), load_file(tmp_path / "api" / "policy.safetensors")
    assert cli.keys() == api.keys() and all(torch.equal(cli[k], api[k]) for k in cli)
