"""pgrad.doctor on purpose-built broken envs (one planted fault each) and on standard envs (no error)."""

from __future__ import annotations

import io
import random

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import pgrad  # noqa: F401  (registers the pgrad/ ids)
from pgrad.doctor import (
    Episode,
    Finding,
    check_env,
    constant_terminal_length,
    observation_scale_issue,
    reward_scale_issue,
    run_doctor,
    running_discounted_returns,
)

STEPS = 400  # enough for ~20 episodes of the toy envs below, and fast


class ToyEnv(gym.Env):
    """A correct env: seeded, bounded observations, episodes of random length 10..30 that terminate.

    Subclasses plant one fault each by overriding a hook.
    """

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = 0
        self.length = 0
        self.state = np.zeros(2, dtype=np.float32)

    def initial_state(self) -> np.ndarray:
        return self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)

    def observe(self) -> np.ndarray:
        return self.state.copy()

    def reward(self) -> float:
        return float(self.np_random.normal())

    def ends(self) -> tuple[bool, bool]:
        return self.t >= self.length, False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.length = int(self.np_random.integers(10, 31))
        self.state = self.initial_state()
        return self.observe(), {}

    def step(self, action):
        self.t += 1
        push = 0.05 if int(action) == 1 else -0.05
        self.state = np.clip(self.state + push + self.np_random.normal(0, 0.05, 2), -1, 1).astype(np.float32)
        terminated, truncated = self.ends()
        return self.observe(), self.reward(), terminated, truncated, {}


class StdlibRandomReset(ToyEnv):
    def initial_state(self) -> np.ndarray:
        return np.array([random.uniform(-0.5, 0.5), 0.0], dtype=np.float32)


class UnseededGeneratorReset(ToyEnv):
    def initial_state(self) -> np.ndarray:
        return np.random.default_rng().uniform(-0.5, 0.5, 2).astype(np.float32)


class StateLeaksAcrossResets(ToyEnv):
    """Fresh envs agree; the same env reset again does not (an episode counter leaks into the state)."""

    episodes = 0

    def initial_state(self) -> np.ndarray:
        self.episodes += 1
        return np.array([0.1 * (self.episodes % 5), 0.0], dtype=np.float32)


class UnseededStep(ToyEnv):
    def reward(self) -> float:
        return random.random()


class NeverEnds(ToyEnv):
    def ends(self) -> tuple[bool, bool]:
        return False, False


class TimeLimitAsTerminated(ToyEnv):
    def ends(self) -> tuple[bool, bool]:
        return self.t >= 20, False


class OwnTimeLimitAsTerminated(ToyEnv):
    """Ends at random, or at its own time limit of 15 steps, reported as terminated."""

    def ends(self) -> tuple[bool, bool]:
        return self.t >= 15 or bool(self.np_random.random() < 0.05), False


class NaNObservation(ToyEnv):
    def observe(self) -> np.ndarray:
        obs = self.state.copy()
        if self.t == 5:
            obs[1] = np.nan
        return obs


class InfReward(ToyEnv):
    def reward(self) -> float:
        return float("inf") if self.t == 3 else 1.0


class InfiniteActions(ToyEnv):
    action_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def step(self, action):
        return super().step(int(action[0] > 0))


class HugeActions(InfiniteActions):
    action_space = spaces.Box(-1e6, 1e6, (1,), np.float32)


class OutOfBounds(ToyEnv):
    def observe(self) -> np.ndarray:
        return np.array([2.5, 0.0], dtype=np.float32) if self.t == 4 else self.state.copy()


class WrongShape(ToyEnv):
    def observe(self) -> np.ndarray:
        return np.zeros(3, dtype=np.float32) if self.t == 4 else self.state.copy()


class WrongDtype(ToyEnv):
    def observe(self) -> np.ndarray:
        return self.state.astype(np.float64) if self.t == 4 else self.state.copy()


class RaisesInStep(ToyEnv):
    def step(self, action):
        if self.t == 5:
            raise ValueError("boom: the physics exploded")
        return super().step(action)


class RaisesOnFirstStep(ToyEnv):
    """Raises inside Gymnasium's checker too: reported once, by the doctor's own run."""

    def step(self, action):
        raise ValueError("boom: the physics exploded")


class RaisesInReset(ToyEnv):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("no simulator")


class NoSuperReset(ToyEnv):
    """Never seeds self.np_random from reset's seed: Gymnasium's checker names the cause."""

    def reset(self, *, seed=None, options=None):
        self.t = 0
        self.length = int(self.np_random.integers(10, 31))
        self.state = self.initial_state()
        return self.observe(), {}


class ListObservation(ToyEnv):
    """Lists where arrays are expected: Gymnasium warns (advice), Box.contains accepts them (no error)."""

    def observe(self):
        return [float(x) for x in self.state]


