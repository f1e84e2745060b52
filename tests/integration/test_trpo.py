"""TRPO and NPG (pgrad/algos/trpo.py) and PPO's other objectives (objective=kl_penalty, none):
train, save, load, predict, resume exactly, every space the policy supports, masking, the trust
region kept, the critic leaving the actor's parameters alone, and what is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.trpo import actor_parameters
from pgrad.cli import main as cli_main
from pgrad.errors import ConfigError
from tests.integration.test_resume import _assert_same_run, _stop_and_resume
from tests.integration.test_spaces import ENVS, SMALL_NETWORK, actions_of, sample_observations

TINY = dict(n_envs=2, n_steps=64, batch_size=32, n_critic_epochs=2)
RUN_FILES = ("config.json", "metrics.csv", "episodes.csv", "policy.safetensors", "policy.json", "summary.json")


@pytest.mark.parametrize("algorithm", [pgrad.TRPO, pgrad.NPG], ids=["trpo", "npg"])
@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("CartPole-v1", {}),
        ("Pendulum-v1", {"normalize_reward": True}),
        ("Pendulum-v1", {"action_dist": "truncated_normal", "state_dependent_std": True}),
    ],
    ids=["discrete", "gaussian", "truncated-normal"],
)
def test_trains_saves_loads_and_predicts_the_same(algorithm, env_id, overrides, tmp_path):
    agent = algorithm(env_id, seed=0, preset="none", **TINY, **overrides)
    agent.learn(512, run_dir=tmp_path, quiet=True)
    assert agent.updates == 4 and agent.total_steps == 512
    metrics = agent.logger.metrics[-1]
    assert np.isfinite(metrics["kl"]) and np.isfinite(metrics["value_loss"])
    agent.save(tmp_path)
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "policy.json").read_text())["algo"] == algorithm.name
    loaded = pgrad.load(tmp_path)
    assert type(loaded) is algorithm and loaded.config == agent.config
    observations = np.stack([agent.observation_space.sample() for _ in range(20)])
    np.testing.assert_array_equal(agent.predict(observations), loaded.predict(observations))
    agent.close()


def test_same_seed_same_numbers_other_seed_others():
    def run(seed):
        agent = pgrad.TRPO("Pendulum-v1", seed=seed, preset="none", **TINY)
        agent.learn(384, quiet=True)
        agent.close()
        rows = [{k: v for k, v in row.items() if k not in ("wall_time", "sps")} for row in agent.logger.metrics]
        return json.dumps(rows), [p.detach().clone() for p in agent.policy.parameters()]

    (rows_a, params_a), (rows_b, params_b) = run(3), run(3)
    assert rows_a == rows_b and all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))
    assert run(4)[0] != rows_a


RESUME_CASES = {
    "trpo": ("trpo", "CartPole-v1", 768, 2, TINY),
    "npg-next-step-reward-scaling": (
        "npg",
        "Pendulum-v1",
        768,
        2,
        {**TINY, "normalize_reward": True, "autoreset_mode": "next_step"},
    ),
    "trpo-dict-observation-multidiscrete": ("trpo", "pgrad/MatchDigits-v0", 512, 2, {**TINY, "hidden_sizes": (16,)}),
    "trpo-masked-target-critic": ("trpo", "pgrad/MaskedChoice-v0", 512, 2, {**TINY, "target_critic": "polyak"}),
    # beta is adapted after every update and travels in the checkpoint
    "ppo-kl-penalty": (
        "ppo",
        "CartPole-v1",
        1536,
        3,
        {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 4, "objective": "kl_penalty", "lr": 3e-3},
    ),
    "ppo-no-clipping": (
        "ppo",
        "Pendulum-v1",
        768,
        2,
        {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2, "objective": "none"},
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_stopped_and_resumed_run_equals_the_unstopped_one(case, tmp_path):
    algo, env, steps, stop_after, overrides = RESUME_CASES[case]
    full, resumed = _stop_and_resume(tmp_path, algo, env, steps, stop_after, overrides)
    _assert_same_run(full, resumed, tmp_path / "full", tmp_path / "part")
    if overrides.get("objective") == "kl_penalty":
        # the control: the first resumed update used an adapted beta, not the initial one
        betas = [row["kl_beta"] for row in full.logger.metrics]
        assert betas[stop_after] != 1.0, betas
        assert resumed.kl_beta == full.kl_beta


def test_kl_beta_is_saved_in_the_checkpoint_and_restored(tmp_path):
    agent = pgrad.PPO("CartPole-v1", seed=0, preset="none", n_envs=2, n_steps=64, batch_size=64, objective="kl_penalty")
    agent.learn(256, run_dir=tmp_path, quiet=True)
    assert agent.kl_beta != 1.0  # adapted
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["extra"] == {"kl_beta": agent.kl_beta}
    again = pgrad.PPO("CartPole-v1", seed=0, preset="none", n_envs=2, n_steps=64, batch_size=64, objective="kl_penalty")
    again.load_checkpoint_state(tmp_path / "checkpoint")
    assert again.kl_beta == agent.kl_beta
    agent.close()
    again.close()


@pytest.mark.parametrize("env", ENVS)
def test_every_space_the_policy_supports(env, tmp_path):
    agent = pgrad.TRPO(env, seed=3, n_envs=2, n_steps=32, batch_size=32, n_critic_epochs=2, **SMALL_NETWORK)
    agent.learn(200, quiet=True)
    rows, batch = sample_observations(env, 4)
    actions = actions_of(agent, rows)
    for action in actions:
        shaped = np.asarray(action, dtype=agent.action_space.dtype).reshape(agent.action_space.shape)
        assert agent.action_space.contains(shaped), action
    assert len(agent.predict(batch)) == 4
    agent.save(tmp_path / "run")
    loaded = pgrad.load(tmp_path / "run")
    for expected, got in zip(actions, actions_of(loaded, rows), strict=True):
        np.testing.assert_array_equal(expected, got)
    agent.close()


def invalid_actions(agent) -> int:
    return sum(getattr(env.unwrapped, "invalid_actions", 0) for env in agent.envs.envs)


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_masked_actions_are_never_taken_and_the_choice_is_learnt(algo):
    """MaskedChoice pays 1 per step for the target (8 steps), ends the episode on a masked action.
    Seeds 0-2 of both: from 2.3-2.9 over the first 20 episodes to 4.7-4.9 over the last 20."""
    agent = pgrad.ALGORITHMS[algo]("pgrad/MaskedChoice-v0", seed=0, preset="none", n_envs=4, n_steps=64)
    agent.learn(2048, quiet=True)
    assert agent.action_mask_source == "info" and invalid_actions(agent) == 0
    first, last = (
        float(np.mean([float(r["return"]) for r in part]))
        for part in (agent.logger.episodes[:20], agent.logger.episodes[-20:])
    )
    assert last > first + 1.0, (first, last)
    agent.close()


def test_trpo_keeps_every_step_inside_the_trust_region_and_npg_steps_to_its_radius():
    trpo = pgrad.TRPO("CartPole-v1", seed=0, preset="none", n_envs=2, n_steps=256, max_kl=0.005)
    trpo.learn(2048, quiet=True)
    rows = trpo.logger.metrics
    assert all(row["kl"] <= 0.005 for row in rows)
    assert all(row["kl"] == 0.0 and row["surrogate_gain"] == 0.0 for row in rows if not row["line_search_accepted"])
    assert all(row["surrogate_gain"] > 0.0 for row in rows if row["line_search_accepted"])
    npg = pgrad.NPG("CartPole-v1", seed=0, preset="none", n_envs=2, n_steps=256, max_kl=0.005)
    npg.learn(2048, quiet=True)
    # the quadratic model's KL is max_kl; the measured one is close to it on these small steps
    assert all(0.5 * 0.005 < row["kl"] < 2.0 * 0.005 for row in npg.logger.metrics)
    assert "line_search_accepted" not in npg.logger.metrics[0]
    trpo.close()
    npg.close()


def test_a_step_the_line_search_rejects_leaves_the_actor_as_it_was(monkeypatch):
    import pgrad.algos.trpo as trpo_module

    # a step far outside the trust region: every backtracking point's KL exceeds max_kl
    monkeypatch.setattr(trpo_module, "trust_region_step", lambda direction, fisher_direction, max_kl: 1e3 * direction)
    agent = pgrad.TRPO("CartPole-v1", seed=0, preset="none", line_search_steps=3, **TINY)
    actor_before = [p.detach().clone() for p in agent.actor_params]
    critic_before = [p.detach().clone() for p in agent.policy.critic.parameters()]
    agent.learn(128, quiet=True)
    row = agent.logger.metrics[0]
    assert row["line_search_accepted"] == 0.0 and row["kl"] == 0.0 and row["surrogate_gain"] == 0.0
    assert all(torch.equal(a, p) for a, p in zip(actor_before, agent.actor_params, strict=True))
    assert not all(torch.equal(c, p) for c, p in zip(critic_before, agent.policy.critic.parameters(), strict=True))
    agent.close()


@pytest.mark.parametrize("share_trunk", [False, True])
def test_the_critic_fit_moves_the_critic_only(share_trunk):
    """The natural gradient moves the actor (and a shared trunk); the critic's regression must
    not move them, or the trust region would not bound the policy's change."""
    agent = pgrad.TRPO("CartPole-v1", seed=0, preset="none", share_trunk=share_trunk, **TINY)
    agent.learn(128, quiet=True)
    names = [name for name, p in agent.policy.named_parameters() if any(p is q for q in actor_parameters(agent.policy))]
    assert any(name.startswith("trunk.") for name in names) == share_trunk
    assert not any(name.startswith("critic.") for name in names)
    actor_before = [p.detach().clone() for p in agent.actor_params]
    critic_before = [p.detach().clone() for p in agent.policy.critic.parameters()]
    obs = torch.randn(64, agent.policy.obs_size)
    agent._fit_critic(obs, torch.randn(64) * 10.0)
    assert all(torch.equal(a, p) for a, p in zip(actor_before, agent.actor_params, strict=True))
    assert not any(torch.equal(c, p) for c, p in zip(critic_before, agent.policy.critic.parameters(), strict=True))
    agent.close()


