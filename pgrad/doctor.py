"""Environment doctor behind ``pgrad check ENV``: finds the env faults that silently break policy-gradient training.

Gymnasium's own :func:`gymnasium.utils.env_checker.check_env` runs first (on ``env.unwrapped``, as it
asks); its exceptions become errors and its warnings advice. Then the doctor checks what that
function cannot see in its handful of steps:

* ``reset-determinism`` / ``step-determinism`` (error): ``reset(seed=s)`` on two fresh envs and twice
  on one env gives the same observation, and the same seeded action sequence then gives the same
  observations, rewards and episode ends.
* From ``steps`` seeded random steps: ``env-exception`` (error: step or reset raised),
  ``non-finite`` (error: NaN or inf in an observation or reward), ``obs-space`` (error: an
  observation outside the declared space: dtype, shape or bounds), ``no-episode-end`` (error
  without a declared time limit), ``time-limit-terminated`` (error: a time limit reported as
  ``terminated``), ``obs-scale`` and ``reward-scale`` / ``sparse-reward`` (advice), ``step-cost``.
* ``action-bounds`` (advice): infinite or huge Box action bounds.

Levels. ``error``: training would crash or be silently wrong; any error makes the exit status 1.
``advice``: something worth acting on. ``info``: a measurement with nothing to act on (the step
cost when it lies between the thresholds below, a summary of the random episodes). A third level
rather than always-advice so that the verdict's advice count means "things to do", and rather than
dropping those lines because the step cost and episode lengths are what one looks at first.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pgrad.errors import ConfigError

LEVELS = ("error", "advice", "info")

# --- thresholds ------------------------------------------------------------------------------

# Steps replayed by each determinism run: a few episodes of the classic-control envs, and long
# enough for state that drifts (a counter, a cache) to show, at a fraction of the random run.
DETERMINISM_STEPS = 300
# Observations and rewards compare with this tolerance: bit-exact equality would also flag
# reordered float sums (threaded BLAS, MuJoCo built differently) that change nothing for training.
DETERMINISM_RTOL, DETERMINISM_ATOL = 1e-6, 1e-9

# A time limit must end an episode with truncated=True, not terminated=True: a terminated state's
# value is 0, a truncated one's is bootstrapped from V(s') (Gymnasium docs, "Handling Time Limits";
# Pardo et al. 2018, "Time limits in reinforcement learning"). An episode length repeated by every
# one of at least this many terminated episodes reads as such a limit; fewer could be chance.
CONSTANT_LENGTH_EPISODES = 3

# Action bounds above this magnitude are almost always a placeholder for "unbounded" (1e6, the
# float32 maximum) rather than a real actuator range: the usual benchmarks bound actions by a few
# units (MuJoCo +-1, Pendulum +-2, BipedalWalker +-1). pgrad rescales finite bounds to [-1, 1], so
# the initial policy (Gaussian of std 1 in those units) would act across the whole huge range.
HUGE_ACTION_BOUND = 1e3

# Observation scale. The networks are initialised for inputs of order 1 (orthogonal init, tanh):
# an entry of std or mean above 10 saturates the first layer, and entries whose std differ by more
# than three orders of magnitude leave the small ones invisible next to the large. Andrychowicz et
# al. 2021, "What matters in on-policy reinforcement learning?", found observation normalisation
# among the most important choices and recommend it always.
OBS_SCALE_LIMIT = 10.0
OBS_STD_RATIO_LIMIT = 1e3

# Reward scale. Rewards of std above 100 per step, or running discounted returns (gamma 0.99,
# pgrad's default, the statistic normalize_reward divides by) of std above 1000, give value
# targets and advantages large enough to dominate the loss and Adam's first steps; rewards that
# never exceed 1e-3 in magnitude give value targets below the critic's initial output noise and,
# where advantages are not normalised (A2C's and REINFORCE's default), vanishing policy
# gradients. Reward scaling matters in practice: Engstrom et al. 2020, "Implementation matters in
# deep policy gradients".
REWARD_STD_LIMIT = 100.0
RETURN_STD_LIMIT = 1e3
TINY_REWARD = 1e-3
RETURN_GAMMA = 0.99

# Step cost (median microseconds per env.step, measured through the factory's wrappers). Below
# 50 us the env costs less than pgrad itself per step with one env: BENCHMARKS.md ("Where the time
# goes") measures a PPO rollout at 118 us per CartPole-v1 step, of which the env is ~6 us, so more
# envs per forward pass (sync) are what speeds acting up. Above 1 ms a subprocess per env pays:
# Gymnasium's AsyncVectorEnv adds its pipe round trip, measured at 65-230 us per step (one and two
# CartPole envs on a 2-core machine), which is then small against the step itself.
FAST_STEP_US = 50.0
SLOW_STEP_US = 1000.0


@dataclass(frozen=True)
class Finding:
    """One result of the doctor: ``level`` ("error", "advice" or "info"), a short ``check`` id, and a
    one-line ``message`` saying what is wrong and what to do."""

    level: str
    check: str
    message: str


@dataclass(frozen=True)
class Episode:
    """How one random episode ended."""

    length: int
    total_reward: float
    terminated: bool
    truncated: bool


# --- pure helpers: statistics and decisions ---------------------------------------------------


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` without ANSI colour codes (Gymnasium colours its warnings)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def exception_line(exc: BaseException) -> str:
    """``Type: first line of the message``, the one-line form of an exception."""
    message = first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def running_discounted_returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = gamma * G_{t-1} + r_t``, restarted after each episode end: the statistic whose std
    normalize_reward divides rewards by (as baselines' VecNormalize)."""
    returns = np.empty(len(rewards), dtype=np.float64)
    running = 0.0
    for i, (reward, done) in enumerate(zip(rewards, dones)):
        running = gamma * running + float(reward)
        returns[i] = running
        if done:
            running = 0.0
    return returns