class LargeDictObservation(ToyEnv):
    observation_space = spaces.Dict(
        {"small": spaces.Box(-1.0, 1.0, (2,), np.float32), "big": spaces.Box(-np.inf, np.inf, (1,), np.float32)}
    )

    def observe(self):
        return {"small": self.state.copy(), "big": np.array([1000.0 * self.state[0]], dtype=np.float32)}


class HugeReward(ToyEnv):
    def reward(self) -> float:
        return 1000.0 * float(self.np_random.normal())


class ZeroReward(ToyEnv):
    def reward(self) -> float:
        return 0.0


def checks(findings: list[Finding], level: str) -> set[str]:
    return {f.check for f in findings if f.level == level}


def doctor(env_class: type[gym.Env], steps: int = STEPS) -> tuple[int, list[Finding], str]:
    out = io.StringIO()
    status = run_doctor(env_class, env_class.__name__, steps=steps, seed=0, out=out)
    findings = check_env(env_class, steps=steps, seed=0)
    return status, findings, out.getvalue()


def test_a_correct_toy_env_has_no_finding_but_info_and_step_cost():
    status, findings, text = doctor(ToyEnv)
    assert status == 0, text
    assert checks(findings, "error") == set(), text
    assert checks(findings, "advice") <= {"step-cost"}, text
    lines = text.splitlines()
    assert lines[0].startswith("ToyEnv: observation Box(")
    assert lines[-1].startswith("no errors")


@pytest.mark.parametrize("env_class", [StdlibRandomReset, UnseededGeneratorReset])
def test_unseeded_reset_is_a_reset_determinism_error(env_class):
    status, findings, text = doctor(env_class)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "reset-determinism"]
    assert finding.level == "error"
    assert "two fresh envs" in finding.message and "np_random" in finding.message
    assert "error   reset-determinism: reset(seed=0) on two fresh envs" in text
    assert text.splitlines()[-1].startswith("1 error, ")


def test_state_leaking_across_resets_is_caught_by_resetting_one_env_twice():
    status, findings, _ = doctor(StateLeaksAcrossResets)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "reset-determinism"]
    assert finding.level == "error" and "one env twice" in finding.message


def test_unseeded_step_is_a_step_determinism_error():
    status, findings, _ = doctor(UnseededStep)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "step-determinism"]
    assert finding.level == "error" and "reward differs at step 1" in finding.message


def test_an_env_that_never_ends_is_an_error_without_a_time_limit():
    status, findings, text = doctor(NeverEnds)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "no-episode-end"]
    assert finding.level == "error" and "TimeLimit" in finding.message


def test_an_env_that_never_ends_is_fine_with_a_time_limit():
    status, findings, text = doctor(lambda: gym.wrappers.TimeLimit(NeverEnds(), max_episode_steps=50))
    assert status == 0, text
    assert "no-episode-end" not in {f.check for f in findings}
    assert any(f.check == "episodes" and "truncated" in f.message for f in findings)


def test_a_time_limit_reported_as_terminated_is_an_error():
    status, findings, _ = doctor(TimeLimitAsTerminated)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "time-limit-terminated"]
    assert finding.level == "error" and "episodes terminated at step 20: if that is a time limit" in finding.message


def test_terminated_at_the_declared_max_episode_steps_is_an_error():
    def make():
        env = OwnTimeLimitAsTerminated()  # declared, not wrapped in TimeLimit: its own limit says terminated
        env.spec = gym.envs.registration.EnvSpec("Toy-v0", entry_point=OwnTimeLimitAsTerminated, max_episode_steps=15)
        return env

    findings = check_env(make, steps=STEPS, seed=0)
    (finding,) = [f for f in findings if f.check == "time-limit-terminated"]
    assert finding.level == "error" and "max_episode_steps=15" in finding.message


def test_nan_observation_is_an_error_with_its_step():
    status, findings, _ = doctor(NaNObservation)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "non-finite"]
    assert finding.level == "error"
    assert finding.message.startswith("step 5 (episode 1, t=5): observation is NaN or inf")
    assert "obs-space" not in {f.check for f in findings}  # NaN is reported once


def test_inf_reward_is_an_error_with_its_step():
    status, findings, _ = doctor(InfReward)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "non-finite"]
    assert finding.level == "error" and finding.message.startswith("step 3 (episode 1, t=3): the reward is inf")


@pytest.mark.parametrize("env_class, phrase", [(InfiniteActions, "infinite bounds"), (HugeActions, "reach 1e+06")])
def test_infinite_or_huge_action_bounds_are_advice(env_class, phrase):
    status, findings, text = doctor(env_class)
    assert status == 0, text
    (finding,) = [f for f in findings if f.check == "action-bounds"]
    assert finding.level == "advice" and phrase in finding.message


