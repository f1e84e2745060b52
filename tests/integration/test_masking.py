"""Invalid-action masking (pgrad/masking.py): from info["action_mask"] or an action_mask key, in
collection, the loss, predict, evaluation, saving and resuming."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.distributions import MASKED_LOGIT, CategoricalHead, MultiCategoricalHead
from pgrad.envs.spaces_demo import MaskedChoiceEnv
from pgrad.errors import ConfigError
from pgrad.masking import check_action_mask, info_masks

SETTINGS = dict(preset="none", n_envs=4, n_steps=64)


def invalid_actions(agent) -> int:
    return sum(getattr(env.unwrapped, "invalid_actions", 0) for env in agent.envs.envs)


@pytest.mark.parametrize("seed", [0, 1])
def test_masking_removes_invalid_actions_and_learns_faster(seed):
    """MaskedChoice ends an episode with -1 on an action that is not allowed. Measured over seeds
    0-4 at 1,024 steps: mean training return 2.9-3.1 with masking, -0.6 to -0.7 without, and
    470-520 invalid actions without (none with)."""
    results = {}
    for mode in ("on", "off"):
        agent = pgrad.PPO("pgrad/MaskedChoice-v0", seed=seed, action_mask=mode, **SETTINGS)
        agent.learn(1024, quiet=True)
        mean_return = float(np.mean([float(row["return"]) for row in agent.logger.episodes]))
        results[mode] = (mean_return, invalid_actions(agent), agent)
    masked, unmasked = results["on"], results["off"]
    assert masked[2].action_mask_source == "info" and unmasked[2].action_mask_source is None
    assert masked[1] == 0 and unmasked[1] > 100
    assert masked[0] > unmasked[0] + 2.0, (masked[0], unmasked[0])

    env = MaskedChoiceEnv()  # evaluation reads the mask from the env's info too
    result = pgrad.evaluate(masked[2], env, episodes=10)
    assert getattr(env, "invalid_actions", 0) == 0 and result["mean_return"] > 6.0
    for _, _, agent in results.values():
        agent.close()


def test_mask_in_a_dict_observation_is_read_from_the_observation():
    make = lambda: MaskedChoiceEnv(mask_in_observation=True)  # noqa: E731
    agent = pgrad.PPO(make, seed=0, **SETTINGS)
    assert agent.action_mask_source == "observation"
    assert agent.policy.layout.keys == ["target"]  # the networks never read the mask key
    agent.learn(1024, quiet=True)
    assert invalid_actions(agent) == 0
    env = make()
    obs, _ = env.reset(seed=5)
    for _ in range(20):  # predict reads the key by itself
        action = agent.predict(obs, deterministic=False)
        assert obs["action_mask"][action] == 1
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    agent.close()


def test_predict_takes_the_mask_and_saved_policies_keep_masking(tmp_path):
    agent = pgrad.PPO("pgrad/MaskedChoice-v0", seed=0, **SETTINGS)
    agent.learn(256, quiet=True)
    obs = np.zeros(8, np.float32)
    obs[3] = 1.0
    only = np.zeros(8, bool)
    only[6] = True
    for _ in range(10):
        assert agent.predict(obs, deterministic=False, action_mask=only) == 6
    batch = agent.predict(np.stack([obs, obs]), action_mask=np.stack([only, np.ones(8, bool)]))
    assert batch[0] == 6
    agent.save(tmp_path / "run")
    loaded = pgrad.load(tmp_path / "run")
    assert loaded.policy.action_mask == "info"
    assert loaded.predict(obs, action_mask=only) == 6
    with pytest.raises(ConfigError, match=r"action mask given to predict has shape \(3,\); expected \(8,\)"):
        agent.predict(obs, action_mask=np.ones(3, bool))
    with pytest.raises(ConfigError, match="action mask given to predict has dtype float64"):
        agent.predict(obs, action_mask=np.full(8, 0.5))
    with pytest.raises(ConfigError, match="allows no action"):
        agent.predict(obs, action_mask=np.zeros(8, bool))
    unmasked = pgrad.PPO("CartPole-v1", preset="none")
    with pytest.raises(ConfigError, match="trained without masking"):
        unmasked.predict(np.zeros(4, np.float32), action_mask=np.ones(2, bool))
    agent.close()
    unmasked.close()


class NoValidActionEnv(MaskedChoiceEnv):
    """Reports an all-False mask on its 5th step."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self._t == 5:
            info["action_mask"] = np.zeros(self.n, dtype=bool)
        return obs, reward, False, truncated, info


def test_a_step_without_any_valid_action_is_an_error_with_its_step():
    agent = pgrad.PPO(NoValidActionEnv, seed=0, preset="none", n_envs=1, n_steps=16, batch_size=16)
    with pytest.raises(ConfigError, match=r"action mask in info\['action_mask'\] at step 5 allows no action"):
        agent.learn(16, quiet=True)
    agent.close()