def observation_scale_issue(mean: np.ndarray, std: np.ndarray) -> str | None:
    """What is badly scaled about observation entries of these means and stds, or None."""
    if mean.size == 0:
        return None
    worst_std = int(np.argmax(std))
    if std[worst_std] > OBS_SCALE_LIMIT:
        return f"entry {worst_std} has std {std[worst_std]:.3g}"
    worst_mean = int(np.argmax(np.abs(mean)))
    if abs(mean[worst_mean]) > OBS_SCALE_LIMIT:
        return f"entry {worst_mean} has mean {mean[worst_mean]:.3g}"
    varying = np.flatnonzero(std > 0)  # constant entries carry no scale
    if varying.size >= 2:
        small = int(varying[np.argmin(std[varying])])
        if std[worst_std] > OBS_STD_RATIO_LIMIT * std[small]:
            return f"stds range from {std[small]:.2g} (entry {small}) to {std[worst_std]:.3g} (entry {worst_std})"
    return None


def reward_scale_issue(rewards: np.ndarray, dones: np.ndarray) -> tuple[str, str] | None:
    """``(check, what)`` if per-step rewards are all zero, huge or tiny, else None."""
    if rewards.size == 0:
        return None
    largest = float(np.max(np.abs(rewards)))
    if largest == 0.0:
        return "sparse-reward", f"the reward was 0 on all {rewards.size} random steps"
    step_std = float(np.std(rewards))
    if step_std > REWARD_STD_LIMIT:
        return "reward-scale", f"the per-step reward has std {step_std:.3g}"
    return_std = float(np.std(running_discounted_returns(rewards, dones, RETURN_GAMMA)))
    if return_std > RETURN_STD_LIMIT:
        return "reward-scale", f"the discounted return (gamma {RETURN_GAMMA}) has std {return_std:.3g}"
    if largest < TINY_REWARD:
        return "reward-scale", f"the reward never exceeds {largest:.2g} in magnitude"
    return None


def constant_terminal_length(episodes: list[Episode]) -> int | None:
    """The length L if at least CONSTANT_LENGTH_EPISODES episodes ended and every one was terminated
    (never truncated) at the same length L > 1, else None.

    Length 1 is left alone: a one-step episode that terminates is a bandit, not a time limit.
    """
    if len(episodes) < CONSTANT_LENGTH_EPISODES:
        return None
    lengths = {e.length for e in episodes}
    if len(lengths) != 1 or not all(e.terminated and not e.truncated for e in episodes):
        return None
    length = lengths.pop()
    return length if length > 1 else None