@pytest.mark.parametrize(
    "env_class, phrase",
    [
        (OutOfBounds, "observation[0] = 2.5 is outside the declared bounds [-1, 1]"),
        (WrongShape, "observation has shape (3,), declared (2,)"),
        (WrongDtype, "observation has dtype float64, declared float32"),
    ],
)
def test_observation_outside_the_declared_space_is_an_error(env_class, phrase):
    status, findings, _ = doctor(env_class)
    assert status == 1
    (finding,) = [f for f in findings if f.check == "obs-space"]
    assert finding.level == "error"
    assert finding.message.startswith(f"step 4 (episode 1, t=4): {phrase}"), finding.message


@pytest.mark.parametrize(
    "env_class, where", [(RaisesInStep, "step 6 (episode 1, t=6)"), (RaisesOnFirstStep, "step 1 (episode 1, t=1)")]
)
def test_an_env_raising_in_step_is_an_error_not_a_crash(env_class, where):
    status, findings, text = doctor(env_class)
    assert status == 1
    errors = [f for f in findings if f.level == "error"]
    assert [f.check for f in errors] == ["env-exception"], text
    assert f"env.step raised at {where}: ValueError: boom: the physics exploded" in errors[0].message


def test_an_env_raising_in_reset_is_an_error_not_a_crash():
    status, findings, text = doctor(RaisesInReset)
    assert status == 1
    assert "env.reset raised at reset(seed=0): RuntimeError: no simulator" in text
    assert "step-cost" not in {f.check for f in findings}


def test_gymnasium_checker_exception_is_an_error_and_its_warnings_advice():
    status, findings, _ = doctor(NoSuperReset)
    assert status == 1
    assert any(
        f.level == "error" and f.check == "gymnasium-checker" and "super().reset(seed=seed)" in f.message
        for f in findings
    )
    status, findings, text = doctor(ListObservation)
    assert status == 0, text
    advice = [f.message for f in findings if f.check == "gymnasium-checker"]
    assert advice and all(f.level == "advice" for f in findings if f.check == "gymnasium-checker")
    assert any("expecting a numpy array" in message for message in advice)
    assert not any("Casting input x" in message for message in advice)  # noise, dropped


def test_make_env_raising_is_an_error():
    def broken():
        raise RuntimeError("no such thing")

    out = io.StringIO()
    assert run_doctor(broken, "Broken-v0", steps=10, out=out) == 1
    assert "error   make-env: building the env raised RuntimeError: no such thing" in out.getvalue()


def test_badly_scaled_dict_key_is_obs_scale_advice():
    status, findings, text = doctor(LargeDictObservation)
    assert status == 0, text
    (finding,) = [f for f in findings if f.check == "obs-scale"]
    assert finding.level == "advice" and finding.message.startswith("observation['big']: entry 0 has std")


@pytest.mark.parametrize("env_class, check", [(HugeReward, "reward-scale"), (ZeroReward, "sparse-reward")])
def test_reward_scale_advice(env_class, check):
    status, findings, text = doctor(env_class)
    assert status == 0, text
    assert check in checks(findings, "advice")


def test_statistics_helpers():
    np.testing.assert_allclose(
        running_discounted_returns(np.array([1.0, 1.0, 1.0]), np.array([False, True, False]), 0.5), [1.0, 1.5, 1.0]
    )
    assert observation_scale_issue(np.zeros(2), np.array([1.0, 20.0])) == "entry 1 has std 20"
    assert observation_scale_issue(np.array([0.0, -50.0]), np.ones(2)) == "entry 1 has mean -50"
    assert "range from" in observation_scale_issue(np.zeros(2), np.array([1e-4, 1.0]))
    assert observation_scale_issue(np.zeros(3), np.array([0.0, 0.5, 1.0])) is None
    assert reward_scale_issue(np.ones(10), np.zeros(10, bool)) is None  # constant reward: CartPole
    assert reward_scale_issue(np.full(10, 1e-5), np.zeros(10, bool))[0] == "reward-scale"
    terminated = [Episode(20, 1.0, True, False)] * 3
    assert constant_terminal_length(terminated) == 20
    assert constant_terminal_length(terminated[:2]) is None
    assert constant_terminal_length([*terminated, Episode(19, 1.0, True, False)]) is None
    assert constant_terminal_length([Episode(1, 1.0, True, False)] * 5) is None  # a bandit


@pytest.mark.parametrize(
    "env_id",
    ["CartPole-v1", "Pendulum-v1", "MountainCar-v0", "HalfCheetah-v5", "LunarLander-v3", "pgrad/ContinuousCartPole-v0"],
)
def test_standard_envs_have_no_error(env_id):
    out = io.StringIO()
    status = run_doctor(lambda: gym.make(env_id), env_id, out=out)
    text = out.getvalue()
    assert status == 0, text
    assert "\nerror" not in text
    assert text.splitlines()[0].startswith(f"{env_id}: observation ")
