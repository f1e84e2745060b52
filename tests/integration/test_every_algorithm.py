"""What every pgrad algorithm promises, checked once for all of them on tiny budgets:
it trains on every kind of action space and writes the run folder (API and CLI),
the same seed gives the same numbers, save/load gives the same actions (normalisers included and
frozen in evaluation), and spaces no head handles are refused with the supported ones named.

Algorithm-specific behaviour (the loss, the optimisers, the options) is tested in each
algorithm's own file."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.cli import main as cli_main
from pgrad.errors import UnsupportedSpaceError

# (class, tiny settings, steps for the determinism test); each budget spans several updates
ALGORITHMS = [
    pytest.param(pgrad.PPO, dict(n_envs=2, n_steps=64, batch_size=32, n_epochs=2), 384, id="ppo"),
    pytest.param(pgrad.A2C, dict(n_envs=2, n_steps=8), 400, id="a2c"),
    pytest.param(pgrad.ActorCritic, dict(n_envs=2), 200, id="actor-critic"),
    pytest.param(pgrad.Reinforce, dict(), 600, id="reinforce"),
    pytest.param(pgrad.Reinforce, dict(baseline=True), 600, id="reinforce-baseline"),
]


ACTION_KINDS = [
    ("CartPole-v1", {}),
    ("Pendulum-v1", {"action_dist": "gaussian"}),
    ("Pendulum-v1", {"action_dist": "truncated_normal"}),
    ("Pendulum-v1", {"action_dist": "gaussian", "state_dependent_std": True}),
    ("pgrad/ContinuousCartPole-v0", {"action_dist": "truncated_normal", "state_dependent_std": True}),
    ("FrozenLake-v1", {}),  # Discrete observations, one-hot encoded
]
RUN_FILES = ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json")


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
@pytest.mark.parametrize("env_id, overrides", ACTION_KINDS)
def test_trains_on_every_action_kind_and_writes_the_run_folder(algorithm, settings, steps, env_id, overrides, tmp_path):
    agent = algorithm(env_id, seed=0, preset="none", **settings, **overrides)
    agent.learn(steps, run_dir=tmp_path, quiet=True)
    assert agent.updates >= 1 and 0 < agent.total_steps <= steps
    assert all(np.isfinite(row["policy_loss"]) for row in agent.logger.metrics if "policy_loss" in row)
    assert agent.action_space.contains(agent.predict(agent.observation_space.sample()))
    agent.save(tmp_path)
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "policy.json").read_text())["algo"] == agent.name
    assert (tmp_path / "checkpoint" / "state.safetensors").is_file()
    assert any((tmp_path / "tb").iterdir())
    agent.close()


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
def test_cli_trains_lists_and_refuses_bad_values(algorithm, settings, steps, tmp_path, capsys):
    name = next(
        key
        for key, value in pgrad.ALGORITHMS.items()
        if value is algorithm and (key == "reinforce-baseline") == settings.get("baseline", False)
    )
    run = tmp_path / "run"
    overrides = [f"--set={key}={value}" for key, value in settings.items() if key != "baseline"]
    assert (
        cli_main(
            [
                "train",
                name,
                "CartPole-v1",
                "--steps",
                str(steps),
                "--out",
                str(run),
                "--quiet",
                "--eval-episodes",
                "2",
                *overrides,
            ]
        )
        == 0
    )
    for file in RUN_FILES:
        assert (run / file).is_file(), file
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert config["algo"] == name and summary["eval_episodes"] == 2
    loaded = pgrad.load(run)
    assert type(loaded) is algorithm and loaded.name == name
    capsys.readouterr()
    assert cli_main(["list", name]) == 0
    assert "gamma" in capsys.readouterr().out
    assert cli_main(["train", name, "CartPole-v1", "--set", "gamma=1.5"]) == 2
    assert "gamma=1.5 is out of range" in capsys.readouterr().err


def metrics_without_time(agent) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in agent.logger.metrics]


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_same_seed_same_numbers(algorithm, settings, steps, env_id):
    runs = []
    for _ in range(2):
        agent = algorithm(env_id, seed=3, preset="none", **settings)
        agent.learn(steps, quiet=True)
        runs.append((metrics_without_time(agent), [p.detach().clone() for p in agent.policy.parameters()]))
        agent.close()
    (metrics_a, params_a), (metrics_b, params_b) = runs
    assert len(metrics_a) >= 2
    assert json.dumps(metrics_a) == json.dumps(metrics_b)
    for a, b in zip(params_a, params_b, strict=True):
        assert torch.equal(a, b)
    other = algorithm(env_id, seed=4, preset="none", **settings)
    other.learn(steps, quiet=True)
    assert json.dumps(metrics_without_time(other)) != json.dumps(metrics_a)
    other.close()


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
@pytest.mark.parametrize(
    "env_id, overrides", [("CartPole-v1", {}), ("Pendulum-v1", {"action_dist": "truncated_normal"})]
)
def test_save_load_round_trip_gives_identical_actions(algorithm, settings, steps, env_id, overrides, tmp_path):
    scale_rewards = {"normalize_reward": True} if "normalize_reward" in algorithm.Config.__dataclass_fields__ else {}
    agent = algorithm(env_id, seed=0, preset="none", normalize_obs=True, **scale_rewards, **settings, **overrides)
    agent.learn(steps, quiet=True)
    agent.save(tmp_path)
    loaded = pgrad.load(tmp_path)
    assert type(loaded) is algorithm and loaded.name == agent.name
    assert loaded.config == agent.config
    rng = np.random.default_rng(0)
    observations = np.stack([agent.observation_space.sample() for _ in range(50)])
    observations = observations + rng.normal(size=observations.shape)
    np.testing.assert_array_equal(agent.predict(observations), loaded.predict(observations))
    np.testing.assert_array_equal(agent.predict(observations[0]), loaded.predict(observations[0]))
    if agent.policy.critic is not None:
        as_tensor = torch.as_tensor(observations, dtype=torch.float32)
        assert torch.equal(agent.policy.value(as_tensor), loaded.policy.value(as_tensor))
    # the normaliser statistics travelled with the weights ...
    stats = loaded.policy.obs_normalizer.stats
    assert torch.equal(agent.policy.obs_normalizer.stats.mean, stats.mean) and stats.count.item() > 1
    if scale_rewards:
        assert torch.equal(agent.policy.reward_scaler.stats.var, loaded.policy.reward_scaler.stats.var)
        assert loaded.policy.reward_scaler.stats.count.item() > 1
    # ... and stay frozen in evaluation
    before = stats.mean.clone()
    pgrad.evaluate(loaded, env_id, episodes=1)
    assert torch.equal(before, stats.mean)
    agent.close()


class DictActionEnv(gym.Env):
    """An env whose action space (a Dict) no pgrad policy head handles."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Dict({"move": spaces.Discrete(2), "speed": spaces.Box(0.0, 1.0, (1,))})

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {}