def step_cost_finding(step_us: float, reset_us: float) -> Finding:
    """The step-cost line: advice below FAST_STEP_US or above SLOW_STEP_US, info between."""
    cost = f"env.step takes {step_us:.0f} us (median; reset {reset_us:.0f} us)"
    if step_us < FAST_STEP_US:
        return Finding(
            "advice",
            "step-cost",
            f"{cost}, less than pgrad's own ~100 us per step: let one forward pass serve several envs, "
            "--set n_envs=8 (vectorization=sync, the default)",
        )
    if step_us > SLOW_STEP_US:
        return Finding(
            "advice",
            "step-cost",
            f"{cost}: stepping dominates; --set vectorization=async with n_envs about the number of cores "
            f"({os.cpu_count()} here) steps the envs in parallel subprocesses",
        )
    return Finding("info", "step-cost", f"{cost}: sync vectorization (the default) is right; n_envs is free to choose")


def same_data(a: Any, b: Any) -> bool:
    """Whether two observations (arrays, scalars, dicts, tuples) are equal within the determinism tolerance."""
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
            return False
        return all(same_data(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(same_data(x, y) for x, y in zip(a, b))
    try:
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return False
        if np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number):
            return bool(np.allclose(x, y, rtol=DETERMINISM_RTOL, atol=DETERMINISM_ATOL, equal_nan=True))
        return bool(np.array_equal(x, y))
    except (TypeError, ValueError):
        return a == b


def _name(path: str) -> str:
    return f"observation{path}"


def observation_problem(obs: Any, space: spaces.Space, path: str = "") -> str | None:
    """Why ``obs`` is not in ``space`` (dtype, shape, bounds; the first problem found), or None.

    Box follows :meth:`gymnasium.spaces.Box.contains` (a non-array converts to the declared dtype;
    an array's dtype must cast safely to it) but ignores NaN, which the non-finite check reports.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, dict):
            return f"{_name(path)} is a {type(obs).__name__}, declared a Dict"
        if set(obs) != set(space.spaces):
            return f"{_name(path)} has keys {sorted(map(str, obs))}, declared {sorted(map(str, space.spaces))}"
        for key, sub in space.spaces.items():
            problem = observation_problem(obs[key], sub, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(space, spaces.Tuple):
        if not isinstance(obs, tuple) or len(obs) != len(space.spaces):
            return f"{_name(path)} is not a tuple of {len(space.spaces)}"
        for i, sub in enumerate(space.spaces):
            problem = observation_problem(obs[i], sub, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(space, spaces.Box):
        if not isinstance(obs, np.ndarray):
            try:  # as Box.contains: a list or number converts to the declared dtype
                obs = np.asarray(obs, dtype=space.dtype)
            except (ValueError, TypeError, OverflowError):
                return f"{_name(path)} is a {type(obs).__name__} that does not convert to a {space.dtype} array"
        if obs.shape != space.shape:
            return f"{_name(path)} has shape {obs.shape}, declared {space.shape}"
        if not np.can_cast(obs.dtype, space.dtype):
            return f"{_name(path)} has dtype {obs.dtype}, declared {space.dtype}"
        outside = (obs < space.low) | (obs > space.high)  # False for NaN
        if np.any(outside):
            index = tuple(int(i) for i in np.argwhere(outside)[0])
            entry = index[0] if len(index) == 1 else index
            return (
                f"{_name(path)}[{entry}] = {obs[index]:.4g} is outside the declared bounds "
                f"[{space.low[index]:.4g}, {space.high[index]:.4g}]"
            )
        return None
    try:
        inside = space.contains(obs)
    except Exception:  # a malformed value can make contains itself raise
        inside = False
    return None if inside else f"{_name(path)} = {str(obs)[:40]} is not in {space}"


def non_finite_part(value: Any, path: str = "") -> str | None:
    """The path of the first floating leaf of ``value`` holding NaN or inf ("" for the root), or None."""
    if isinstance(value, dict):
        for key, sub in value.items():
            found = non_finite_part(sub, f"{path}[{key!r}]")
            if found is not None:
                return found
        return None
    if isinstance(value, tuple):
        for i, sub in enumerate(value):
            found = non_finite_part(sub, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        return path
    return None


def is_image(space: spaces.Box) -> bool:
    """An image pgrad feeds to a CNN (a 3-D Box of uint8, bool, or floats in [0, 1]), as in
    :func:`pgrad.observations.image_layout`; its pixels are scaled by 1/255, not normalised."""
    if len(space.shape) != 3:
        return False
    if space.dtype in (np.uint8, np.bool_):
        return True
    return bool(np.issubdtype(space.dtype, np.floating) and np.all(space.low >= 0) and np.all(space.high <= 1))


def vector_leaves(space: spaces.Space, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], spaces.Box]]:
    """``(path, Box)`` for every non-image Box in ``space`` (recursing into Dict and Tuple)."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            yield from vector_leaves(sub, (*path, key))
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            yield from vector_leaves(sub, (*path, i))
    elif isinstance(space, spaces.Box) and not is_image(space):
        yield path, space


def describe_space(space: Any) -> str:
    """A short one-line description of a space for the report's header."""
    if isinstance(space, spaces.Dict):
        return f"Dict({', '.join(f'{k}: {describe_space(s)}' for k, s in space.spaces.items())})"
    if isinstance(space, spaces.Tuple):
        return f"Tuple({', '.join(describe_space(s) for s in space.spaces)})"
    if not type(space).__module__.startswith("gymnasium.spaces"):
        return type(space).__name__  # a package's own space (MiniGrid's MissionSpace): its repr can be long
    text = " ".join(repr(space).split())
    if len(text) <= 100:
        return text
    if isinstance(space, spaces.Box):
        return f"Box(shape={space.shape}, {space.dtype})"
    return text[:97] + "..."


def action_bounds_findings(space: spaces.Space) -> list[Finding]:
    """Advice for every Box in the action space whose bounds are infinite or above HUGE_ACTION_BOUND."""
    boxes: list[tuple[str, spaces.Box]] = []

    def collect(sub: spaces.Space, name: str) -> None:
        if isinstance(sub, spaces.Box):
            boxes.append((name, sub))
        elif isinstance(sub, spaces.Dict):
            for key, inner in sub.spaces.items():
                collect(inner, f"{name}[{key!r}]")
        elif isinstance(sub, spaces.Tuple):
            for i, inner in enumerate(sub.spaces):
                collect(inner, f"{name}[{i}]")

    collect(space, "action")
    findings = []
    for name, box in boxes:
        if not np.issubdtype(box.dtype, np.floating):
            continue
        bounds = np.concatenate([np.ravel(box.low), np.ravel(box.high)]).astype(np.float64)
        if not np.all(np.isfinite(bounds)):
            findings.append(
                Finding(
                    "advice",
                    "action-bounds",
                    f"{name} Box has infinite bounds: pgrad passes such actions through unscaled (the initial "
                    "Gaussian has std 1 in env units); declare the finite range the env accepts so pgrad "
                    "rescales it to [-1, 1]",
                )
            )
        elif np.max(np.abs(bounds)) > HUGE_ACTION_BOUND:
            findings.append(
                Finding(
                    "advice",
                    "action-bounds",
                    f"{name} Box bounds reach {np.max(np.abs(bounds)):.3g}: pgrad rescales them to [-1, 1], so "
                    "the initial policy acts across that whole range; declare the range the env really uses",
                )
            )
    return findings


# --- running the env ---------------------------------------------------------------------------


class _EnvFailure(Exception):
    """An exception raised by the env, with where it happened."""

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(where)
        self.where = where
        self.exc = exc


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _where(step: int, episode: int, t: int) -> str:
    return f"step {step} (episode {episode}, t={t})"


def _close(env: Any) -> None:
    try:
        env.close()
    except Exception:  # closing is best effort: the report is what matters
        pass


def _gymnasium_findings(make_env: Callable[[], gym.Env]) -> list[Finding]:
    """Gymnasium's check_env on a fresh ``env.unwrapped``: its exception as an error, its warnings as advice.

    ``env.unwrapped``: the checker warns about (and is confused by) wrappers such as TimeLimit and
    PassiveEnvChecker that ``gymnasium.make`` adds. The render check is skipped: rendering opens
    windows or needs OpenGL and plays no part in training.
    """
    from gymnasium.utils.env_checker import check_env as gymnasium_check_env

    # Warnings that do not apply to pgrad: it normalises observations from the visited states, not
    # from the declared bounds, and rescales finite action bounds to [-1, 1] itself (the doctor's
    # action-bounds check covers infinite and huge ones). "Casting input x" comes from Box.contains
    # on a non-array and repeats the checker's own "expecting a numpy array".
    irrelevant = (
        "space minimum value is -infinity",
        "space maximum value is infinity",
        "symmetric and normalized",
        "Casting input x to numpy array",
    )
    findings: list[Finding] = []
    try:
        env = make_env()
    except Exception as exc:
        return [_make_env_finding(exc, "Gymnasium's check_env")]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                gymnasium_check_env(getattr(env, "unwrapped", env), skip_render_check=True)
            except Exception as exc:
                findings.append(
                    Finding(
                        "error",
                        "gymnasium-checker",
                        f"gymnasium.utils.env_checker.check_env raised {exception_line(exc)}",
                    )
                )
        seen = set()
        for warning in caught:
            text = first_line(str(warning.message)).removeprefix("WARN: ")
            if (
                text in seen
                or any(phrase in text for phrase in irrelevant)
                or issubclass(warning.category, DeprecationWarning)
            ):
                continue
            seen.add(text)
            findings.append(Finding("advice", "gymnasium-checker", f"Gymnasium's check_env warns: {text}"))
    finally:
        _close(env)
    return findings


Trajectory = list[tuple[str, Any]]  # (what, value): "reset", obs / "step k", (obs, reward, terminated, truncated)


def _trajectory(env: gym.Env, seed: int, actions: list[Any]) -> Trajectory:
    """Reset with ``seed`` and play ``actions``, resetting (unseeded) at episode ends."""
    out: Trajectory = []
    where = f"reset(seed={seed})"
    try:
        obs, _ = env.reset(seed=seed)
        out.append((where, copy.deepcopy(obs)))
        for k, action in enumerate(actions, start=1):
            where = f"step {k}"
            obs, reward, terminated, truncated, _ = env.step(action)
            out.append((where, (copy.deepcopy(obs), float(reward), bool(terminated), bool(truncated))))
            if terminated or truncated:
                where = f"the reset after step {k}"
                obs, _ = env.reset()
                out.append((where, copy.deepcopy(obs)))
    except Exception as exc:
        raise _EnvFailure(where, exc) from exc
    return out


def _first_difference(a: Trajectory, b: Trajectory) -> tuple[str, str] | None:
    """``(where, what)`` of the first entry where two trajectories differ, or None."""
    for (where, x), (_, y) in zip(a, b):
        if where.startswith("step"):
            for label, u, v in zip(("observation", "reward", "terminated", "truncated"), x, y):
                if not same_data(u, v):
                    return where, label
        elif not same_data(x, y):
            return where, "observation"
    return None


def _determinism_findings(env_a: gym.Env, env_b: gym.Env, seed: int, n_steps: int) -> list[Finding]:
    """Same seed, same actions: two fresh envs, and one env twice, must give the same trajectory.

    Raises _EnvFailure if the env raises (the random run reports it).
    """
    actions_space = copy.deepcopy(env_a.action_space)
    actions_space.seed(seed)
    actions = [actions_space.sample() for _ in range(n_steps)]
    first = _trajectory(env_a, seed, actions)
    runs = (("two fresh envs", _trajectory(env_b, seed, actions)), ("one env twice", _trajectory(env_a, seed, actions)))
    findings = []
    for label, other in runs:
        difference = _first_difference(first, other)
        if difference is None:
            continue
        where, what = difference
        if where.startswith("reset(seed"):
            findings.append(
                Finding(
                    "error",
                    "reset-determinism",
                    f"{where} on {label} gave different observations; seed every random source from reset's seed "
                    "(self.np_random after super().reset(seed=seed)) and reset all episode state in reset",
                )
            )
        else:
            findings.append(
                Finding(
                    "error",
                    "step-determinism",
                    f"same seed and actions on {label}: the {what} differs at {where}; draw all randomness "
                    "from self.np_random and reset all episode state in reset",
                )
            )
        break  # one determinism error is enough to act on
    return findings


@dataclass
class _Rollout:
    """What the random run saw."""

    steps: int = 0
    step_seconds: list[float] = field(default_factory=list)
    reset_seconds: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    dones: list[bool] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # per non-image Box leaf: [count, shift, sum(x - shift), sum((x - shift)^2)], shifted by the
    # first value so the variance does not cancel catastrophically for large means
    moments: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)


