"""ONNX export: the exported graph, run in onnxruntime, matches agent.predict to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

import pgrad
from pgrad.cli import main
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


def test_export_cli_and_a_discrete_observation(tmp_path):
    agent = pgrad.PPO("CartPole-v1", seed=0, preset="none", **TINY)
    agent.save(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "p.onnx")]) == 0
    assert (tmp_path / "p.onnx").stat().st_size > 0
    frozen = pgrad.PPO("FrozenLake-v1", seed=0, preset="none", **TINY)  # Discrete(16): one-hot in the graph
    frozen.learn(128, quiet=True)
    frozen.save(tmp_path / "frozen")
    assert main(["export", str(tmp_path / "frozen"), "--onnx", str(tmp_path / "f.onnx")]) == 0
    states = np.arange(16)
    np.testing.assert_array_equal(run_onnx(tmp_path / "f.onnx", states), frozen.predict(states))


def _batch(env_factory, count):
    from pgrad.observations import stack_rows

    env = env_factory()
    rows, masks = [], []
    obs, info = env.reset(seed=0)
    for _ in range(count):
        rows.append(obs)
        masks.append(info.get("action_mask"))
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, info = env.reset()
    return stack_rows(rows), (np.stack(masks) if masks[0] is not None else None)


@pytest.mark.parametrize(
    "env_id",
    [
        "pgrad/MatchDigits-v0",  # Dict observation (MultiDiscrete + Box), MultiDiscrete action
        "pgrad/MatchBits-v0",  # MultiBinary observation and action
        "pgrad/FindTheLight-v0",  # an image through the CNN
        "pgrad/MaskedChoice-v0",  # the action mask as an input
        "Blackjack-v1",  # Tuple of Discrete observations
    ],
)
def test_onnx_matches_predict_on_other_spaces(env_id, tmp_path):
    import gymnasium as gym

    agent = pgrad.PPO(env_id, seed=0, preset="none", cnn_features=16, **TINY)
    agent.learn(256, quiet=True)
    path = export_onnx(agent, tmp_path / "policy.onnx")
    obs, masks = _batch(lambda: gym.make(env_id), 40)
    expected = agent.predict(obs, action_mask=masks) if masks is not None else agent.predict(obs)
    got = run_onnx(path, obs, action_mask=masks)
    np.testing.assert_array_equal(got, expected)
    agent.close()


def test_onnx_of_an_image_policy_in_both_layouts_and_a_matrix_action(tmp_path):
    from pgrad.envs.spaces_demo import FindTheLightEnv
    from tests.integration.test_spaces import MatrixActionEnv

    for name, factory in [
        ("chw", lambda: FindTheLightEnv(size=6, channels_last=False, dtype="float32")),
        ("matrix", MatrixActionEnv),
    ]:
        agent = pgrad.PPO(factory, seed=0, preset="none", cnn_features=16, **TINY)
        agent.learn(256, quiet=True)
        path = export_onnx(agent, tmp_path / f"{name}.onnx")
        obs, _ = _batch(factory, 20)
        np.testing.assert_allclose(run_onnx(path, obs), agent.predict(obs), atol=1e-5)
        agent.close()
