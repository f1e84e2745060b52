"""ONNX export: the exported graph, run in onnxruntime, matches agent.predict to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

import pgrad
from pgrad.cli import main
from pgrad.errors import UnsupportedSpaceError
from pgrad.export import export_onnx, run_onnx

pytest.importorskip("onnxruntime")
TINY = dict(n_steps=64, batch_size=32, n_epochs=1, n_envs=2)


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", {}),
        ("Pendulum-v1", {"action_dist": "gaussian"}),
        ("Pendulum-v1", {"action_dist": "truncated_normal", "state_dependent_std": True}),
        ("MountainCarContinuous-v0", {"normalize_obs": False}),
    ],
)
def test_onnx_matches_predict(env_id, overrides, tmp_path):
    agent = pgrad.PPO(env_id, seed=0, preset="none", **TINY, **overrides)
    agent.learn(256, quiet=True)  # moves the normaliser statistics away from identity
    path = export_onnx(agent, tmp_path / "policy.onnx")
    rng = np.random.default_rng(0)
    low = np.nan_to_num(agent.observation_space.low, neginf=-5.0)
    high = np.nan_to_num(agent.observation_space.high, posinf=5.0)
    obs = rng.uniform(low, high, size=(64, *agent.observation_space.shape)).astype(np.float32)
    expected = agent.predict(obs)
    got = run_onnx(path, obs)
    if np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, atol=1e-5)
        # some actions sit on the bounds, so the baked-in clip is exercised
    agent.close()


def test_export_cli_and_unsupported_observation(tmp_path, capsys):
    agent = pgrad.PPO("CartPole-v1", seed=0, preset="none", **TINY)
    agent.save(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "p.onnx")]) == 0
    assert (tmp_path / "p.onnx").stat().st_size > 0
    frozen = pgrad.PPO("FrozenLake-v1", seed=0, preset="none", **TINY)
    with pytest.raises(UnsupportedSpaceError, match="Box observations"):
        export_onnx(frozen, tmp_path / "f.onnx")
    frozen.save(tmp_path / "frozen")
    assert main(["export", str(tmp_path / "frozen"), "--onnx", str(tmp_path / "f.onnx")]) == 2
    assert "Box observations" in capsys.readouterr().err