class _ObservationWatch:
    """Checks every observation for non-finite values and for leaving the space; accumulates moments."""

    def __init__(self, space: spaces.Space, rollout: _Rollout) -> None:
        self.space = space
        self.rollout = rollout
        self.leaves = list(vector_leaves(space))
        self.non_finite: str | None = None
        self.outside: str | None = None
        self.outside_count = 0
        self.seen = 0

    def __call__(self, obs: Any, where: str) -> None:
        self.seen += 1
        bad = non_finite_part(obs)
        if bad is not None and self.non_finite is None:
            self.non_finite = f"{where}: {_name(bad)} is NaN or inf"
        problem = observation_problem(obs, self.space)
        if problem is not None:
            self.outside_count += 1
            if self.outside is None:
                self.outside = f"{where}: {problem}"
        for path, box in self.leaves:
            value: Any = obs
            try:
                for key in path:
                    value = value[key]
                x = np.asarray(value, dtype=np.float64)
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if x.shape != box.shape or not np.all(np.isfinite(x)):
                continue
            x = x.reshape(-1)
            moment = self.rollout.moments.get(path)
            if moment is None:
                self.rollout.moments[path] = [1, x.copy(), np.zeros_like(x), np.zeros_like(x)]
            else:
                d = x - moment[1]
                moment[0] += 1
                moment[2] += d
                moment[3] += d * d


