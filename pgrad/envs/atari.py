"""The standard Atari preprocessing, applied by ``make_env`` to every ``ALE/`` id.

Agents are almost never trained on the Arcade Learning Environment's raw 210x160 colour frames at
60 Hz. The pipeline below is the one of the DQN paper (Mnih et al. 2015, "Human-level control
through deep reinforcement learning", Methods: preprocessing and frame skipping), as revised by
Machado et al. 2018 ("Revisiting the Arcade Learning Environment: Evaluation Protocols and Open
Problems for General Agents") and as CleanRL's ``ppo_atari.py`` builds it (after the Atari wrappers
of OpenAI Baselines and Stable-Baselines3). From the inside out:

1. The emulator, ``gymnasium.make(id, frameskip=1, full_action_space=False)``: one step per frame,
   so that step 3 controls the skipping, and the game's minimal action set (Mnih et al.). Sticky
   actions stay at the v5 default: with probability 0.25 the emulator repeats the previous action
   instead of the new one, the source of randomness Machado et al. (sec. 5) recommend over no-op
   starts alone, and the one their evaluation protocol uses.
2. No-op starts (Mnih et al., evaluation; CleanRL ``NoopResetEnv``): every reset is followed by a
   random number (1 to 30) of do-nothing actions, so episodes do not all start in the same state.
3. Frame skip 4 with max-pooling (Mnih et al.; CleanRL ``MaxAndSkipEnv``): the agent picks an
   action every 4th frame, the action repeats in between and the rewards of the 4 frames add up.
   The observation is the pixel-wise maximum of the last two frames, since some Atari games draw
   objects only on every other frame.
4. Greyscale, shrunk to 84x84 (Mnih et al.'s luminance and 84x84 rescaling; CleanRL
   ``ResizeObservation`` + ``GrayScaleObservation``). Steps 2-4 are Gymnasium's
   ``AtariPreprocessing``, which needs OpenCV (``cv2``) for the resize.
5. Training only, episodic life (Mnih et al.; CleanRL ``EpisodicLifeEnv``): losing a life ends the
   episode for learning (``terminated``: no value is bootstrapped past it), but the game goes on:
   the next reset only steps past the lost life, and the emulator is truly reset on game over.
   Machado et al. (sec. 4.2) advise against using lives, since not every game has them; pgrad keeps
   it in training because CleanRL's PPO settings (the preset) were tuned with it.
6. Press FIRE on reset (Baselines/CleanRL ``FireResetEnv``), for games whose action 1 is FIRE:
   games such as Breakout wait for FIRE to serve the ball, which a fresh policy rarely presses. With
   episodic life this also serves the ball after each lost life. In evaluation (no episodic life)
   FIRE is pressed after each lost life as well, as the training envs did, so that a policy that
   never learned to serve does not stand still until the time limit.
7. Training only, reward clipping to the sign of the reward, -1, 0 or +1 (Mnih et al.; CleanRL
   ``ClipRewardEnv``): one set of hyperparameters then suits games whose scores differ by orders of
   magnitude.
8. The last 4 observations stacked channels-first (Mnih et al.; CleanRL ``FrameStack``): a
   ``Box(0, 255, (4, 84, 84), uint8)`` from which the network can infer motion. pgrad feeds it to
   the Nature CNN and scales it by 1/255 (pgrad/encoders.py, pgrad/observations.py).

Evaluation envs (``training=False``: ``pgrad eval``, ``pgrad.evaluate``, early stopping) skip steps 5
and 7, so that returns are unclipped game scores over whole games, as Machado et al. report them.
Training and evaluation envs have the same observation and action spaces. Time limits: ALE v5 ends
a game after 108,000 frames (30 minutes of play: 27,000 agent steps); ``max_episode_steps`` counts
agent steps here, over whole games (the automatic FIRE presses included).
"""

from __future__ import annotations

import importlib.util
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TimeLimit, TransformReward

from pgrad.errors import ConfigError

__all__ = ["ATARI_PREFIX", "EpisodicLife", "FireReset", "atari_env", "is_atari_id"]

ATARI_PREFIX = "ALE/"  # the ids make_env preprocesses (ale-py's v5 ids)
NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84
STACK_SIZE = 4


def is_atari_id(env_id: str | EnvSpec) -> bool:
    """True for the ids make_env builds through :func:`atari_env` (``ALE/...``)."""
    name = env_id.id if isinstance(env_id, EnvSpec) else env_id
    return isinstance(name, str) and name.startswith(ATARI_PREFIX)


