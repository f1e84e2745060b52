"""``RolloutCollector.collect_episodes`` on the scripted env of test_rollout.py.

Every episode of the scripted env is predictable: observation (episode index, time), reward
t + 1, a fixed length and ending per SCRIPT position, and the scripted critic V = 100 * episode +
time, so a bootstrap value names the observation it came from. The tests check that only whole
episodes come back, each exactly once, in both autoreset modes and with several envs, and that an
episode still running when a call stops is finished by the next call.
"""

from __future__ import annotations

import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pgrad.errors import ConfigError
from pgrad.policy import ActorCriticPolicy
from pgrad.rollout import RolloutCollector
from tests.integration.test_rollout import SCRIPT, ScriptedCritic, ScriptedEnv

MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def make_collector(mode: AutoresetMode, offsets=(0,), with_critic: bool = True):
    envs = SyncVectorEnv([lambda o=o: ScriptedEnv(offset=o) for o in offsets], autoreset_mode=mode)
    policy = ActorCriticPolicy(
        envs.single_observation_space, envs.single_action_space, normalize_obs=False, with_critic=with_critic
    )
    if with_critic:
        policy.critic = ScriptedCritic()
    return envs, RolloutCollector(envs, policy, seed=0)


def expected_episode(episode: int) -> dict:
    """What the scripted env's episode number ``episode`` must look like in the batch."""
    length, ending = SCRIPT[episode % len(SCRIPT)]
    terminated = ending in ("terminated", "both")  # both on one step: terminated wins
    return dict(
        obs=[(float(episode), float(t)) for t in range(length)],
        rewards=[float(t + 1) for t in range(length)],
        time=list(range(length)),
        terminated=[False] * (length - 1) + [terminated],
        truncated=[False] * (length - 1) + [not terminated],
        # V of the next observation inside the episode; at a truncated end V(final obs); 0 at a terminal end
        next_values=[100.0 * episode + t for t in range(1, length)] + [0.0 if terminated else 100.0 * episode + length],
    )


def split_episodes(rollout) -> list[dict]:
    """Cut a (T, 1) episode batch at its done flags into per-episode lists."""
    assert rollout.obs.shape[1] == 1 and bool(rollout.valid.all())
    episodes, current = [], None
    for t in range(rollout.obs.shape[0]):
        if current is None:
            current = {k: [] for k in ("obs", "rewards", "time", "terminated", "truncated", "next_values")}
        current["obs"].append(tuple(rollout.obs[t, 0].tolist()))
        current["rewards"].append(rollout.rewards[t, 0].item())
        current["time"].append(int(rollout.time_in_episode[t, 0]))
        current["terminated"].append(bool(rollout.terminated[t, 0]))
        current["truncated"].append(bool(rollout.truncated[t, 0]))
        current["next_values"].append(rollout.next_values[t, 0].item())
        if current["terminated"][-1] or current["truncated"][-1]:
            episodes.append(current)
            current = None
    assert current is None, "the batch must end with a finished episode"
    return episodes


@pytest.mark.parametrize("mode", MODES)
def test_one_env_returns_whole_episodes_in_order(mode):
    torch.manual_seed(0)
    envs, collector = make_collector(mode)
    for episode in range(6):
        before = collector.total_transitions
        rollout, log = collector.collect_episodes(1, max_steps=1_000)
        length = SCRIPT[episode % len(SCRIPT)][0]
        assert split_episodes(rollout) == [expected_episode(episode)]
        assert collector.total_transitions - before == length  # a NEXT_STEP reset step is not a transition
        assert log.lengths == [length] and log.returns == [float(sum(range(1, length + 1)))]
    envs.close()


@pytest.mark.parametrize("mode", MODES)
def test_several_episodes_per_call_and_min_transitions(mode):
    envs, collector = make_collector(mode)
    rollout, _ = collector.collect_episodes(3, max_steps=1_000)
    assert split_episodes(rollout) == [expected_episode(e) for e in range(3)]
    # lengths 5, 3, 4, ...: one episode is not enough for 7 transitions, two are (5 + 3)
    rollout, _ = collector.collect_episodes(1, max_steps=1_000, min_transitions=7)
    assert split_episodes(rollout) == [expected_episode(3), expected_episode(4)]
    envs.close()