def _random_run(env: gym.Env, steps: int, seed: int) -> _Rollout:
    """``steps`` seeded random steps, checking every observation and reward on the way."""
    rollout = _Rollout()
    watch = _ObservationWatch(env.observation_space, rollout)
    action_space = copy.deepcopy(env.action_space)
    action_space.seed(seed)
    episode, t, total = 1, 0, 0.0
    non_finite_reward: str | None = None
    where = f"reset(seed={seed})"
    try:
        start = time.perf_counter()
        obs, _ = env.reset(seed=seed)
        rollout.reset_seconds.append(time.perf_counter() - start)
        watch(obs, where)
        for step in range(1, steps + 1):
            action = action_space.sample()
            t += 1
            where = _where(step, episode, t)
            start = time.perf_counter()
            obs, reward, terminated, truncated, _ = env.step(action)
            rollout.step_seconds.append(time.perf_counter() - start)
            rollout.steps = step
            watch(obs, where)
            try:
                value = float(reward)
            except (TypeError, ValueError):
                rollout.findings.append(
                    Finding(
                        "error",
                        "reward-type",
                        f"{where}: the reward {str(reward)[:30]} is not a number; return a float",
                    )
                )
                break
            if not np.isfinite(value) and non_finite_reward is None:
                non_finite_reward = f"{where}: the reward is {value}"
            rollout.rewards.append(value)
            total += value
            done = bool(terminated) or bool(truncated)
            rollout.dones.append(done)
            if done:
                rollout.episodes.append(Episode(t, total, bool(terminated), bool(truncated)))
                episode, t, total = episode + 1, 0, 0.0
                where = f"the reset after step {step}"
                start = time.perf_counter()
                obs, _ = env.reset()
                rollout.reset_seconds.append(time.perf_counter() - start)
                watch(obs, where)
    except _EnvFailure as failure:
        rollout.findings.append(_exception_finding(failure.where, failure.exc))
    except Exception as exc:
        rollout.findings.append(_exception_finding(where, exc))
    for problem in (watch.non_finite, non_finite_reward):
        if problem:
            rollout.findings.append(
                Finding(
                    "error",
                    "non-finite",
                    f"{problem}; training stops on it (NonFiniteError): find the division or overflow in the env",
                )
            )
    if watch.outside:
        rollout.findings.append(
            Finding(
                "error",
                "obs-space",
                f"{watch.outside} ({watch.outside_count} of {watch.seen} observations outside observation_space); "
                "return observations inside the space or declare the space the env produces",
            )
        )
    return rollout