def test_action_mask_on_without_a_mask_and_off_by_choice():
    with pytest.raises(ConfigError, match="action_mask=on, but the env reports no action mask"):
        pgrad.PPO("CartPole-v1", action_mask="on", preset="none")
    with pytest.raises(ConfigError, match="masking applies to Discrete and MultiDiscrete actions"):
        pgrad.PPO("Pendulum-v1", action_mask="on", preset="none")
    agent = pgrad.PPO("pgrad/MaskedChoice-v0", action_mask="off", preset="none")
    assert agent.policy.mask_size == 0 and agent.action_mask_source is None
    agent.close()
    with pytest.raises(ConfigError, match="ppo-lstm does not support invalid-action masking"):
        pgrad.RecurrentPPO("pgrad/MaskedChoice-v0", preset="none")


@pytest.mark.parametrize(
    "algorithm, settings",
    [
        (pgrad.A2C, dict(n_envs=2, n_steps=8)),
        (pgrad.ActorCritic, dict(n_envs=2)),
        (pgrad.Reinforce, dict(baseline=True)),
    ],
)
def test_other_algorithms_mask_too(algorithm, settings):
    agent = algorithm("pgrad/MaskedChoice-v0", seed=0, preset="none", **settings)
    agent.learn(400, quiet=True)
    assert agent.action_mask_source == "info" and invalid_actions(agent) == 0
    agent.close()


def test_masked_heads_give_masked_actions_zero_probability_and_finite_entropy():
    torch.manual_seed(0)
    features = torch.randn(5, 4)
    mask = torch.tensor([[True, False, True]] * 5)
    dist = CategoricalHead(4, 3)(features, mask)
    assert torch.all(dist.probs[:, 1] == 0.0) and torch.isfinite(dist.entropy()).all()
    unmasked_entropy = CategoricalHead(4, 3)(features).entropy()
    assert torch.all(dist.entropy() <= np.log(2) + 1e-6) and torch.all(unmasked_entropy > np.log(2))
    assert not torch.any(dist.sample((100,)) == 1)
    multi = MultiCategoricalHead(4, [2, 3])(features, torch.tensor([[False, True, True, True, False]] * 5))
    samples = multi.sample((50,))
    assert torch.all(samples[..., 0] == 1) and not torch.any(samples[..., 1] == 2)
    assert torch.isfinite(multi.entropy()).all()
    # the gradient of a masked log-prob is finite (no inf - inf in the softmax)
    logits = torch.zeros(1, 3, requires_grad=True)
    from pgrad.distributions import masked_logits

    torch.distributions.Categorical(logits=masked_logits(logits, mask[:1])).log_prob(torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all() and MASKED_LOGIT < -1e7


def test_check_action_mask_and_info_masks():
    space = spaces.MultiDiscrete([2, 3])
    rows = check_action_mask((np.array([1, 1]), np.array([0, 1, 1])), 1, space, "here")
    np.testing.assert_array_equal(rows, [[True, True, False, True, True]])
    with pytest.raises(ConfigError, match=r"action mask here allows no action \(row 0\)"):
        check_action_mask(np.array([1, 1, 0, 0, 0]), 1, space, "here")
    info = {"action_mask": np.array([[True, False], [False, False]]), "_action_mask": np.array([True, False])}
    np.testing.assert_array_equal(info_masks(info, 2, 2), [[True, False], [True, True]])
    assert info_masks({}, 2, 2) is None


def test_resume_restores_the_masks_of_the_running_episodes(tmp_path):
    common = dict(seed=2, **SETTINGS)
    full = pgrad.PPO("pgrad/MaskedChoice-v0", **common)
    full.learn(768, run_dir=tmp_path / "full", quiet=True)
    part = pgrad.PPO("pgrad/MaskedChoice-v0", **common)
    part.learn(768, run_dir=tmp_path / "part", quiet=True, callback=lambda agent, row: agent.updates < 1)
    part.close()
    resumed = pgrad.PPO("pgrad/MaskedChoice-v0", **common)
    resumed.load_checkpoint_state(tmp_path / "part" / "checkpoint", run_dir=tmp_path / "part")
    resumed.learn(768, run_dir=tmp_path / "part", quiet=True, resume=True)
    for name, tensor in full.policy.state_dict().items():
        assert torch.equal(resumed.policy.state_dict()[name], tensor), name
    assert (tmp_path / "full" / "episodes.csv").read_text() == (tmp_path / "part" / "episodes.csv").read_text()


def test_gymnasium_taxi_reports_its_mask_in_info():
    """Taxi-v4 puts ``action_mask`` in its info; pgrad picks it up with the default action_mask=auto."""
    env = gym.make("Taxi-v4")
    assert "action_mask" in env.reset(seed=0)[1]
    agent = pgrad.PPO("Taxi-v4", preset="none", n_envs=2, n_steps=32)
    assert agent.action_mask_source == "info"
    agent.learn(64, quiet=True)
    agent.close()
