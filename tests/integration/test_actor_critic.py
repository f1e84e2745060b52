"""One-step actor-critic end to end: every action-space kind, the update itself, determinism,
save/load, CLI and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos import actor_critic as actor_critic_module
from pgrad.errors import ConfigError
from pgrad.returns import gae


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", {"optimizer": "sgd", "gamma_weighting": True, "ent_coef": 0.01, "max_grad_norm": 1.0}),
        ("CartPole-v1", {"autoreset_mode": "next_step", "n_envs": 1}),  # reset steps are skipped
    ],
)
def test_options_smoke(env_id, overrides, tmp_path):
    agent = pgrad.ActorCritic(env_id, seed=0, preset="none", **{"n_envs": 2, **overrides})
    agent.learn(128, run_dir=tmp_path, quiet=True)
    assert 0 < agent.total_steps <= 128
    action = agent.predict(agent.observation_space.sample())
    assert agent.action_space.contains(action)
    row = agent.logger.metrics[-1]
    for key in ("policy_loss", "value_loss", "entropy", "td_error_mean"):
        assert np.isfinite(row[key]), key
    agent.save(tmp_path)
    for name in ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoint" / "state.safetensors").is_file()
    agent.close()


def test_one_update_per_vector_step():
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset="none", n_envs=3)
    agent.learn(300, quiet=True)
    assert agent.total_steps == 300 and agent.updates == 100
    agent.close()


def _record_updates(agent, monkeypatch, numpy_update: bool) -> list[dict]:
    """What each update of ``agent`` learns from: its rollout, the actor's per-sample weights, the
    critic's v(S) and targets, recorded from the autograd update's loss functions or from the
    numpy update's gradient call (pgrad/numpy_twin/gradient.py)."""
    agent.use_numpy_gradient = numpy_update
    seen = []
    collect = agent._ensure_collector().collect

    def recording_collect(n_steps):
        rollout, episodes = collect(n_steps)
        seen.append({"rollout": rollout})
        return rollout, episodes

    monkeypatch.setattr(agent.collector, "collect", recording_collect)
    if numpy_update:
        step_gradient = actor_critic_module.NumpyPolicyGradient.step_gradient

        def recording_step_gradient(self, obs, actions, old_log_probs, old_values, advantages, returns, **options):
            seen[-1]["actor_weights"] = torch.from_numpy(advantages.copy())
            seen[-1]["critic_targets"] = torch.from_numpy(returns.copy())
            with torch.no_grad():  # v(S) with the weights the update starts from
                seen[-1]["critic_values"] = agent.policy.value(torch.from_numpy(obs))
            return step_gradient(self, obs, actions, old_log_probs, old_values, advantages, returns, **options)

        monkeypatch.setattr(actor_critic_module.NumpyPolicyGradient, "step_gradient", recording_step_gradient)
    else:
        pg_loss, v_loss = actor_critic_module.policy_gradient_loss, actor_critic_module.value_loss

        def recording_pg_loss(log_probs, weights):
            seen[-1]["actor_weights"] = weights.clone()
            return pg_loss(log_probs, weights)

        def recording_v_loss(values, targets):
            seen[-1]["critic_values"], seen[-1]["critic_targets"] = values.detach().clone(), targets.clone()
            return v_loss(values, targets)

        monkeypatch.setattr(actor_critic_module, "policy_gradient_loss", recording_pg_loss)
        monkeypatch.setattr(actor_critic_module, "value_loss", recording_v_loss)
    return seen


