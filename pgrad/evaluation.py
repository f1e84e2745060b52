"""Evaluate a trained agent: run whole episodes on a fresh env and report their returns."""

from __future__ import annotations

from typing import Any

import numpy as np

from pgrad.envs import env_id_of, make_env
from pgrad.envs.options import ConfiguredEnv
from pgrad.errors import ConfigError
from pgrad.io import atomic_write_bytes
from pgrad.rollout import env_failure

# Episodes of an env without a time limit end here in evaluation: a deterministic policy can walk
# in circles for ever (CliffWalking-v1 does), and an evaluation must return. Gymnasium's own
# envs that have limits use 200 to 1000 steps; this stays far above them.
DEFAULT_MAX_EPISODE_STEPS = 10_000


def write_video(path: str, frames: list[np.ndarray], fps: int) -> None:
    """Encode RGB frames as an H.264 MP4 (imageio's bundled ffmpeg), written atomically."""
    import tempfile
    from pathlib import Path

    import imageio.v2 as imageio

    with tempfile.TemporaryDirectory() as scratch:
        scratch_file = Path(scratch) / "video.mp4"
        # macro_block_size 1: keep the env's frame size instead of padding to multiples of 16
        with imageio.get_writer(scratch_file, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, dtype=np.uint8))
        atomic_write_bytes(path, scratch_file.read_bytes())


def check_spaces_fit(agent: Any, env: Any) -> None:
    """ConfigError unless ``env``'s spaces are those the agent's policy was trained on (the
    observation space restricted to the policy's ``obs_keys``), for ``--env`` of another env."""
    from pgrad.io import space_to_json
    from pgrad.observations import select_keys

    expected_obs, expected_actions = getattr(agent, "observation_space", None), getattr(agent, "action_space", None)
    if expected_obs is None or expected_actions is None:
        return
    keys = getattr(getattr(agent, "config", None), "obs_keys", ())
    try:
        observed = select_keys(env.observation_space, keys)
        fits = space_to_json(observed) == space_to_json(expected_obs)
        fits = fits and space_to_json(env.action_space) == space_to_json(expected_actions)
    except ConfigError:
        fits = False
    if not fits:
        raise ConfigError(
            f"the env's spaces ({env.observation_space}, {env.action_space}) are not the ones the policy was "
            f"trained on ({expected_obs}, {expected_actions}); evaluate on an env with the same spaces"
        )


def evaluate(
    agent: Any,
    env: Any = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 10_000,
    max_steps_per_episode: int | None = None,
    video_path: str | None = None,
) -> dict[str, Any]:
    """Run ``episodes`` episodes with ``agent.predict`` and return the ``pgrad eval --json`` dict.

    The env defaults to the one the agent was trained on. Episode ``i`` is reset with seed
    ``seed + i``, so results are reproducible and differ from the training seeds by default.
    Observation normalisation is applied frozen (``predict`` never updates statistics).
    With ``video_path``, every episode is rendered (``rgb_array``) into one MP4 file there.

    Episodes end at ``max_steps_per_episode`` steps if given; else an env without a time limit
    of its own (no ``max_episode_steps`` in its spec) is cut at :data:`DEFAULT_MAX_EPISODE_STEPS`,
    and the result then says so (``"max_steps_per_episode"`` and ``"cut_episodes"``, how many
    episodes it cut).
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes={episodes!r} must be a positive int")
    env = env if env is not None else agent.env
    if env is None:
        raise ConfigError("no environment to evaluate on: pass one (the agent does not record its env)")
    frames: list[np.ndarray] | None = None
    if video_path is not None:
        if not isinstance(env, (str, ConfiguredEnv)):
            raise ConfigError(
                "--video needs an environment id or entry point, so it can be built with render_mode='rgb_array'"
            )
        env_instance = make_env(env, render_mode="rgb_array")
        frames = []
    else:
        env_instance = make_env(env)
    check_spaces_fit(agent, env_instance)
    spec = getattr(env_instance, "spec", None)
    has_time_limit = spec is not None and spec.max_episode_steps is not None
    cap = max_steps_per_episode
    if cap is None and not has_time_limit:
        cap = DEFAULT_MAX_EPISODE_STEPS
    returns: list[float] = []
    lengths: list[int] = []
    cut_episodes = 0
    masks_in_info = getattr(getattr(agent, "policy", None), "action_mask", None) == "info"
    try:
        for index in range(episodes):
            try:
                obs, info = env_instance.reset(seed=seed + index)
            except Exception as exc:
                raise env_failure(exc, "reset", sum(lengths)) from exc
            episode_return, length, done = 0.0, 0, False
            if frames is not None:
                frames.append(env_instance.render())
            state = None  # a recurrent agent's memory starts empty in every episode
            while not done:
                if getattr(agent, "recurrent", False):
                    action, state = agent.predict(
                        obs, state=state, episode_start=[length == 0], deterministic=deterministic
                    )
                elif masks_in_info:  # the allowed actions the env reported with this observation
                    action = agent.predict(obs, deterministic=deterministic, action_mask=info.get("action_mask"))
                else:
                    action = agent.predict(obs, deterministic=deterministic)
                try:
                    obs, reward, terminated, truncated, info = env_instance.step(action)
                except Exception as exc:
                    raise env_failure(exc, "step", sum(lengths) + length + 1) from exc
                if frames is not None:
                    frames.append(env_instance.render())
                episode_return += float(reward)
                length += 1
                done = terminated or truncated
                if not done and cap is not None and length >= cap:
                    done, cut_episodes = True, cut_episodes + 1
            returns.append(episode_return)
            lengths.append(length)
    finally:
        if env_instance is not env:  # close only what was built here, never the caller's env
            env_instance.close()
    if frames is not None:
        write_video(video_path, frames, fps=int(env_instance.metadata.get("render_fps", 30)))
    result = {
        "env": env_id_of(env),
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": lengths,
    }
    if cut_episodes:
        result.update(max_steps_per_episode=cap, cut_episodes=cut_episodes)
    return result