def _exception_finding(where: str, exc: BaseException) -> Finding:
    if "reset" in where:
        return Finding(
            "error", "env-exception", f"env.reset raised at {where}: {exception_line(exc)}; training would crash here"
        )
    return Finding(
        "error",
        "env-exception",
        f"env.step raised at {where}: {exception_line(exc)}; the env must accept every action its "
        "action_space samples (training would crash here)",
    )


def _episode_findings(env: gym.Env, rollout: _Rollout, steps: int) -> list[Finding]:
    """Episodes that never end, time limits reported as terminated, and a summary of the episodes."""
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None)
    episodes = rollout.episodes
    if rollout.steps < steps:  # the run stopped on an exception: too little to judge
        return []
    if not episodes:
        if limit is None:
            return [
                Finding(
                    "error",
                    "no-episode-end",
                    f"no episode ended in {steps} random steps and the env declares no time limit: REINFORCE "
                    "needs complete episodes and the episode statistics stay empty; wrap it in "
                    "gymnasium.wrappers.TimeLimit (or register it with max_episode_steps=)",
                )
            ]
        if limit <= steps:
            return [
                Finding(
                    "error",
                    "no-episode-end",
                    f"no episode ended in {steps} random steps although spec.max_episode_steps is {limit}: the "
                    "factory loses the TimeLimit wrapper; build the env with gymnasium.make or wrap it in TimeLimit",
                )
            ]
        return [
            Finding(
                "advice",
                "no-episode-end",
                f"no episode ended in {steps} random steps (time limit {limit}): the episode checks saw nothing; "
                f"rerun with --steps {3 * limit}",
            )
        ]
    findings = []
    at_limit = [e for e in episodes if limit is not None and e.length == limit and e.terminated and not e.truncated]
    constant = constant_terminal_length(episodes)
    if at_limit:
        findings.append(
            Finding(
                "error",
                "time-limit-terminated",
                f"{_count(len(at_limit), 'episode')} ended at spec.max_episode_steps={limit} with terminated=True, "
                "truncated=False: report the time limit as truncated (TimeLimit does) so the value is bootstrapped",
            )
        )
    elif constant is not None:
        findings.append(
            Finding(
                "error",
                "time-limit-terminated",
                f"all {len(episodes)} episodes terminated at step {constant}: if that is a time limit, report it "
                "as truncated (TimeLimit) so the value is bootstrapped",
            )
        )
    lengths = np.array([e.length for e in episodes])
    returns = np.array([e.total_reward for e in episodes])
    spread = f"{returns.mean():.4g} +- {returns.std():.3g}" if np.all(np.isfinite(returns)) else "not finite"
    terminated = sum(e.terminated for e in episodes)
    truncated = sum(e.truncated for e in episodes)
    findings.append(
        Finding(
            "info",
            "episodes",
            f"{len(episodes)} random episodes ({terminated} terminated, {truncated} truncated): length "
            f"{lengths.min()}..{lengths.max()} (median {np.median(lengths):.0f}), return {spread}",
        )
    )
    return findings