@pytest.mark.parametrize("numpy_update", [True, False], ids=["numpy", "autograd"])
def test_update_is_the_books_one_step_actor_critic(monkeypatch, numpy_update):
    """delta = R + gamma v(S') - v(S) (v(S') = 0 only if terminal), the critic regresses on
    R + gamma v(S'), and with gamma_weighting the actor's weight is I * delta, I = gamma^t
    restarting at 1 with every episode (Sutton & Barto 2018, sec. 13.5)."""
    gamma = 0.9
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset="none", n_envs=2, gamma=gamma, gamma_weighting=True)
    seen = _record_updates(agent, monkeypatch, numpy_update)
    agent.learn(200, quiet=True)

    previous_ended = torch.ones(2, dtype=torch.bool)  # the first step of all starts an episode
    expected_time = torch.zeros(2, dtype=torch.long)
    for record in seen:
        r = record["rollout"]
        assert r.obs.shape[0] == 1  # one step per update
        t = r.time_in_episode[0]
        expected_time = torch.where(previous_ended, 0, expected_time + 1)
        assert torch.equal(t, expected_time)
        bootstrap = torch.where(r.terminated[0], 0.0, gamma * r.next_values[0])
        td_target = r.rewards[0] + bootstrap
        delta = td_target - r.values[0]
        torch.testing.assert_close(record["critic_targets"], td_target)
        torch.testing.assert_close(record["critic_values"], r.values[0])  # v(S) with the weights that acted
        torch.testing.assert_close(record["actor_weights"], gamma ** t.to(torch.float32) * delta)
        previous_ended = r.terminated[0] | r.truncated[0]
    assert any(record["rollout"].terminated.any() for record in seen)  # episodes did end in between
    assert max(int(record["rollout"].time_in_episode.max()) for record in seen) >= 10
    agent.close()


@pytest.mark.parametrize("numpy_update", [True, False], ids=["numpy", "autograd"])
def test_without_gamma_weighting_the_actor_weight_is_the_td_error(monkeypatch, numpy_update):
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset="none", n_envs=2)
    seen = _record_updates(agent, monkeypatch, numpy_update)
    agent.learn(60, quiet=True)
    assert len(seen) == 30
    for record in seen:
        r = record["rollout"]
        delta, _ = gae(r.rewards, r.values, r.next_values, r.terminated, r.truncated, gamma=0.99, lam=0.0)
        torch.testing.assert_close(record["actor_weights"], delta[0], rtol=0, atol=0)  # the same arithmetic
    agent.close()


def test_actor_and_critic_have_their_own_step_sizes():
    agent = pgrad.ActorCritic("CartPole-v1", preset="none", lr=1e-4, value_lr=5e-3)
    assert agent.actor_optimizer.param_groups[0]["lr"] == 1e-4 and agent.critic_optimizer.param_groups[0]["lr"] == 5e-3
    critic_ids = {id(p) for p in agent.policy.critic.parameters()}
    assert critic_ids == {id(p) for p in agent.critic_parameters}
    assert not critic_ids & {id(p) for p in agent.actor_parameters}
    assert len(agent.actor_parameters) + len(agent.critic_parameters) == len(list(agent.policy.parameters()))
    agent.close()


def test_checkpoint_restores_both_optimizers(tmp_path):
    agent = pgrad.ActorCritic("CartPole-v1", seed=0, preset="none", n_envs=2)
    agent.learn(64, quiet=True)
    agent.save_checkpoint(tmp_path / "checkpoint")
    fresh = pgrad.ActorCritic("CartPole-v1", seed=0, preset="none", n_envs=2)
    fresh.load_checkpoint_state(tmp_path / "checkpoint")
    for p_saved, p_loaded in zip(agent.actor_parameters, fresh.actor_parameters):
        assert torch.equal(
            agent.actor_optimizer.state[p_saved]["exp_avg_sq"], fresh.actor_optimizer.state[p_loaded]["exp_avg_sq"]
        )
    for p_saved, p_loaded in zip(agent.critic_parameters, fresh.critic_parameters):
        assert torch.equal(
            agent.critic_optimizer.state[p_saved]["exp_avg_sq"], fresh.critic_optimizer.state[p_loaded]["exp_avg_sq"]
        )
    agent.close()
    fresh.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"value_lr": 0.0}, "value_lr=0.0 is out of range"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is out of range: must be one of 'adam', 'sgd'"),
        ({"gamma_weighting": "maybe"}, "gamma_weighting='maybe' is not a valid bool"),
        ({"n_steps": 5}, "unknown hyperparameter 'n_steps'"),
    ],
)
def test_bad_hyperparameters_fail_before_work(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        pgrad.ActorCritic("CartPole-v1", preset="none", **overrides)
