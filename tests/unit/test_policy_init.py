"""ortho_init: pgrad's orthogonal init by default, PyTorch's default init (SB3's ortho_init=False) on request."""

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from pgrad.algos.ppo_lstm import RecurrentActorCriticPolicy
from pgrad.distributions import MIN_STD
from pgrad.policy import ActorCriticPolicy

BOX_OBS = spaces.Box(-np.inf, np.inf, (11,), np.float32)
BOX_ACTIONS = spaces.Box(-1.0, 1.0, (3,), np.float32)


def linears(policy: nn.Module) -> list[nn.Linear]:
    return [m for m in policy.modules() if isinstance(m, nn.Linear)]


def is_orthogonal(weight: torch.Tensor, gain: float) -> bool:
    """Rows (or columns, whichever are fewer) orthonormal up to ``gain``."""
    w = weight / gain
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-4)


def test_default_is_orthogonal_with_pgrads_gains() -> None:
    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, BOX_ACTIONS, hidden_sizes=(64, 64))
    assert is_orthogonal(policy.actor_body[0].weight, math.sqrt(2.0))
    assert is_orthogonal(policy.head.loc.weight, 0.01)
    assert is_orthogonal(policy.critic[-1].weight, 1.0)
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in linears(policy))


def test_torch_default_init_replaces_every_linear_and_keeps_log_std() -> None:
    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, BOX_ACTIONS, hidden_sizes=(64, 64), log_std_init=-2.0)
    policy.use_torch_default_init()
    for layer in linears(policy):
        # PyTorch's Linear default: weight and bias uniform in +-1/sqrt(fan_in), so not orthogonal
        bound = 1.0 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        assert layer.weight.abs().max() > 0.5 * bound
        assert torch.count_nonzero(layer.bias) > 0
        if min(layer.weight.shape) > 1:  # a single row is orthogonal to itself at any scale
            assert not is_orthogonal(layer.weight.detach(), float(layer.weight.detach().norm(dim=1).mean()))
    assert torch.equal(policy.head.std.log_std.detach(), torch.full((3,), -2.0))


def test_torch_default_init_keeps_the_state_dependent_std_layer() -> None:
    torch.manual_seed(0)
    policy = ActorCriticPolicy(BOX_OBS, BOX_ACTIONS, state_dependent_std=True, log_std_init=-1.0)
    std_layer = policy.head.std.linear
    before = {name: tensor.clone() for name, tensor in std_layer.state_dict().items()}
    policy.use_torch_default_init()
    assert all(torch.equal(before[name], tensor) for name, tensor in std_layer.state_dict().items())
    initial_std = policy.head.std(torch.zeros(1, 64))
    assert torch.allclose(initial_std, torch.full((1, 3), math.exp(-1.0)), atol=1e-6)
    assert initial_std.min() > MIN_STD


def test_torch_default_init_reaches_the_lstm() -> None:
    torch.manual_seed(0)
    policy = RecurrentActorCriticPolicy(BOX_OBS, BOX_ACTIONS, lstm_hidden_size=16, hidden_sizes=(16,))
    assert torch.count_nonzero(policy.actor_lstm.bias_ih_l0) == 0  # pgrad's LSTM init: zero biases
    policy.use_torch_default_init()
    assert torch.count_nonzero(policy.actor_lstm.bias_ih_l0) > 0
    assert policy.actor_lstm.weight_hh_l0.abs().max() <= 1.0 / math.sqrt(16)


@pytest.mark.parametrize("ortho_init", [True, False])
def test_the_config_field_reaches_the_policy(ortho_init: bool) -> None:
    from pgrad.algos.ppo import PPO

    agent = PPO("Pendulum-v1", seed=0, preset="none", ortho_init=ortho_init, log_std_init=-2.0)
    try:
        assert is_orthogonal(agent.policy.head.loc.weight, 0.01) is ortho_init
        assert torch.equal(agent.policy.head.std.log_std.detach(), torch.full((1,), -2.0))
    finally:
        agent.envs.close()