def _scale_findings(rollout: _Rollout) -> list[Finding]:
    """Observation and reward scale, from the random run's moments and rewards."""
    findings = []
    for path, (count, _, s1, s2) in rollout.moments.items():
        if count < 2:
            continue
        shifted_mean = s1 / count
        std = np.sqrt(np.maximum(s2 / count - shifted_mean**2, 0.0))
        mean = rollout.moments[path][1] + shifted_mean
        issue = observation_scale_issue(mean, std)
        if issue:
            name = _name("".join(f"[{key!r}]" for key in path))
            findings.append(
                Finding(
                    "advice",
                    "obs-scale",
                    f"{name}: {issue}; keep normalize_obs=true (the default of every algorithm but REINFORCE; "
                    "some presets turn it off)",
                )
            )
    rewards = np.asarray(rollout.rewards, dtype=np.float64)
    finite = np.isfinite(rewards)
    issue = reward_scale_issue(rewards[finite], np.asarray(rollout.dones, dtype=bool)[finite])
    if issue is not None:
        check, what = issue
        if check == "sparse-reward":
            findings.append(
                Finding(
                    "advice",
                    "sparse-reward",
                    f"{what}: random exploration never found a reward; shape the reward or expect long training",
                )
            )
        else:
            findings.append(Finding("advice", "reward-scale", f"{what}; --set normalize_reward=true"))
    return findings


# --- entry points ----------------------------------------------------------------------------


@dataclass
class _Report:
    findings: list[Finding]
    spaces: str = ""
    seconds: float = 0.0


