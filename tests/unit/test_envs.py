"""pgrad.envs: the bundled environments, make_env / make_vector_env, and the MuJoCo message filter."""

import math
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

import pgrad.envs as pgrad_envs
from pgrad.env_ids import register_bundled_envs
from pgrad.envs import REGISTERED_IDS, env_id_of, make_env, make_vector_env
from pgrad.envs.mujoco_messages import filtered_mujoco_warnings
from pgrad.errors import ConfigError

torch.set_num_threads(1)

CONTINUOUS = "pgrad/ContinuousCartPole-v0"


def continuous_cartpole(state=None, **kwargs):
    env = make_env(CONTINUOUS, **kwargs)
    env.reset(seed=0)
    if state is not None:
        env.unwrapped.state = np.array(state, dtype=np.float64)
    return env


# ---------------------------------------------------------------- ContinuousCartPole


def test_continuous_cartpole_spaces():
    env = make_env(CONTINUOUS)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    limit = math.radians(20)
    expected_high = np.array([4.8, np.inf, 2 * limit, np.inf], dtype=np.float32)
    assert env.observation_space == gym.spaces.Box(-expected_high, expected_high, dtype=np.float32)
    observation, _ = env.reset(seed=1)
    assert observation.shape == (4,) and observation.dtype == np.float32
    assert isinstance(env.unwrapped, CartPoleEnv)  # inherits rendering
    assert env.spec.max_episode_steps == 500


def test_continuous_cartpole_reward_is_one_including_the_failing_step():
    env = continuous_cartpole()
    rewards, terminated = [], False
    while not terminated:
        _, reward, terminated, truncated, _ = env.step(np.array([1.0], dtype=np.float32))
        assert not truncated
        rewards.append(reward)
    assert len(rewards) > 1 and set(rewards) == {1.0}


def test_continuous_cartpole_terminates_past_20_degrees_not_12():
    angle = math.radians(19.9)
    # Falling past 20 degrees (theta grows by tau * theta_dot = 0.02 rad).
    env = continuous_cartpole([0.0, 0.0, angle, 1.0])
    observation, reward, terminated, _, _ = env.step(np.zeros(1, np.float32))
    assert terminated and reward == 1.0 and observation[2] > math.radians(20)
    env = continuous_cartpole([0.0, 0.0, -angle, -1.0])
    assert env.step(np.zeros(1, np.float32))[2]
    # Between CartPole's 12 degrees and 20 the episode goes on.
    env = continuous_cartpole([0.0, 0.0, math.radians(15), 0.0])
    assert not env.step(np.zeros(1, np.float32))[2]


def test_continuous_cartpole_terminates_past_2_4_metres():
    env = continuous_cartpole([2.39, 1.0, 0.0, 0.0])
    observation, _, terminated, _, _ = env.step(np.zeros(1, np.float32))
    assert terminated and observation[0] > 2.4
    env = continuous_cartpole([-2.39, -1.0, 0.0, 0.0])
    assert env.step(np.zeros(1, np.float32))[2]
    env = continuous_cartpole([2.3, 1.0, 0.0, 0.0])
    assert not env.step(np.zeros(1, np.float32))[2]


def test_continuous_cartpole_truncates_at_500_steps():
    env = continuous_cartpole()
    for step in range(1, 501):
        env.unwrapped.state = np.zeros(4)  # keep it balanced so only the time limit can end it
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert not terminated
        assert truncated == (step == 500)