@pytest.mark.parametrize("mode", MODES)
def test_several_envs_every_episode_once_and_whole_across_calls(mode):
    offsets = (0, 10, 21)  # distinct episode numbers per env, different script positions
    envs, collector = make_collector(mode, offsets=offsets)
    seen, carried_over = [], 0
    for _ in range(8):
        rollout, log = collector.collect_episodes(2, max_steps=1_000)
        episodes = split_episodes(rollout)
        assert len(episodes) >= 2  # envs finishing on the same step may add more
        assert len(log.lengths) == len(episodes)  # all envs started at the first step: none lost
        seen += episodes
        carried_over += len(collector._episode_buffer) > 0  # running episodes wait for the next call
    numbers = [int(episode["obs"][0][0]) for episode in seen]
    assert len(set(numbers)) == len(numbers), "an episode came back twice"
    for number, episode in zip(numbers, seen):
        assert episode == expected_episode(number)
    for offset in offsets:  # each env's episodes in order and none skipped
        own = [n for n in numbers if offset <= n < offset + 10]
        assert own == list(range(offset, offset + len(own))) and len(own) >= 3
    assert carried_over > 0, "the test should make episodes span calls"
    envs.close()


@pytest.mark.parametrize("mode", MODES)
def test_budget_reached_mid_episode_keeps_it_for_the_next_call(mode):
    envs, collector = make_collector(mode)
    rollout, log = collector.collect_episodes(1, max_steps=2)  # the first episode lasts 3 steps
    assert rollout.obs.shape == (0, 1, 2) and rollout.rewards.shape == (0, 1)
    assert log.lengths == [] and collector.total_transitions == 2
    rollout, log = collector.collect_episodes(1, max_steps=2)
    assert split_episodes(rollout) == [expected_episode(0)]
    assert collector.total_transitions == 3  # stopped right after the episode ended
    envs.close()


@pytest.mark.parametrize("mode", MODES)
def test_episodes_partly_consumed_by_collect_are_logged_not_returned(mode):
    envs, collector = make_collector(mode)
    collector.collect(2)  # two steps of episode 0 go to a fixed-size rollout
    rollout, log = collector.collect_episodes(1, max_steps=1_000)
    assert log.lengths[0] == 3  # episode 0 ended and is logged ...
    assert split_episodes(rollout) == [expected_episode(1)]  # ... but only whole episode 1 is returned
    envs.close()


def test_without_a_critic_next_values_are_zero():
    envs, collector = make_collector(AutoresetMode.SAME_STEP, with_critic=False)
    rollout, _ = collector.collect_episodes(4, max_steps=1_000)
    assert rollout.obs.shape[0] == sum(length for length, _ in SCRIPT)
    assert torch.equal(rollout.next_values, torch.zeros_like(rollout.next_values))
    assert torch.equal(rollout.values, torch.zeros_like(rollout.values))
    envs.close()


def test_log_probs_belong_to_the_stored_actions():
    torch.manual_seed(3)
    envs, collector = make_collector(AutoresetMode.NEXT_STEP, offsets=(0, 1))
    rollout, _ = collector.collect_episodes(3, max_steps=1_000)
    dist = collector.policy.distribution(rollout.obs[:, 0])
    torch.testing.assert_close(dist.log_prob(rollout.actions[:, 0]), rollout.log_probs[:, 0])
    envs.close()


def test_bad_arguments_are_one_line_errors():
    envs, collector = make_collector(AutoresetMode.SAME_STEP)
    with pytest.raises(ConfigError, match="n_episodes >= 1"):
        collector.collect_episodes(0, max_steps=10)
    with pytest.raises(ConfigError, match="max_steps >= 1"):
        collector.collect_episodes(1, max_steps=0)
    envs.close()