def _examine(make_env: Callable[[], gym.Env], steps: int, seed: int) -> _Report:
    """Every check, in order: Gymnasium's checker, action bounds, determinism, the random run."""
    started = time.perf_counter()
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (numpy's seeds are), got {seed}")
    try:
        env = make_env()
    except Exception as exc:
        return _Report([_make_env_finding(exc)], seconds=time.perf_counter() - started)
    findings: list[Finding] = []
    spaces_line = (
        f"observation {describe_space(getattr(env, 'observation_space', None))}, "
        f"action {describe_space(getattr(env, 'action_space', None))}"
    )
    other: gym.Env | None = None
    try:
        findings += _gymnasium_findings(make_env)
        with warnings.catch_warnings():
            # the doctor reports what the PassiveEnvChecker wrapper would warn about, for every step,
            # and numpy's overflow warnings on wild observations would only repeat its findings
            warnings.simplefilter("ignore")
            findings += action_bounds_findings(env.action_space)
            determinism_failure: _EnvFailure | None = None
            spec = getattr(env, "spec", None)
            if spec is not None and getattr(spec, "nondeterministic", False):
                findings.append(
                    Finding("info", "reset-determinism", "skipped: the env's spec declares nondeterministic=True")
                )
            else:
                try:
                    other = make_env()
                except Exception as exc:  # the determinism check needs two envs; the rest needs one
                    findings.append(_make_env_finding(exc, "the determinism check"))
                if other is not None:
                    try:
                        findings += _determinism_findings(env, other, seed, min(DETERMINISM_STEPS, steps))
                    except _EnvFailure as failure:
                        determinism_failure = failure
            rollout = _random_run(env, steps, seed)
            findings += rollout.findings
            if determinism_failure is not None and not any(f.check == "env-exception" for f in findings):
                findings.append(_exception_finding(determinism_failure.where, determinism_failure.exc))
            findings += _episode_findings(env, rollout, steps)
            findings += _scale_findings(rollout)
            if rollout.step_seconds:
                step_us = float(np.median(rollout.step_seconds)) * 1e6
                reset_us = float(np.median(rollout.reset_seconds)) * 1e6
                findings.append(step_cost_finding(step_us, reset_us))
    except Exception as exc:  # whatever else goes wrong must not hide the findings so far
        findings.append(Finding("error", "doctor", f"checking stopped early on {exception_line(exc)}"))
    finally:
        _close(env)
        if other is not None:
            _close(other)
    findings = _drop_duplicates(findings)
    order = {level: i for i, level in enumerate(LEVELS)}
    findings.sort(key=lambda f: order.get(f.level, len(LEVELS)))
    return _Report(findings, spaces_line, time.perf_counter() - started)


def _make_env_finding(exc: BaseException, purpose: str = "") -> Finding:
    """``make_env`` raised: on the first call nothing can be checked, later only ``purpose`` is skipped."""
    if purpose:
        message = f"building the env for {purpose} raised {exception_line(exc)}; {purpose} skipped"
    else:
        message = f"building the env raised {exception_line(exc)}; nothing else checked"
    return Finding("error", "make-env", message)


def _drop_duplicates(findings: list[Finding]) -> list[Finding]:
    """Drop Gymnasium checker lines that a doctor error already reports more precisely (with a step
    number, over many steps): the same exception, non-determinism, an observation outside the space."""
    checks = {f.check for f in findings if f.level == "error"}
    raised = [f.message for f in findings if f.check == "env-exception"]
    covered = {
        "reset-determinism": ("determinis",),
        "step-determinism": ("determinis",),
        "obs-space": ("observation space", "obs returned", "observation returned"),
        "non-finite": ("nan", "inf value"),
    }
    kept: list[Finding] = []
    for finding in findings:
        if finding.check == "gymnasium-checker":
            if finding.level == "error" and any(finding.message.split(" raised ", 1)[-1] in m for m in raised):
                continue
            if any(phrase in finding.message.lower() for check in checks for phrase in covered.get(check, ())):
                continue
        if finding not in kept:
            kept.append(finding)
    return kept


def check_env(make_env: Callable[[], gym.Env], *, steps: int = 2000, seed: int = 0) -> list[Finding]:
    """Run every check on envs built by ``make_env``; the findings, errors first, then advice and info.

    ``steps`` seeded random steps feed the statistics; determinism replays min(300, steps) more,
    three times. An exception inside the env is an ``env-exception`` finding, never raised.
    """
    return _examine(make_env, steps, seed).findings


def run_doctor(
    make_env: Callable[[], gym.Env],
    name: str,
    *,
    steps: int = 2000,
    seed: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    """Check the env, print the report to ``out``, and return the exit status: 1 if any error, else 0."""
    report = _examine(make_env, steps, seed)
    header = f"{name}: {report.spaces}" if report.spaces else name
    print(f"{header} ({steps} random steps, seed {seed})", file=out)
    for finding in report.findings:
        print(f"{finding.level:<7} {finding.check}: {finding.message}", file=out)
    errors = sum(f.level == "error" for f in report.findings)
    advice = sum(f.level == "advice" for f in report.findings)
    verdict = f"{_count(errors, 'error')}, {advice} advice" if errors else "no errors"
    if not errors and advice:
        verdict += f", {advice} advice"
    print(f"{verdict} ({report.seconds:.1f} s)", file=out)
    return 1 if errors else 0
