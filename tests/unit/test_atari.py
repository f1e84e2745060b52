"""ALE/ ids get the standard Atari preprocessing (pgrad/envs/atari.py) and CleanRL's PPO preset.

Needs ale-py (the atari extra) and OpenCV, which the test extra does not install: skipped without them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py", reason="ale-py is not installed (pip install 'pgrad[atari]'; not in the test extra)")
pytest.importorskip(
    "cv2", reason="OpenCV is not installed (pip install opencv-python-headless): the preprocessing needs it"
)

import gymnasium as gym  # noqa: E402

import pgrad  # noqa: E402
from pgrad.config import _preset_entry, preset_names  # noqa: E402
from pgrad.envs import make_env, make_vector_env  # noqa: E402
from pgrad.envs.atari import EpisodicLife, FireReset, atari_env  # noqa: E402
from pgrad.errors import ConfigError  # noqa: E402

BREAKOUT = "ALE/Breakout-v5"
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def wrappers(env: gym.Env) -> list[type]:
    found = []
    while isinstance(env, gym.Wrapper):
        found.append(type(env))
        env = env.env
    return found


@pytest.mark.parametrize("training", [False, True])
def test_preprocessed_observations_are_a_stack_of_four_84x84_grey_frames(training):
    env = make_env(BREAKOUT, atari_training=training)
    assert env.observation_space == FRAMES
    assert env.action_space == gym.spaces.Discrete(4)  # the minimal action set
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    # v5 defaults kept: sticky actions 0.25; the emulator steps single frames, the wrapper skips 4
    assert env.unwrapped._frameskip == 1 and env.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
    frames = info["episode_frame_number"]
    obs, *_ = env.step(0)
    assert env.observation_space.contains(obs) and env.unwrapped.ale.getEpisodeFrameNumber() == frames + 4
    env.close()


def test_training_ends_the_episode_on_a_lost_life_evaluation_plays_the_whole_game():
    # Breakout with only NOOP: FireReset serves the ball, which is then missed ~25 steps later.
    def play(training: bool, steps: int = 400) -> list[tuple[bool, int]]:
        env = make_env(BREAKOUT, atari_training=training)
        env.reset(seed=0)
        ends = []  # (terminated, lives) of every step that ends an episode
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(0)
            if terminated or truncated:
                ends.append((terminated, info["lives"]))
                if len(ends) == 2:
                    break
                frame = env.unwrapped.ale.getEpisodeFrameNumber()
                env.reset()
                if training and info["lives"] > 0:  # the game goes on: the emulator was not reset
                    assert env.unwrapped.ale.lives() == info["lives"]
                    assert env.unwrapped.ale.getEpisodeFrameNumber() > frame
        env.close()
        return ends

    assert play(training=True) == [(True, 4), (True, 3)]
    # evaluation: one game of 5 lives; FIRE is pressed after each lost life, so even a policy
    # that never serves finishes it long before the 27,000-step limit
    assert play(training=False)[0] == (True, 0)


def test_training_clips_rewards_to_their_sign_evaluation_does_not():
    # Space Invaders scores 5 to 30 points per invader: a random policy hits some within 300 steps.
    def rewards(training: bool) -> set[float]:
        env = make_env("ALE/SpaceInvaders-v5", atari_training=training)
        env.reset(seed=0)
        actions = np.random.default_rng(0).integers(env.action_space.n, size=300)
        seen = set()
        for action in actions:
            _, reward, terminated, truncated, _ = env.step(int(action))
            seen.add(float(reward))
            if terminated or truncated:
                env.reset()
        env.close()
        return seen

    assert rewards(training=True) == {0.0, 1.0}
    assert max(rewards(training=False)) > 1.0


def test_wrappers_of_training_and_evaluation_envs():
    training, evaluation = atari_env(BREAKOUT, training=True), atari_env(BREAKOUT)
    assert EpisodicLife in wrappers(training) and gym.wrappers.TransformReward in wrappers(training)
    assert EpisodicLife not in wrappers(evaluation) and gym.wrappers.TransformReward not in wrappers(evaluation)
    assert FireReset in wrappers(training) and FireReset in wrappers(evaluation)  # Breakout waits for FIRE
    assert FireReset not in wrappers(atari_env("ALE/MsPacman-v5"))  # no FIRE action
    for env in (training, evaluation):
        env.close()


def test_raw_frames_stay_reachable():
    env = make_env(BREAKOUT, atari_preprocessing=False)
    assert env.observation_space.shape == (210, 160, 3) and env.unwrapped._frameskip == 4
    assert wrappers(env) == wrappers(gym.make(BREAKOUT))
    env.close()


def test_keywords_that_contradict_the_preprocessing_are_config_errors():
    with pytest.raises(ConfigError, match="frameskip=4.*atari_preprocessing=False"):
        make_env(BREAKOUT, frameskip=4)
    with pytest.raises(ConfigError, match="obs_type='ram'"):
        make_env(BREAKOUT, obs_type="ram")
    with pytest.raises(ConfigError, match="cannot build 'ALE/Breakout-v5'"):
        make_env(BREAKOUT, no_such_option=1)
    # other ALE keywords pass through; max_episode_steps counts agent steps of whole games
    env = make_env("ALE/MsPacman-v5", atari_training=True, repeat_action_probability=0.0, max_episode_steps=3)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]
    env.close()


def test_vector_envs_pass_the_training_flag_and_other_envs_ignore_it():
    envs = make_vector_env(BREAKOUT, 2, seed=0, atari_training=True)
    assert envs.single_observation_space == FRAMES
    assert all(EpisodicLife in wrappers(env) for env in envs.envs)
    envs.close()
    # every id, callable and instance takes the keyword, so training code can always pass it
    for env in ("CartPole-v1", "pgrad.envs.cartpole:ContinuousCartPoleEnv", gym.make("CartPole-v1")):
        make_vector_env(env, 1, seed=0, atari_training=True).close()
    make_env("CartPole-v1", atari_training=True, atari_preprocessing=False).close()


def test_the_cleanrl_preset_is_picked_for_ale_games():
    agent = pgrad.PPO(BREAKOUT)
    try:
        assert agent.preset == BREAKOUT
        c = agent.config
        assert (c.n_envs, c.n_steps, c.batch_size, c.n_epochs) == (8, 128, 256, 4)
        assert (c.lr, c.anneal_lr, c.gamma, c.gae_lambda, c.clip_coef) == (2.5e-4, True, 0.99, 0.95, 0.1)
        assert (c.clip_vloss, c.vf_clip_coef, c.ent_coef, c.vf_coef, c.max_grad_norm) == (True, 0.1, 0.01, 0.5, 0.5)
        assert c.norm_adv and not c.normalize_obs and c.hidden_sizes == () and c.cnn == "nature"
        assert c.cnn_features == 512
        assert agent.observation_space == FRAMES
        assert agent.policy.layout.describe()[0]["image_shape"] == [4, 84, 84]
    finally:
        agent.close()
    games = [name for name in preset_names("ppo") if name.startswith("ALE/")]
    assert len(games) >= 5 and BREAKOUT in games
    assert all(_preset_entry("ppo", game) == _preset_entry("ppo", BREAKOUT) for game in games)
    assert _preset_entry("ppo", BREAKOUT)["steps"] == 10_000_000
    assert _preset_entry("ppo", BREAKOUT)["source"].startswith("CleanRL ppo_atari.py")


def test_agents_train_on_training_envs():
    agent = pgrad.PPO(BREAKOUT, n_envs=1, batch_size=128)
    try:
        assert EpisodicLife in wrappers(agent.envs.envs[0])
    finally:
        agent.close()


def test_ppo_smoke_run_and_evaluation_on_breakout(tmp_path):
    agent = pgrad.PPO(BREAKOUT, seed=0, n_envs=2, n_steps=128, batch_size=128)
    try:
        agent.learn(256, quiet=True)
        assert agent.total_steps == 256
        result = pgrad.evaluate(agent, episodes=1, max_steps_per_episode=100)
        assert result["lengths"] == [100] and result["returns"][0] >= 0.0
        action = agent.predict(make_env(BREAKOUT).reset(seed=0)[0])
        assert 0 <= int(action) < 4
    finally:
        agent.close()


def test_minatar_images_are_accepted():
    pytest.importorskip("minatar", reason="minatar is not installed (pip install 'pgrad[minatar]')")
    agent = pgrad.PPO("MinAtar/Breakout-v1", preset="none", n_steps=8, batch_size=8)
    try:
        assert agent.observation_space.shape == (10, 10, 4) and agent.observation_space.dtype == np.bool_
        (piece,) = agent.policy.layout.describe()
        assert piece["kind"] == "image" and piece["image_shape"] == [4, 10, 10] and piece["channels_last"]
    finally:
        agent.close()