def atari_env(env_id: str | EnvSpec, training: bool = False, **kwargs: Any) -> gym.Env:
    """An ``ALE/`` game with the standard preprocessing (module docstring): observations
    ``Box(0, 255, (4, 84, 84), uint8)``, one step per 4 frames.

    Args:
        env_id: an ``ALE/`` id such as ``"ALE/Breakout-v5"``, or its ``EnvSpec``.
        training: True for the envs an agent learns from: a lost life ends the episode and rewards
            are clipped to their sign. False (evaluation, the default) returns unclipped scores of
            whole games.
        **kwargs: keywords of ``gymnasium.make`` and the ALE env (``render_mode``,
            ``repeat_action_probability``, ``mode``, ``difficulty``, ...), except ``frameskip``:
            the preprocessing skips frames itself. ``max_episode_steps`` counts agent steps of
            whole games, the automatic FIRE presses included.

    Raises:
        ConfigError: OpenCV is missing, or a keyword contradicts the preprocessing.
    """
    name = env_id.id if isinstance(env_id, EnvSpec) else env_id
    raw_advice = f"make_env({name!r}, atari_preprocessing=False) gives the raw env"
    if importlib.util.find_spec("cv2") is None:
        raise ConfigError(
            f"the Atari preprocessing of {name!r} needs OpenCV: pip install opencv-python-headless ({raw_advice})"
        )
    if kwargs.get("frameskip", 1) != 1:
        raise ConfigError(
            f"frameskip={kwargs['frameskip']!r}: the Atari preprocessing of {name!r} skips {FRAME_SKIP} frames "
            f"itself and needs the emulator's frameskip=1; {raw_advice}"
        )
    if kwargs.get("obs_type", "rgb") not in ("rgb", "grayscale"):
        raise ConfigError(
            f"obs_type={kwargs['obs_type']!r}: the Atari preprocessing of {name!r} works on screen frames; {raw_advice}"
        )
    max_episode_steps = kwargs.pop("max_episode_steps", None)
    env = gym.make(env_id, **{"frameskip": 1, "full_action_space": False, **kwargs})
    actions = env.unwrapped.get_action_meanings()
    # Two games (Backgammon, VideoCheckers) have no NOOP action: no no-op starts there.
    noop_max = NOOP_MAX if actions[0] == "NOOP" else 0
    env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE)
    if max_episode_steps is not None:  # inside the episodic-life wrapper: counts steps of whole games
        env = TimeLimit(env, max_episode_steps)
    if training:
        env = EpisodicLife(env)
    if needs_fire(env):
        env = FireReset(env, after_life_loss=not training)
    if training:
        env = TransformReward(env, _reward_sign)
    return FrameStackObservation(env, STACK_SIZE)


def needs_fire(env: gym.Env) -> bool:
    """Whether :class:`FireReset` applies: the game's action 1 is FIRE, followed by another action.

    CleanRL applies it whenever the actions include FIRE; the wrapper it takes from Baselines
    requires FIRE to be action 1 and at least 3 actions, which holds for every such ALE game but
    Backgammon and VideoCheckers (FIRE is their action 0), left without it here.
    """
    actions = env.unwrapped.get_action_meanings()
    return len(actions) >= 3 and actions[1] == "FIRE"


def _reward_sign(reward: SupportsFloat) -> float:
    return float(np.sign(float(reward)))


def _lives(env: gym.Env) -> int:
    return int(env.unwrapped.ale.lives())


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode (``terminated``); the game is only reset once it is over.

    ``reset`` after a lost life takes one no-op step from where the game stands instead of resetting
    the emulator (the life-loss frame may be a transition state). A reset with a seed or options,
    and any reset after the game ended (terminated or truncated), is a true reset.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        actions = env.unwrapped.get_action_meanings()
        self.noop = actions.index("NOOP") if "NOOP" in actions else 0
        self.lives = 0
        self.game_over = True  # the first reset is a true one

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = _lives(self.env)
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self.game_over or seed is not None or options is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(self.noop)
            if terminated or truncated:  # the no-op itself ended the game
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = _lives(self.env)
        return obs, info


class FireReset(gym.Wrapper):
    """Presses FIRE (action 1), then action 2, after every reset, for games that wait for FIRE.

    With ``after_life_loss`` (evaluation, where a lost life does not end the episode), the two
    presses also follow every step that loses a life but not the game; their rewards are added
    to that step's.
    """

    def __init__(self, env: gym.Env, after_life_loss: bool = False) -> None:
        super().__init__(env)
        if not needs_fire(env):
            raise ValueError(
                f"FireReset needs a game whose action 1 is FIRE, got {env.unwrapped.get_action_meanings()}"
            )
        self.after_life_loss = after_life_loss
        self.lives = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self.env.reset(seed=seed, options=options)
        obs, info = None, {}
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(seed=seed, options=options)
        self.lives = _lives(self.env)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = _lives(self.env)
        if self.after_life_loss and not (terminated or truncated) and 0 < lives < self.lives:
            reward = float(reward)
            for fire_action in (1, 2):
                obs, extra, terminated, truncated, info = self.env.step(fire_action)
                reward += float(extra)
                if terminated or truncated:
                    break
            lives = _lives(self.env)
        self.lives = lives
        return obs, reward, terminated, truncated, info