class TextKeyEnv(DictActionEnv):
    """A Dict observation with a Text key (as MiniGrid's ``mission``), which pgrad cannot encode."""

    observation_space = spaces.Dict({"mission": spaces.Text(20), "position": spaces.Box(-1.0, 1.0, (2,))})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"mission": "go", "position": np.zeros(2, np.float32)}, {}

    def step(self, action):
        return {"mission": "go", "position": np.zeros(2, np.float32)}, 0.0, True, False, {}


@pytest.mark.parametrize("algorithm, settings, steps", ALGORITHMS)
def test_unsupported_spaces_name_what_is_supported(algorithm, settings, steps):
    with pytest.raises(UnsupportedSpaceError, match=r"Dict.*supported: Discrete \(categorical\), MultiDiscrete"):
        algorithm(DictActionEnv, preset="none", **settings)
    with pytest.raises(UnsupportedSpaceError, match="categorical.*Discrete"):
        algorithm("Pendulum-v1", preset="none", action_dist="categorical", **settings)
    with pytest.raises(UnsupportedSpaceError, match=r"observation key 'mission' is Text.*--set obs_keys=KEY,KEY"):
        algorithm(TextKeyEnv, preset="none", **settings)
    # the way out the message names: leave the Text key out
    agent = algorithm(TextKeyEnv, preset="none", obs_keys=("position",), **settings)
    assert list(agent.observation_space.spaces) == ["position"]
    agent.close()


def shipped_presets() -> list:
    import importlib.util

    from pgrad.config import preset_names
    from pgrad.env_ids import env_package_of

    def missing_package(env_id: str) -> str | None:
        found = env_package_of(env_id)
        module = None if found is None else found[1].module.split(".")[0]
        return module if module is not None and importlib.util.find_spec(module) is None else None

    return [
        pytest.param(
            name,
            env_id,
            id=f"{name}-{env_id}",
            marks=pytest.mark.skipif(
                missing_package(env_id) is not None, reason=f"{missing_package(env_id)} is not installed"
            ),
        )
        for name in pgrad.ALGORITHMS
        for env_id in preset_names(name)
    ]


@pytest.mark.parametrize("name, env_id", shipped_presets())
def test_every_shipped_preset_builds_for_its_env_and_names_its_source(name, env_id):
    """A preset is picked automatically for its env; a typo or an invalid combination in a
    preset file would otherwise only show when a user trains on that env."""
    from pgrad.algos import ALGORITHM_ARGUMENTS
    from pgrad.config import _preset_entry, preset_steps

    entry = _preset_entry(name, env_id)
    assert entry.get("source"), "every preset names where its numbers come from"
    assert preset_steps(name, env_id) is None or preset_steps(name, env_id) > 0
    agent = pgrad.ALGORITHMS[name](env_id, seed=0, **ALGORITHM_ARGUMENTS.get(name, {}))
    assert agent.preset == env_id
    agent.close()
