"""The weight check after every update (``Algorithm._check_finite_weights``): one reduction over
all weights first, the search by name only when it is not finite. Same error, same update."""

from __future__ import annotations

import math

import pytest
import torch

import pgrad
from pgrad.errors import NonFiniteError


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_weight_is_named(bad):
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset=None)
    agent._check_finite_weights()  # finite: nothing
    with torch.no_grad():
        agent.policy.critic[2].weight[3, 5] = bad
    with pytest.raises(NonFiniteError, match=r"parameter critic\.2\.weight became NaN or inf in update 1 \(step 0\)"):
        agent._check_finite_weights()
    agent.close()


def test_finite_weights_whose_sum_overflows_pass():
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset=None)
    with torch.no_grad():
        for parameter in agent.policy.parameters():
            parameter.fill_(3e38)  # finite, but their float32 sum is inf
    agent._check_finite_weights()
    agent.close()


def test_a_weight_made_nan_between_updates_fails_the_next_update():
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset=None, n_envs=2)

    def poison(agent, row):
        if agent.updates == 3:
            with torch.no_grad():
                agent.policy.critic[4].bias[0] = math.nan  # sampling still works; the TD errors are NaN

    # the update after the callback spreads the NaN to every weight; the first by name is reported
    with pytest.raises(
        NonFiniteError, match=r"parameter actor_body\.0\.weight became NaN or inf in update 4 \(step 6\)"
    ):
        agent.learn(100, quiet=True, callback=poison)
    agent.close()
