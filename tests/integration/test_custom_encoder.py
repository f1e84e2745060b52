"""A user's torch module as the observation encoder: built from the env's space, saved by name,
rebuilt only from classes the caller passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pgrad
from pgrad.errors import ConfigError, PolicyFileError


class TargetAndClock(nn.Module):
    """For pgrad/MatchDigits-v0: embeds the one-hot target and the time left separately."""

    def __init__(self, observation_space, width: int = 16) -> None:
        super().__init__()
        self.target = nn.Linear(9, width)  # MultiDiscrete([3, 3, 3]) one-hot
        self.clock = nn.Linear(1, 4)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.relu(self.target(obs["target"])), torch.tanh(self.clock(obs["time_left"]))], dim=1)


class WrongShape(nn.Module):
    def __init__(self, observation_space) -> None:
        super().__init__()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(-1)  # 1-D: not (batch, features)


def test_custom_encoder_trains_saves_and_loads_with_its_class(tmp_path):
    agent = pgrad.PPO(
        "pgrad/MatchDigits-v0", seed=0, preset="none", n_envs=4, n_steps=64, encoder=TargetAndClock,
        encoder_kwargs={"width": 32},
    )  # fmt: skip
    assert isinstance(agent.policy.encoder.net, TargetAndClock) and agent.policy.encoder.out_features == 36
    assert agent.policy.actor_body[0].in_features == 36
    assert agent.fast_path_problem() is not None  # the numpy twin covers pgrad's MLPs only
    agent.learn(20_480, quiet=True)
    assert pgrad.evaluate(agent, "pgrad/MatchDigits-v0", episodes=10)["mean_return"] >= 7.0
    agent.save(tmp_path / "run")
    with pytest.raises(PolicyFileError, match=r"custom encoder class 'TargetAndClock'; pass it: pgrad.load\(path"):
        pgrad.load(tmp_path / "run")
    loaded = pgrad.load(tmp_path / "run", custom_objects={"TargetAndClock": TargetAndClock})
    obs = {"target": np.array([[0, 1, 2], [2, 2, 0]]), "time_left": np.array([[1.0], [0.5]], np.float32)}
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    agent.close()


def test_custom_encoder_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"encoder WrongShape returned \(8\,\); expected features of shape"):
        pgrad.PPO("CartPole-v1", preset="none", encoder=WrongShape)
    with pytest.raises(ConfigError, match="encoder must be a torch.nn.Module class"):
        pgrad.PPO("CartPole-v1", preset="none", encoder=len)
    with pytest.raises(ConfigError, match="encoder_kwargs must be JSON data"):
        pgrad.PPO("CartPole-v1", preset="none", encoder=TargetAndClock, encoder_kwargs={"width": object()})
    with pytest.raises(ConfigError, match="ars .* takes no custom encoder"):
        pgrad.ARS("Pendulum-v1", preset="none", encoder=TargetAndClock)


def test_cli_loading_a_custom_encoder_run_is_an_input_error(tmp_path, capsys):
    from pgrad.cli import main

    agent = pgrad.PPO("CartPole-v1", preset="none", encoder=Flat)
    agent.save(tmp_path / "run")
    assert main(["eval", str(tmp_path / "run"), "--episodes", "1"]) == 2
    assert "custom encoder class 'Flat'" in capsys.readouterr().err


class Flat(nn.Module):
    def __init__(self, observation_space, width: int = 8) -> None:
        super().__init__()
        self.linear = nn.Linear(int(np.prod(observation_space.shape)), width)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(obs))
