"""The shared collector on a scripted env whose episodes end by termination, truncation, or both.

The scripted env makes every quantity predictable: the observation is (episode index, time in
episode), the reward at time t is t + 1, and the critic is replaced by V(obs) = 100 * episode +
time, so bootstrap values identify exactly which observation they came from.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn

from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import RolloutCollector

# Each episode: (length, how it ends). Repeats cyclically.
SCRIPT = [(3, "terminated"), (4, "truncated"), (2, "both"), (5, "truncated")]


class ScriptedEnv(gym.Env):
    """Deterministic episodes of fixed lengths that end as SCRIPT says; records actions received."""

    def __init__(self, offset: int = 0, continuous: bool = False) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = spaces.Box(-2.0, 2.0, (1,), np.float32) if continuous else spaces.Discrete(2)
        self.offset = offset  # envs start at different points of the script
        self.episode = offset - 1
        self.time = 0
        self.received: list[np.ndarray] = []

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.time], dtype=np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.time = 0
        return self._obs(), {}

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        self.time += 1
        length, ending = SCRIPT[self.episode % len(SCRIPT)]
        ended = self.time == length
        terminated = ended and ending in ("terminated", "both")
        truncated = ended and ending in ("truncated", "both")
        return self._obs(), float(self.time), terminated, truncated, {}


class ScriptedCritic(nn.Module):
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (100.0 * obs[:, 0] + obs[:, 1]).unsqueeze(-1)


def expected_transitions(offset: int, n: int):
    """The first n real transitions of an env starting at script position ``offset``."""
    rows = []
    episode = offset
    while len(rows) < n:
        length, ending = SCRIPT[episode % len(SCRIPT)]
        for t in range(1, length + 1):
            ended = t == length
            terminated = ended and ending in ("terminated", "both")
            truncated = ended and ending == "truncated"  # both on one step: terminated wins
            final_value = 100.0 * episode + t  # V of the observation after this step
            rows.append(
                dict(
                    obs=(episode, t - 1),
                    reward=float(t),
                    terminated=terminated,
                    truncated=truncated,
                    next_value=final_value,
                    time=t - 1,
                )
            )
        episode += 1
    return rows[:n]


def make_collector(mode: AutoresetMode, continuous: bool = False, n_envs: int = 2):
    envs = SyncVectorEnv(
        [lambda i=i: ScriptedEnv(offset=i, continuous=continuous) for i in range(n_envs)], autoreset_mode=mode
    )
    policy = ActorCriticPolicy(
        envs.single_observation_space, envs.single_action_space, normalize_obs=False, log_std_init=1.0
    )  # a wide Gaussian so samples fall outside [-1, 1]
    policy.critic = ScriptedCritic()
    return envs, policy, RolloutCollector(envs, policy, seed=0)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_transitions_flags_and_bootstrap_values(mode):
    torch.manual_seed(0)
    envs, policy, collector = make_collector(mode)
    rollouts = [collector.collect(9)[0] for _ in range(3)]  # several rollouts: state carries over
    for env_index in range(2):
        got = []
        for rollout in rollouts:
            for t in range(rollout.valid.shape[0]):
                if rollout.valid[t, env_index]:
                    got.append(
                        dict(
                            obs=tuple(rollout.obs[t, env_index].tolist()),
                            reward=rollout.rewards[t, env_index].item(),
                            terminated=bool(rollout.terminated[t, env_index]),
                            truncated=bool(rollout.truncated[t, env_index]),
                            next_value=rollout.next_values[t, env_index].item(),
                            time=int(rollout.time_in_episode[t, env_index]),
                        )
                    )
        want = expected_transitions(env_index, len(got))
        # Terminated steps never bootstrap, so their next_value is irrelevant; compare the rest.
        for row in got + want:
            if row["terminated"]:
                row["next_value"] = None
        assert got == want
    if mode is AutoresetMode.SAME_STEP:
        assert all(bool(r.valid.all()) for r in rollouts)
    else:  # one reset step per finished episode is dropped
        n_invalid = sum(int((~r.valid).sum()) for r in rollouts)
        n_episodes_ended = sum(int((r.terminated | r.truncated).sum()) for r in rollouts)
        assert n_invalid in (n_episodes_ended, n_episodes_ended - 1, n_episodes_ended - 2)  # last ends may be pending
        assert n_invalid > 0
    envs.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_episode_log_counts_real_transitions(mode):
    envs, policy, collector = make_collector(mode, n_envs=1)
    _, episodes = collector.collect(20)
    lengths = [length for length, _ in SCRIPT] * 3
    assert episodes.lengths == lengths[: len(episodes.lengths)]
    assert episodes.returns == [float(sum(range(1, n + 1))) for n in episodes.lengths]
    assert episodes.steps == list(np.cumsum(episodes.lengths))
    envs.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_raw_actions_stored_env_gets_rescaled(mode):
    torch.manual_seed(1)
    envs, policy, collector = make_collector(mode, continuous=True, n_envs=1)
    rollout, _ = collector.collect(30)
    valid = rollout.valid[:, 0].numpy()
    raw = rollout.actions[:, 0, 0].numpy()[valid]  # NEXT_STEP reset steps never reach env.step
    assert np.abs(raw).max() > 1.0, "the wide Gaussian should sample outside [-1, 1]"
    received = np.array(envs.envs[0].received)[:, 0]
    assert len(received) == valid.sum()
    expected = np.clip(raw, -1, 1) * 2.0  # [-1, 1] rescaled to the env's [-2, 2]
    np.testing.assert_allclose(received, expected, rtol=1e-6)
    # log-probs were computed on the raw sample, not on the clipped one
    dist = policy.distribution(rollout.obs[:, 0])
    np.testing.assert_allclose(
        dist.log_prob(rollout.actions[:, 0]).detach().numpy(), rollout.log_probs[:, 0].numpy(), rtol=1e-5
    )
    envs.close()
