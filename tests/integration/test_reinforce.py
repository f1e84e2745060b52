"""REINFORCE (with and without baseline) end to end on tiny budgets: every action-space kind, the
loss against a hand computation, determinism, save/load, the CLI and bad input."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.cli import main as cli_main
from pgrad.errors import ConfigError, TrainingError

# every action kind is trained in test_every_algorithm.py; here what is REINFORCE's own
ACTION_KINDS = [("CartPole-v1", {}), ("Pendulum-v1", {"action_dist": "truncated_normal"})]


@pytest.mark.parametrize("baseline", [False, True], ids=["plain", "baseline"])
@pytest.mark.parametrize("env_id, overrides", ACTION_KINDS)
def test_budget_updates_and_run_folder(env_id, overrides, baseline, tmp_path):
    agent = pgrad.Reinforce(env_id, seed=0, baseline=baseline, preset="none", **overrides)
    agent.learn(500, run_dir=tmp_path, quiet=True)
    assert agent.total_steps == 500  # one env: collection stops at the budget, even mid-episode
    assert agent.updates >= 1 and len(agent.logger.episodes) >= 1
    first = agent.logger.metrics[0]
    assert first["episodes"] >= 1 and np.isfinite(first["policy_loss"]) and np.isfinite(first["grad_norm"])
    assert ("value_loss" in first) == baseline
    action = agent.predict(agent.observation_space.sample())
    assert agent.action_space.contains(action)
    agent.save(tmp_path)
    for name in ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "policy.json").read_text())["algo"] == (
        "reinforce-baseline" if baseline else "reinforce"
    )
    assert (tmp_path / "checkpoint" / "state.safetensors").is_file()
    agent.close()


@pytest.mark.parametrize("autoreset_mode", ["same_step", "next_step"])
def test_several_envs_and_every_option(autoreset_mode):
    agent = pgrad.Reinforce(
        "CartPole-v1",
        seed=0,
        baseline=True,
        preset="none",
        n_envs=3,
        autoreset_mode=autoreset_mode,
        episodes_per_update=2,
        min_steps_per_update=50,
        gamma_weighting=True,
        normalize_returns=True,
        ent_coef=0.01,
        max_grad_norm=0.5,
        normalize_obs=True,
        anneal_lr=True,
    )
    agent.learn(1_000, quiet=True)
    updates = [row for row in agent.logger.metrics if row["episodes"] > 0]
    assert len(updates) >= 2
    assert updates[0]["lr"] == agent.config.lr and updates[-1]["lr"] < updates[0]["lr"]
    assert agent.value_optimizer.param_groups[0]["lr"] < agent.config.value_lr
    # all but the last: that one may be cut short by the budget
    assert all(row["episodes"] >= 2 and row["batch_steps"] >= 50 for row in updates[:-1])
    assert all(row["grad_norm"] >= 0 for row in updates)
    agent.close()


def _fixed_batch_agent(env, baseline: bool, gamma_weighting: bool, normalize_returns: bool):
    """An agent whose next update uses a batch of two episodes we hold a copy of."""
    agent = pgrad.Reinforce(
        env,
        seed=1,
        baseline=baseline,
        preset="none",
        gamma=0.9,
        gamma_weighting=gamma_weighting,
        normalize_returns=normalize_returns,
        ent_coef=0.0,
    )
    rollout, episodes = agent._ensure_collector().collect_episodes(2, max_steps=10_000)
    agent.collector.collect_episodes = lambda *args, **kwargs: (rollout, episodes)
    return agent, rollout


def _hand_returns(rewards, terminated, truncated, next_values, gamma, bootstrap):
    """G_t by a forward sum over the rest of the episode, in Python floats."""
    returns = []
    for t in range(len(rewards)):
        total, weight = 0.0, 1.0
        for k in range(t, len(rewards)):
            total += weight * rewards[k]
            weight *= gamma
            if terminated[k]:
                break
            if truncated[k]:
                total += weight * next_values[k] if bootstrap else 0.0
                break
        returns.append(total)
    return torch.tensor(returns)


@pytest.mark.parametrize("baseline", [False, True], ids=["plain", "baseline"])
@pytest.mark.parametrize("gamma_weighting", [False, True], ids=["no-gamma-t", "gamma-t"])
@pytest.mark.parametrize("normalize_returns", [False, True], ids=["raw", "normalized"])
def test_loss_is_the_reinforce_estimator(baseline, gamma_weighting, normalize_returns):
    # Pendulum cut at 7 steps: every episode is truncated, so the baseline's bootstrap matters.
    env = lambda: gym.make("Pendulum-v1", max_episode_steps=7)  # noqa: E731
    agent, rollout = _fixed_batch_agent(env, baseline, gamma_weighting, normalize_returns)
    obs, actions = rollout.obs[:, 0], rollout.actions[:, 0]
    with torch.no_grad():
        log_probs = agent.policy.distribution(obs).log_prob(actions)
        values = agent.policy.value(obs) if baseline else torch.zeros(len(obs))
    assert torch.allclose(log_probs, rollout.log_probs[:, 0], atol=1e-5)  # nothing changed since collection
    returns = _hand_returns(
        rollout.rewards[:, 0].tolist(),
        rollout.terminated[:, 0].tolist(),
        rollout.truncated[:, 0].tolist(),
        rollout.next_values[:, 0].tolist(),
        0.9,
        bootstrap=baseline,
    )
    assert int(rollout.truncated.sum()) == 2 and len(returns) == 14
    weights = returns - values
    if normalize_returns:
        weights = (weights - weights.mean()) / (weights.std() + 1e-8)
    if gamma_weighting:
        weights = weights * 0.9 ** rollout.time_in_episode[:, 0].double()
    expected_policy_loss = -(weights * log_probs).mean().item()

    metrics = agent.train_iteration(1.0).metrics
    assert metrics["policy_loss"] == pytest.approx(expected_policy_loss, rel=1e-4, abs=1e-6)
    assert metrics["episodes"] == 2 and metrics["batch_steps"] == 14
    if baseline:
        assert metrics["value_loss"] == pytest.approx((values - returns).pow(2).mean().item(), rel=1e-4)
    agent.close()


def test_update_moves_only_the_policy_or_the_value_network_with_its_own_lr():
    agent, _ = _fixed_batch_agent("CartPole-v1", baseline=True, gamma_weighting=False, normalize_returns=False)
    assert {name: opt.param_groups[0]["lr"] for name, opt in agent.optimizers().items()} == {
        "policy": agent.config.lr,
        "value": agent.config.value_lr,
    }
    actor_params = set(map(id, agent.optimizers()["policy"].param_groups[0]["params"]))
    critic_params = set(map(id, agent.policy.critic.parameters()))
    assert actor_params.isdisjoint(critic_params)
    assert actor_params | critic_params == set(map(id, agent.policy.parameters()))
    agent.close()


def test_checkpoint_restores_both_optimizers(tmp_path):
    agent = pgrad.Reinforce("CartPole-v1", seed=0, baseline=True, preset="none")
    agent.learn(300, quiet=True)
    agent.save_checkpoint(tmp_path)
    other = pgrad.Reinforce("CartPole-v1", seed=5, baseline=True, preset="none")
    other.load_checkpoint_state(tmp_path)
    for name, optimizer in agent.optimizers().items():
        restored = other.optimizers()[name].state_dict()["state"]
        for key, state in optimizer.state_dict()["state"].items():
            assert torch.equal(state["exp_avg"], restored[key]["exp_avg"]), name
    agent.close()
    other.close()


def test_budget_ending_mid_episode_continues_it_next_call():
    agent = pgrad.Reinforce("CartPole-v1", seed=0, preset="none")
    agent.learn(1_000, quiet=True)
    assert agent.total_steps == 1_000
    episodes_before, rows_before = len(agent.logger.episodes), len(agent.logger.metrics)
    running = int(agent.collector.episode_length[0])
    assert running > 0, "seed chosen so that the budget ends mid-episode"
    agent.learn(200, quiet=True)
    first_new = agent.logger.episodes[episodes_before]
    assert first_new["length"] > running  # the episode went on where it stopped ...
    first_update = agent.logger.metrics[rows_before]
    assert (
        first_update["episodes"] == 1 and first_update["batch_steps"] == first_new["length"]
    )  # ... and was learnt from whole
    agent.close()


class NeverEndingEnv(gym.Env):
    """A one-dimensional walk that neither terminates nor has a time limit."""

    observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


def test_no_episode_finished_is_an_error_not_a_silent_run():
    agent = pgrad.Reinforce(NeverEndingEnv, seed=0, preset="none")
    with pytest.raises(
        TrainingError, match=r"^no episode finished within 300 steps; REINFORCE updates only on complete episodes"
    ):
        agent.learn(300, quiet=True)
    assert agent.updates == 0
    agent.close()


def test_no_episode_finished_via_cli_is_exit_1(tmp_path, capsys):
    status = cli_main(
        [
            "train",
            "reinforce",
            "tests.integration.test_reinforce:NeverEndingEnv",
            "--steps",
            "200",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert status == 1
    assert "no episode finished within 200 steps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"episodes_per_update": 0}, "episodes_per_update=0 is out of range"),
        ({"value_lr": 0.0}, "value_lr=0.0 is out of range"),
        ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0 is out of range"),
        ({"baseline": "maybe"}, "baseline='maybe' is not a valid bool"),
        ({"n_steps": 5}, "unknown hyperparameter 'n_steps'.*valid keys"),
    ],
)
def test_bad_hyperparameters_fail_before_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        pgrad.Reinforce("CartPole-v1", preset="none", **overrides)


def test_baseline_given_as_text_selects_the_algorithm_name():
    agent = pgrad.Reinforce("CartPole-v1", preset="none", baseline="true")
    assert agent.name == "reinforce-baseline" and agent.policy.critic is not None
    agent.close()
    agent = pgrad.Reinforce("CartPole-v1", preset="none")
    assert agent.name == "reinforce" and agent.policy.critic is None and "value" not in agent.optimizers()
    agent.close()


def test_cli_trains_reinforce_baseline_and_load_returns_it(tmp_path):
    out = tmp_path / "run"
    status = cli_main(
        [
            "train",
            "reinforce-baseline",
            "CartPole-v1",
            "--steps",
            "400",
            "--out",
            str(out),
            "--quiet",
            "--eval-episodes",
            "1",
        ]
    )
    assert status == 0
    assert json.loads((out / "policy.json").read_text())["algo"] == "reinforce-baseline"
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "reinforce-baseline" and config["config"]["baseline"] is True
    agent = pgrad.load(out)
    assert type(agent) is pgrad.Reinforce and agent.name == "reinforce-baseline"
    assert agent.config.baseline and agent.policy.critic is not None
    assert agent.action_space.contains(agent.predict(np.zeros(4, np.float32)))


def test_cli_rejects_overriding_the_fixed_baseline(tmp_path, capsys):
    status = cli_main(
        [
            "train",
            "reinforce-baseline",
            "CartPole-v1",
            "--steps",
            "100",
            "--set",
            "baseline=false",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert status == 2
    assert "baseline" in capsys.readouterr().err
