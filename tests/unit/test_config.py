import dataclasses

import pytest

from pgrad.algos.ppo import PPOConfig
from pgrad.config import parse_set_args, resolve_preset
from pgrad.errors import ConfigError


def test_defaults_are_the_ppo_paper_mujoco_settings():
    c = PPOConfig()
    assert (c.n_steps, c.lr, c.n_epochs, c.batch_size, c.gamma, c.gae_lambda, c.clip_coef) == (
        2048,
        3e-4,
        10,
        64,
        0.99,
        0.95,
        0.2,
    )
    assert c.hidden_sizes == (64, 64) and c.activation == "tanh" and not c.state_dependent_std


def test_strings_from_the_command_line_are_typed():
    c = PPOConfig.build(
        parse_set_args(["lr=1e-3", "n_envs=8", "hidden_sizes=256,256", "anneal_lr=false", "target_kl=0.02"])
    )
    assert (
        c.lr == 1e-3 and c.n_envs == 8 and c.hidden_sizes == (256, 256) and c.anneal_lr is False and c.target_kl == 0.02
    )
    assert PPOConfig.build({"target_kl": "none"}).target_kl is None
    assert PPOConfig.build({"n_steps": "1_024"}).n_steps == 1024


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_envs": 0}, "n_envs=0 is out of range: must be >= 1"),
        ({"n_envs": 1.5}, "n_envs=1.5 is not a valid int"),
        ({"gamma": -0.1}, r"gamma=-0.1 is out of range: must be in \[0.0, 1.0\]"),
        ({"lr": 0}, r"lr=0.0 is out of range: must be > 0.0"),
        ({"anneal_lr": "maybe"}, "anneal_lr='maybe' is not a valid bool"),
        ({"hidden_sizes": "64,x"}, "hidden_sizes='64,x' is not a valid comma-separated ints"),
        ({"hidden_sizes": "64,0"}, "hidden_sizes=.* must be positive ints, or nothing for a linear policy"),
        ({"target_kl": 0}, "target_kl=0.0 is out of range"),
        ({"gama": 0.9}, "unknown hyperparameter 'gama' \\(did you mean gamma\\?\\); valid keys: n_envs, gamma"),
    ],
)
def test_bad_values_are_rejected_with_the_accepted_range(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PPOConfig.build(overrides)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOConfig().lr = 1.0  # type: ignore[misc]


def test_presets_resolve_by_env_and_by_name():
    name, values = resolve_preset("ppo", "CartPole-v1", None)
    assert name == "CartPole-v1" and values["n_envs"] == 8 and "source" not in values and "steps" not in values
    assert resolve_preset("ppo", "CartPole-v1", "none") == (None, {})
    assert resolve_preset("ppo", "Acrobot-v1", None) == (None, {})  # no preset shipped for it
    with pytest.raises(ConfigError, match="unknown preset 'x' for ppo; available: CartPole-v1"):
        resolve_preset("ppo", "Pendulum-v1", "x")
    PPOConfig.build(values)  # every shipped preset is a valid config