def test_positive_action_pushes_the_cart_right_and_is_clipped():
    right = continuous_cartpole(np.zeros(4)).step(np.array([0.5], np.float32))[0]
    left = continuous_cartpole(np.zeros(4)).step(np.array([-0.5], np.float32))[0]
    assert right[1] > 0 > left[1]  # cart velocity
    assert right[3] < 0 < left[3]  # the pole tips the other way
    # Out-of-range actions act as the nearest bound.
    clipped = continuous_cartpole(np.zeros(4)).step(np.array([5.0], np.float32))[0]
    full = continuous_cartpole(np.zeros(4)).step(np.array([1.0], np.float32))[0]
    np.testing.assert_array_equal(clipped, full)
    # Force is linear in the action: half the action, half the cart acceleration from rest.
    np.testing.assert_allclose(right[1], full[1] / 2, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_cartpole_v1_under_full_pushes_within_12_degrees(seed):
    """Action +1 / -1 is CartPole's push right / left, state for state, until CartPole fails."""
    ours, reference = make_env(CONTINUOUS), gym.make("CartPole-v1")
    ours_obs, _ = ours.reset(seed=seed)
    reference_obs, _ = reference.reset(seed=seed)
    np.testing.assert_array_equal(ours_obs, reference_obs)
    pushes = np.random.default_rng(seed).integers(0, 2, size=500)
    for step, push in enumerate(pushes):
        ours_obs, ours_reward, ours_terminated, _, _ = ours.step(np.array([2.0 * push - 1.0], np.float32))
        reference_obs, reference_reward, reference_terminated, _, _ = reference.step(int(push))
        np.testing.assert_array_equal(ours_obs, reference_obs, err_msg=f"step {step}")
        np.testing.assert_array_equal(ours.unwrapped.state, reference.unwrapped.state)
        assert ours_reward == reference_reward == 1.0
        if reference_terminated:
            break
        assert not ours_terminated
    assert reference_terminated, "CartPole should fail under random pushes"
    if abs(reference_obs[0]) <= 2.4:  # it failed on the angle: between 12 and 20 degrees we go on
        assert math.radians(12) < abs(reference_obs[2])
        assert ours_terminated == (abs(ours_obs[2]) > math.radians(20))


# ---------------------------------------------------------------- NoVel variants


@pytest.mark.parametrize(
    "env_id, original_id, kept",
    [("pgrad/CartPoleNoVel-v1", "CartPole-v1", [0, 2]), ("pgrad/PendulumNoVel-v1", "Pendulum-v1", [0, 1])],
)
def test_velocity_masked_envs(env_id, original_id, kept):
    env, original = make_env(env_id), gym.make(original_id)
    assert env.observation_space.shape == (2,)
    assert env.observation_space == gym.spaces.Box(
        original.observation_space.low[kept], original.observation_space.high[kept], dtype=np.float32
    )
    assert env.action_space == original.action_space
    assert env.spec.max_episode_steps == gym.spec(original_id).max_episode_steps
    observation, _ = env.reset(seed=5)
    original_observation, _ = original.reset(seed=5)
    np.testing.assert_array_equal(observation, original_observation[kept])
    action = original.action_space.sample()
    np.testing.assert_array_equal(env.step(action)[0], original.step(action)[0][kept])
    assert env.observation_space.contains(observation)
    # The mask belongs to the registered env: the spec is the registered one, and rebuilds it.
    assert env.spec == gym.spec(env_id) and not env.spec.additional_wrappers
    rebuilt = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
    assert rebuilt.reset(seed=0)[0].shape == (2,)


def test_bundled_ids_are_registered_once():
    assert set(REGISTERED_IDS) == {
        CONTINUOUS,
        "pgrad/CartPoleNoVel-v1",
        "pgrad/PendulumNoVel-v1",
        "pgrad/MatchDigits-v0",
        "pgrad/MatchBits-v0",
        "pgrad/FindTheLight-v0",
        "pgrad/MaskedChoice-v0",
    }
    assert all(env_id in gym.registry for env_id in REGISTERED_IDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium warns when overriding an id
        register_bundled_envs(gym)


def test_mujoco_gl_defaults_to_egl():
    assert os.environ.get("MUJOCO_GL")  # "egl" unless the user chose another backend


# ---------------------------------------------------------------- make_env


def test_make_env_accepts_every_kind_of_env():
    assert env_id_of(make_env("CartPole-v1")) == "CartPole-v1"
    assert env_id_of(make_env(" CartPole-v1 ")) == "CartPole-v1"
    assert env_id_of(make_env(CONTINUOUS)) == CONTINUOUS
    assert env_id_of(make_env(gym.spec("Pendulum-v1"))) == "Pendulum-v1"

    from_entry_point = make_env("gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    assert isinstance(from_entry_point, CartPoleEnv)
    from_function = make_env("pgrad.envs.novel:cartpole_no_velocity")
    assert from_function.observation_space.shape == (2,)
    from_module_and_id = make_env("pgrad.envs:pgrad/CartPoleNoVel-v1")  # gymnasium.make's syntax
    assert env_id_of(from_module_and_id) == "pgrad/CartPoleNoVel-v1"

    assert isinstance(make_env(lambda: gym.make("Acrobot-v1")).unwrapped, gym.envs.classic_control.AcrobotEnv)
    assert isinstance(make_env(CartPoleEnv), CartPoleEnv)  # a class is a callable too
    instance = gym.make("MountainCar-v0")
    assert make_env(instance) is instance


def test_make_env_passes_render_mode_and_keywords():
    assert make_env("CartPole-v1", render_mode="rgb_array").render_mode == "rgb_array"
    assert make_env("CartPole-v1", max_episode_steps=7).spec.max_episode_steps == 7
    assert make_env(CartPoleEnv, sutton_barto_reward=True)._sutton_barto_reward
    assert (
        make_env("gymnasium.envs.classic_control.cartpole:CartPoleEnv", render_mode="rgb_array").render_mode
        == "rgb_array"
    )


def test_rendered_frame_of_continuous_cartpole():
    env = make_env(CONTINUOUS, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (400, 600, 3) and frame.dtype == np.uint8


def test_unknown_id_suggests_close_names():
    with pytest.raises(ConfigError) as info:
        make_env("CartPol-v1")
    message = str(info.value)
    assert message.startswith("unknown environment 'CartPol-v1'; did you mean CartPole-v1")
    assert "module:Class" in message and "\n" not in message
    with pytest.raises(ConfigError, match="did you mean pgrad/ContinuousCartPole-v0"):
        make_env("pgrad/ContinuousCartpole-v0")


@pytest.mark.parametrize(
    "entry_point, expected",
    [
        ("no_such_module_xyz:Env", "cannot import module 'no_such_module_xyz'"),
        ("gymnasium.envs.classic_control.cartpole:NoSuchEnv", "has no attribute 'NoSuchEnv'"),
        ("math:pi", "not a class or function"),
        ("os:getcwd", "returned a str, not a gymnasium.Env"),
        (":CartPoleEnv", "bad entry point"),
    ],
)
def test_bad_entry_points(entry_point, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        make_env(entry_point)
    assert "\n" not in str(info.value)


def test_other_bad_inputs():
    with pytest.raises(ConfigError, match="unexpected keyword argument 'no_such_option'"):
        make_env("CartPole-v1", no_such_option=1)
    with pytest.raises(ConfigError, match="cannot build an environment from int"):
        make_env(3)
    with pytest.raises(ConfigError, match="cannot be applied to an environment instance"):
        make_env(gym.make("CartPole-v1"), max_episode_steps=3)
    with pytest.raises(ConfigError, match="render_mode"):
        make_env(gym.make("CartPole-v1"), render_mode="rgb_array")


def test_missing_dependency_is_a_config_error():
    # v2/v3 MuJoCo ids are still registered but need mujoco-py, which Gymnasium 1.x dropped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ConfigError, match="HalfCheetah-v2"):
            make_env("HalfCheetah-v2")


def test_env_id_of():
    assert env_id_of("CartPole-v1") == "CartPole-v1"
    assert env_id_of(CartPoleEnv) == "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
    assert env_id_of(CartPoleEnv()) == "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
    assert env_id_of(pgrad_envs.novel.cartpole_no_velocity) == "pgrad.envs.novel:cartpole_no_velocity"
    assert env_id_of(make_vector_env("CartPole-v1", 1, seed=0)).endswith("SyncVectorEnv")


# ---------------------------------------------------------------- make_vector_env


@pytest.mark.parametrize("vectorization, vector_class", [("sync", SyncVectorEnv), ("async", AsyncVectorEnv)])
@pytest.mark.parametrize("autoreset_mode", ["same_step", "next_step"])
def test_make_vector_env(vectorization, vector_class, autoreset_mode):
    envs = make_vector_env(
        CONTINUOUS,
        n_envs=2,
        seed=0,
        vectorization=vectorization,
        autoreset_mode=autoreset_mode,
        max_episode_steps=2,
    )
    try:
        assert isinstance(envs, vector_class) and envs.num_envs == 2
        expected_mode = AutoresetMode.SAME_STEP if autoreset_mode == "same_step" else AutoresetMode.NEXT_STEP
        assert envs.metadata["autoreset_mode"] == expected_mode
        assert envs.single_action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        envs.reset(seed=0)
        zero = np.zeros((2, 1), np.float32)
        envs.step(zero)
        _, _, _, truncated, infos = envs.step(zero)
        assert truncated.all()  # max_episode_steps reached every copy
        if autoreset_mode == "same_step":
            assert "final_obs" in infos  # the final observation rides along, the reset one is returned
        else:
            _, rewards, terminated, truncated, _ = envs.step(zero)  # the reset step
            assert (rewards == 0).all() and not terminated.any() and not truncated.any()
    finally:
        envs.close()


def test_make_vector_env_seeds_the_space_samplers_only():
    first = make_vector_env("CartPole-v1", 3, seed=11)
    second = make_vector_env("CartPole-v1", 3, seed=11)
    np.testing.assert_array_equal(first.action_space.sample(), second.action_space.sample())


def test_make_vector_env_bad_options():
    with pytest.raises(ConfigError, match="accepted: sync, async"):
        make_vector_env("CartPole-v1", 2, 0, vectorization="threads")
    with pytest.raises(ConfigError, match="accepted: same_step, next_step"):
        make_vector_env("CartPole-v1", 2, 0, autoreset_mode="disabled")
    with pytest.raises(ConfigError, match="n_envs"):
        make_vector_env("CartPole-v1", 0, 0)
    with pytest.raises(ConfigError, match="pass an id or a callable"):
        make_vector_env(gym.make("CartPole-v1"), 2, 0)
    with pytest.raises(ConfigError, match="did you mean CartPole-v1"):
        make_vector_env("CartPol-v1", 2, 0, vectorization="async")
    with pytest.raises(ConfigError, match="use vectorization='sync'"):
        make_vector_env(gym.make("CartPole-v1"), 1, 0, vectorization="async")
    single = make_vector_env(gym.make("CartPole-v1"), 1, 0)  # one instance, one copy: fine
    assert single.num_envs == 1
    assert (
        make_vector_env("CartPole-v1", 1, 0, autoreset_mode=AutoresetMode.NEXT_STEP).metadata["autoreset_mode"]
        == AutoresetMode.NEXT_STEP
    )


# ---------------------------------------------------------------- MuJoCo message filter


def test_halfcheetah_construction_prints_no_settotalmass(capfd, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # MuJoCo's default handler writes MUJOCO_LOG.TXT to the cwd
    gym.make("HalfCheetah-v5").close()
    unfiltered = capfd.readouterr()
    if "settotalmass" not in unfiltered.out + unfiltered.err:
        pytest.skip("this MuJoCo / Gymnasium pair no longer warns about settotalmass")

    make_env("HalfCheetah-v5").close()
    envs = make_vector_env("HalfCheetah-v5", 2, seed=0, vectorization="async")  # built in workers too
    envs.reset(seed=0)
    envs.close()
    captured = capfd.readouterr()
    assert "settotalmass" not in captured.out + captured.err


def test_other_mujoco_warnings_still_come_through(capfd, monkeypatch, tmp_path):
    import mujoco

    monkeypatch.chdir(tmp_path)
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint/><geom size=".1"/></body></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    data.qpos[:] = np.nan
    previous_handler = mujoco.get_mju_user_warning()
    with filtered_mujoco_warnings():
        mujoco.mj_step(model, data)
    assert mujoco.get_mju_user_warning() is previous_handler
    assert "Nan, Inf or huge value in QPOS" in capfd.readouterr().out


def _assert_same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert a.shape == b.shape
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1", "Pendulum-v1"])  # Box, Discrete obs; time limit
def test_lean_sync_vector_env_steps_as_gymnasium_does(env_id, mode):
    from pgrad.envs.vector import LeanSyncVectorEnv

    autoreset = AutoresetMode.SAME_STEP if mode == "same_step" else AutoresetMode.NEXT_STEP
    fns = [lambda: gym.make(env_id, max_episode_steps=30)] * 3
    lean = LeanSyncVectorEnv(fns, autoreset_mode=autoreset)
    lean_quiet = LeanSyncVectorEnv(fns, autoreset_mode=autoreset, keep_infos=False)
    plain = SyncVectorEnv(fns, autoreset_mode=autoreset)
    results = [envs.reset(seed=4) for envs in (lean, lean_quiet, plain)]
    _assert_same(results[0], results[2])
    plain.action_space.seed(5)
    ended = 0
    for _ in range(200):
        actions = plain.action_space.sample()
        lean_out, quiet_out, plain_out = (envs.step(actions) for envs in (lean, lean_quiet, plain))
        _assert_same(lean_out, plain_out)
        _assert_same(quiet_out[:4], plain_out[:4])
        # without infos, only what ends episodes is reported, exactly as the plain env reports it
        assert set(quiet_out[4]) <= {"final_obs", "_final_obs", "final_info", "_final_info"}
        for key in quiet_out[4]:
            _assert_same(quiet_out[4][key], plain_out[4][key])
        ended += int(np.sum(plain_out[2] | plain_out[3]))
    assert ended >= 10  # both kinds of episode end were crossed many times
    for envs in (lean, lean_quiet, plain):
        envs.close()