def test_cli_trains_lists_and_refuses_what_is_not_supported(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "trpo", "CartPole-v1", "--steps", "256", "--out", str(run), "--quiet", "--eval-episodes", "2"]
    assert cli_main([*argv, "--preset", "none", "--set", "n_steps=128", "--set", "n_envs=2"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "trpo" and summary["steps"] == 256 and summary["eval_episodes"] == 2
    assert cli_main(["list", "npg"]) == 0
    listing = capsys.readouterr().out
    assert "max_kl" in listing and "line_search_steps" not in listing
    # seed batching is PPO's only, and PPO's with the clipped objective only
    common = ["--steps", "256", "--seeds", "0", "1", "--batched", "--quiet", "--out", str(tmp_path / "b")]
    assert cli_main(["train", "trpo", "CartPole-v1", *common]) == 2
    assert "--batched supports ppo" in capsys.readouterr().err
    assert cli_main(["train", "ppo", "CartPole-v1", *common, "--set", "objective=kl_penalty"]) == 2
    assert "clipped objective only, not objective=kl_penalty" in capsys.readouterr().err
    assert cli_main(["train", "trpo", "CartPole-v1", "--set", "max_kl=0"]) == 2
    assert "max_kl=0.0 is out of range" in capsys.readouterr().err


def test_what_is_refused():
    with pytest.raises(ConfigError, match="updates on the CPU only"):
        pgrad.TRPO("CartPole-v1", preset="none", device="cuda")
    with pytest.raises(ConfigError, match="objective=kl_penalty is implemented for ppo only"):
        pgrad.RecurrentPPO("CartPole-v1", preset="none", objective="kl_penalty")
    with pytest.raises(ConfigError, match="unknown hyperparameter 'line_search_steps'"):
        pgrad.NPG("CartPole-v1", preset="none", line_search_steps=5)
