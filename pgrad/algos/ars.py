"""Augmented Random Search (ARS): derivative-free search over the weights of a static policy.

Mania, Guy & Recht (2018), "Simple random search of static linear policies is competitive for
reinforcement learning", NeurIPS, arXiv:1803.07055, Algorithm 2. Each iteration j:

1. draw ``N = n_directions`` directions delta_k ~ N(0, I) of the policy's parameter shape;
2. roll out the two policies theta_j + nu * delta_k and theta_j - nu * delta_k (``nu = noise_std``)
   for one episode each (at most ``horizon`` steps), observations normalised with the statistics
   mu_j, Sigma_j frozen for the whole iteration (V2) or not at all (V1);
3. keep the ``b = n_top`` directions with the largest max(r(+), r(-)) (the "-t" variants; b = N
   is the plain V1 / V2) and let sigma_R be the standard deviation of those 2b returns;
4. theta_{j+1} = theta_j + alpha / (b * sigma_R) * sum_{k in top b} (r_k(+) - r_k(-)) delta_k,
   with ``alpha = lr``;
5. (V2) mu_{j+1}, Sigma_{j+1}: running mean and variance of every state seen so far in training.

Variants, as config values: V1 is ``normalize_obs=false``, V2 ``normalize_obs=true``; either
becomes "-t" with ``n_top < n_directions``. The policy is linear (a matrix, zero at start, as in
the paper) by default, or an MLP (``policy_type=mlp``).

Implementation choices, each for a reason:

- Directions are not sent to workers as arrays: direction k of iteration j is regenerated from
  the seed ``(seed, j, k)`` wherever it is needed (the paper's code ships indices into a shared
  noise table; seeded generation gives the same "indices, not arrays" traffic without holding a
  large table in every process). A worker gets ``(k,)`` and the weights, and returns two returns.
- Both rollouts of a direction reset the env with the same seed, derived from ``(seed, j, k)``:
  the pair then differs only by the perturbation (common random numbers), and a task's result
  does not depend on which worker ran it, so every backend and worker count gives the same run.
- The survival-bonus shift (``alive_bonus_shift``, the paper's sec. 4 / Table 9 "shift" for
  Hopper, Walker2d, Ant, Humanoid) is subtracted from every reward of the perturbed rollouts used
  for the update, never from the returns logged or evaluated.
- Step counting: the budget counts the env steps of all 2N perturbed rollouts, as the paper does.
  The evaluation rollouts of the unperturbed policy logged every ``eval_every`` iterations
  (``eval_return_mean``) do not count towards it, nor do they update the normaliser.
- Observation statistics: each rollout task returns (count, mean, variance) of the states its
  policies acted on; the main process merges them in task order (Chan et al.'s formula), so the
  result is independent of the order in which workers finish.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.algos.base import NOT_TRAINABLE, Algorithm, IterationResult
from pgrad.config import Config, check_hidden_sizes, param
from pgrad.envs import make_env
from pgrad.errors import ConfigError, NonFiniteError, UnsupportedSpaceError
from pgrad.nets import MLP, POLICY_OUTPUT_GAIN
from pgrad.normalize import ObservationNormalizer
from pgrad.numpy_twin.layers import ACTIVATIONS_BY_NAME, dense_network, forward
from pgrad.parallel import WorkerPool, default_workers, make_pool
from pgrad.policy import box_env_action, has_finite_bounds
from pgrad.rollout import EpisodeLog

# Distinct streams for the three uses of randomness derived from (seed, iteration, index).
_DIRECTION_STREAM, _RESET_STREAM, _EVAL_STREAM = 0, 1, 2


@dataclass(frozen=True)
class ARSConfig(Config):
    """ARS hyperparameters; defaults are SB3-contrib's ARS (its n_delta, learning_rate) with the
    paper's HalfCheetah noise. V1 / V2: ``normalize_obs``; the "-t" variants: ``n_top < n_directions``.
    ARS acts deterministically and learns from whole-episode returns, so it has none of the
    on-policy algorithms' fields (discount, action distribution, vector envs)."""

    RETIRED = (
        "n_envs",
        "gamma",
        "action_dist",
        "log_std_init",
        "state_dependent_std",
        "normalize_reward",
        "vectorization",
        "autoreset_mode",
    )  # inherited, unused, until 2026-12

    lr: float = param(0.02, "step size alpha of the update", low=0.0, low_open=True)
    noise_std: float = param(0.03, "exploration noise nu: std of the parameter perturbations", low=0.0, low_open=True)
    n_directions: int = param(8, "directions N sampled per iteration (2N rollouts)", low=1)
    n_top: int | None = param(
        None, "best directions b used in the update (none: all N, i.e. V1/V2; fewer: V1-t/V2-t)", low=1
    )
    horizon: int = param(1000, "maximum steps per rollout (the env's own time limit also applies)", low=1)
    alive_bonus_shift: float = param(
        0.0, "subtracted from every reward during training only (paper: 1 for Hopper, Walker2d, Ant; 5 for Humanoid)"
    )
    policy_type: str = param(
        "linear",
        "linear (a matrix, no bias, zero at start) or mlp (hidden_sizes, activation)",
        choices=("linear", "mlp"),
    )
    activation: str = param("tanh", "hidden activation of the mlp policy", choices=("tanh", "relu"))
    hidden_sizes: tuple[int, ...] = param((32, 32), "hidden layer widths of the mlp policy, e.g. 32,32")
    ortho_init: bool = param(
        True, "orthogonal init of the mlp policy (output gain 0.01); false: PyTorch's default init"
    )
    normalize_obs: bool = param(True, "V2: normalize observations by the running mean/std of visited states")
    n_workers: int | None = param(
        None, "rollout worker processes (none: one per core this seed may use; 0: in this process)", low=0
    )
    backend: str = param(
        "local", "where workers run: local processes or Ray actors (same results)", choices=("local", "ray")
    )
    eval_every: int = param(
        10, "evaluate the unperturbed policy every this many iterations for logging (0: never)", low=0
    )
    eval_episodes: int = param(5, "episodes per logging evaluation (not counted in the step budget)", low=1)

    def validate(self) -> None:
        super().validate()
        if self.n_top is not None and self.n_top > self.n_directions:
            raise ConfigError(f"n_top={self.n_top} must be at most n_directions={self.n_directions}")
        check_hidden_sizes(self.hidden_sizes)


# -- pure maths -----------------------------------------------------------------------------


def _stream(seed: int, stream: int, iteration: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, iteration, index]))


def perturbation(seed: int, iteration: int, index: int, size: int) -> np.ndarray:
    """Direction ``index`` of ``iteration``: ``size`` standard normal float64s, the same everywhere."""
    return _stream(seed, _DIRECTION_STREAM, iteration, index).standard_normal(size)


def reset_seed(seed: int, iteration: int, index: int, evaluation: bool = False) -> int:
    """Env reset seed of direction ``index`` (both of its rollouts) or of evaluation episode ``index``."""
    stream = _EVAL_STREAM if evaluation else _RESET_STREAM
    return int(_stream(seed, stream, iteration, index).integers(2**31 - 1))


def top_directions(rewards_plus: np.ndarray, rewards_minus: np.ndarray, n_top: int | None) -> np.ndarray:
    """Indices of the ``n_top`` directions with the largest max(r+, r-), best first (all if None).

    A stable sort breaks ties by direction index, so the choice is deterministic.
    """
    scores = np.maximum(rewards_plus, rewards_minus)
    order = np.argsort(-scores, kind="stable")
    return order if n_top is None else order[:n_top]


def ars_step(
    rewards_plus: np.ndarray, rewards_minus: np.ndarray, directions: np.ndarray, n_top: int | None
) -> tuple[np.ndarray, float]:
    """The ARS update direction (before the step size) and sigma_R.

    ``step = sum_{k in top b} (r_k(+) - r_k(-)) delta_k / (b * sigma_R)`` where sigma_R is the
    standard deviation of the 2b returns of the kept directions (Mania et al. 2018, Algorithm 2,
    line 7). ``directions`` is ``(N, n_params)``. If all 2b returns are equal the step is zero.
    """
    rewards_plus = np.asarray(rewards_plus, dtype=np.float64)
    rewards_minus = np.asarray(rewards_minus, dtype=np.float64)
    top = top_directions(rewards_plus, rewards_minus, n_top)
    kept_plus, kept_minus = rewards_plus[top], rewards_minus[top]
    reward_std = float(np.std(np.concatenate([kept_plus, kept_minus])))
    weights = kept_plus - kept_minus  # (b,)
    step = weights @ directions[top] / (len(top) * max(reward_std, 1e-12))
    return step, reward_std


def normalize_observation(obs: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None, clip: float) -> np.ndarray:
    """``clip((obs - mean) / std, -clip, clip)``; identity without statistics (V1)."""
    if mean is None:
        return obs
    return np.clip((obs - mean) / std, -clip, clip)


def layer_shapes(
    obs_size: int, action_size: int, policy_type: str, hidden_sizes: tuple[int, ...]
) -> list[tuple[int, int, bool]]:
    """``(out, in, has_bias)`` per layer, in the order the flat parameter vector holds them."""
    if policy_type == "linear":
        return [(action_size, obs_size, False)]
    widths = [obs_size, *hidden_sizes, action_size]
    return [(widths[i + 1], widths[i], True) for i in range(len(widths) - 1)]


def unflatten(theta: np.ndarray, shapes: list[tuple[int, int, bool]]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Split a flat parameter vector into ``(weight (out, in), bias (out,) or None)`` views."""
    layers, offset = [], 0
    for out_size, in_size, has_bias in shapes:
        weight = theta[offset : offset + out_size * in_size].reshape(out_size, in_size)
        offset += out_size * in_size
        bias = None
        if has_bias:
            bias = theta[offset : offset + out_size]
            offset += out_size
        layers.append((weight, bias))
    if offset != theta.size:
        raise ValueError(f"parameter vector of size {theta.size} does not match layers {shapes}")
    return layers


def policy_forward(layers: list[tuple[np.ndarray, np.ndarray | None]], x: np.ndarray, activation: str) -> np.ndarray:
    """Raw actions of the linear / MLP policy for normalised observations ``x`` (``(obs,)`` or ``(B, obs)``)."""
    return forward(dense_network(layers, ACTIVATIONS_BY_NAME[activation]), x)


# -- the policy (what is saved) -------------------------------------------------------------


class ARSPolicy(nn.Module):
    """Observation normaliser (V2) and a linear map or MLP from observations to raw actions.

    Raw actions live in [-1, 1] per dimension for bounded Box actions and are clipped and
    rescaled to the env's bounds, exactly as for the other pgrad policies (``box_env_action``).
    The weights are torch parameters so they are saved, checkpointed and loaded like every
    other policy; acting goes through the numpy functions above, in training and in ``predict``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        policy_type: str,
        hidden_sizes: tuple[int, ...],
        activation: str,
        normalize_obs: bool,
    ) -> None:
        super().__init__()
        check_spaces(observation_space, action_space)
        self.observation_space, self.action_space = observation_space, action_space
        self.obs_size = int(np.prod(observation_space.shape))
        self.action_size = int(np.prod(action_space.shape))
        self.obs_normalizer = ObservationNormalizer((self.obs_size,)) if normalize_obs else None
        self.activation = activation
        self.shapes = layer_shapes(self.obs_size, self.action_size, policy_type, hidden_sizes)
        if policy_type == "linear":
            # The paper starts from M = 0: every first perturbation explores around "do nothing".
            self.net = nn.Linear(self.obs_size, self.action_size, bias=False)
            nn.init.zeros_(self.net.weight)
        else:
            self.net = MLP(
                self.obs_size, hidden_sizes, activation, out_features=self.action_size, out_gain=POLICY_OUTPUT_GAIN
            )
        self.rescale_actions = has_finite_bounds(action_space)
        self.spec = {
            "policy_type": policy_type,
            "hidden_sizes": list(hidden_sizes),
            "activation": activation,
            "normalize_obs": normalize_obs,
        }

    deterministic = True  # acts without sampling; pgrad export uses forward() below

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw actions for raw observations ``(B, obs_size)`` in torch (the ONNX export path)."""
        return self.net(self.obs_normalizer(obs) if self.obs_normalizer is not None else obs)

    def flat_parameters(self) -> np.ndarray:
        """All weights as one float64 vector, in ``self.shapes`` order."""
        return torch.nn.utils.parameters_to_vector(self.parameters()).detach().to(torch.float64).numpy()

    def set_flat_parameters(self, theta: np.ndarray) -> None:
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta, dtype=torch.float32), self.parameters())

    def normalizer_statistics(self) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """``(mean, std, clip)`` the normaliser applies now (``None, None`` for V1), in float64."""
        if self.obs_normalizer is None:
            return None, None, math.inf
        stats = self.obs_normalizer.stats
        mean = stats.mean.numpy().copy()
        std = np.sqrt(stats.var.numpy() + self.obs_normalizer.eps)
        return mean, std, float(self.obs_normalizer.clip)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Env actions for raw observations ``(B, obs_size)`` with the current, frozen statistics."""
        mean, std, clip = self.normalizer_statistics()
        x = normalize_observation(np.asarray(obs, dtype=np.float64), mean, std, clip)
        raw = policy_forward(unflatten(self.flat_parameters(), self.shapes), x, self.activation)
        return box_env_action(raw, self.action_space, self.rescale_actions)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """ARS searches a deterministic map from a flat float vector to a continuous action."""
    if not isinstance(action_space, spaces.Box):
        raise UnsupportedSpaceError(
            f"ARS does not support the action space {action_space}; supported: Box (continuous) actions. "
            "For Discrete actions use ppo, a2c or reinforce"
        )
    if not isinstance(observation_space, spaces.Box):
        raise UnsupportedSpaceError(
            f"ARS does not support the observation space {observation_space}; supported: Box observations"
        )


# -- the rollout worker (runs in worker processes, Ray actors or in process) ---------------


class ARSRolloutWorker:
    """Owns one env; runs the two rollouts of a direction, or one evaluation episode."""

    def __init__(
        self, env: Any, seed: int, horizon: int, alive_bonus_shift: float, shapes: list, activation: str
    ) -> None:
        self.owns_env = not isinstance(env, gym.Env)  # never close an env the user passed in
        self.env = make_env(env)
        check_spaces(self.env.observation_space, self.env.action_space)
        self.rescale = has_finite_bounds(self.env.action_space)
        self.seed, self.horizon, self.shift = seed, horizon, alive_bonus_shift
        self.shapes, self.activation = shapes, activation

    def __call__(self, payload: dict[str, Any], task: tuple[str, int]) -> dict[str, Any]:
        kind, index = task
        theta, iteration = payload["theta"], payload["iteration"]
        normalizer = (payload["obs_mean"], payload["obs_std"], payload["obs_clip"])
        if kind == "evaluate":
            episode_return, length, _ = self.rollout(
                theta, normalizer, reset_seed(self.seed, iteration, index, evaluation=True)
            )
            return {"return": episode_return, "length": length}
        delta = perturbation(self.seed, iteration, index, theta.size)
        start = reset_seed(self.seed, iteration, index)
        nu = payload["noise_std"]
        plus = self.rollout(theta + nu * delta, normalizer, start)
        minus = self.rollout(theta - nu * delta, normalizer, start)
        seen = np.concatenate([plus[2], minus[2]])  # (T+ + T-, obs) states both policies acted on
        return {
            # Shifted returns drive the update; raw ones are what is logged (sec. 4 of the paper).
            "shifted": (plus[0] - self.shift * plus[1], minus[0] - self.shift * minus[1]),
            "returns": (plus[0], minus[0]),
            "lengths": (plus[1], minus[1]),
            "obs_count": seen.shape[0],
            "obs_mean": seen.mean(axis=0),
            "obs_var": seen.var(axis=0),
        }

    def rollout(self, theta: np.ndarray, normalizer: tuple, seed: int) -> tuple[float, int, np.ndarray]:
        """One episode of the deterministic policy ``theta``: (raw return, length, states acted on)."""
        layers = unflatten(theta, self.shapes)
        mean, std, clip = normalizer
        obs, _ = self.env.reset(seed=seed)
        states, total = [], 0.0
        for _ in range(self.horizon):
            state = np.asarray(obs, dtype=np.float64).reshape(-1)
            states.append(state)
            raw = policy_forward(layers, normalize_observation(state, mean, std, clip), self.activation)
            obs, reward, terminated, truncated, _ = self.env.step(
                box_env_action(raw, self.env.action_space, self.rescale)
            )
            total += float(reward)
            if terminated or truncated:
                break
        if not math.isfinite(total):
            raise NonFiniteError(f"the env returned a non-finite reward (episode return {total})")
        return total, len(states), np.stack(states)

    def close(self) -> None:
        if self.owns_env:
            self.env.close()


# -- the algorithm --------------------------------------------------------------------------


class ARS(Algorithm):
    """Augmented Random Search (V1, V2, V1-t, V2-t): linear or MLP policy, parallel rollouts."""

    name = "ars"
    Config = ARSConfig
    uses_critic = False

    def build_policy(self) -> ARSPolicy:
        c = self.config
        if self.encoder_class is not None:
            raise ConfigError("ars searches linear or MLP maps of flat observations and takes no custom encoder")
        policy = ARSPolicy(
            self.observation_space, self.action_space, c.policy_type, c.hidden_sizes, c.activation, c.normalize_obs
        )
        if c.policy_type == "mlp" and not c.ortho_init:
            for layer in policy.net.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        return policy

    def fast_path_problem(self) -> None:
        """ARS always acts through the numpy twin's forward (pgrad/numpy_twin/layers.py)."""
        return None

    def setup(self) -> None:
        self.pool: WorkerPool | None = None
        self.last_eval_return = math.nan

    def checkpoint_extra(self) -> tuple[dict, dict]:
        # the last logging evaluation is repeated in every metrics row until the next one
        last = None if math.isnan(self.last_eval_return) else self.last_eval_return
        return {"last_eval_return": last}, {}

    def restore_checkpoint_extra(self, state: dict, tensors: dict) -> None:
        last = state.get("last_eval_return")
        self.last_eval_return = math.nan if last is None else float(last)

    def make_envs(self) -> None:
        """None: ARS's workers build and step their own envs (ARSRolloutWorker)."""
        return None

    def env_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        probe = make_env(self.env)
        try:
            return probe.observation_space, probe.action_space
        finally:
            if probe is not self.env:  # an env instance passed in belongs to the caller
                probe.close()

    def _ensure_collector(self) -> None:
        # ARS does not use the shared collector: workers roll out whole episodes themselves.
        if not self.trainable:
            raise ConfigError(NOT_TRAINABLE)

    def _start_pool(self) -> WorkerPool:
        c = self.config
        n_workers = c.n_workers
        if c.backend == "local":
            n_workers = min(default_workers() if n_workers is None else n_workers, c.n_directions)
            if n_workers > 0 and isinstance(self.env, gym.Env):
                raise ConfigError(
                    f"an env instance ({self.env_id}) cannot be sent to worker processes; pass an id or a "
                    "module-level callable, or n_workers=0 to roll out in this process"
                )
        factory = functools.partial(
            ARSRolloutWorker, self.env, self.seed, c.horizon, c.alive_bonus_shift, self.policy.shapes, c.activation
        )
        return make_pool(factory, n_workers, c.backend)

    def learn(self, total_steps: int, run_dir: str | Path | None = None, **kwargs: Any) -> ARS:
        """As :meth:`Algorithm.learn`; the step budget counts the env steps of all perturbed rollouts
        (evaluation rollouts logged as ``eval_return_mean`` do not count). Workers stop at the end."""
        try:
            return super().learn(total_steps, run_dir, **kwargs)
        finally:
            self.stop_workers()

    def stop_workers(self) -> None:
        if getattr(self, "pool", None) is not None:
            self.pool.close()
            self.pool = None

    def _payload(self) -> dict[str, Any]:
        mean, std, clip = self.policy.normalizer_statistics()
        return {
            "theta": self.policy.flat_parameters(),
            "iteration": self.updates,
            "noise_std": self.config.noise_std,
            "obs_mean": mean,
            "obs_std": std,
            "obs_clip": clip,
        }

    def train_iteration(self, progress_remaining: float) -> IterationResult:
        c = self.config
        if self.pool is None:
            self.pool = self._start_pool()
        payload = self._payload()
        theta = payload["theta"]
        results = self.pool.map(payload, [("direction", k) for k in range(c.n_directions)])
        self.rollout_end()

        shifted = np.array([r["shifted"] for r in results])  # (N, 2): r(+), r(-) with the shift
        directions = np.stack([perturbation(self.seed, self.updates, k, theta.size) for k in range(c.n_directions)])
        step, reward_std = ars_step(shifted[:, 0], shifted[:, 1], directions, c.n_top)
        self.policy.set_flat_parameters(theta + c.lr * step)

        # Statistics for the next iteration: every state the perturbed policies acted on (V2).
        if self.policy.obs_normalizer is not None:
            for r in results:
                self.policy.obs_normalizer.stats.merge(r["obs_mean"], r["obs_var"], r["obs_count"])

        episodes = EpisodeLog()
        step_count = self.total_steps
        for r in results:
            for episode_return, length in zip(r["returns"], r["lengths"]):
                step_count += length
                episodes.steps.append(step_count)
                episodes.returns.append(episode_return)
                episodes.lengths.append(length)
        n_transitions = step_count - self.total_steps

        if c.eval_every and self.updates % c.eval_every == 0:
            evaluation = self.pool.map(self._payload(), [("evaluate", i) for i in range(c.eval_episodes)])
            self.last_eval_return = float(np.mean([e["return"] for e in evaluation]))
        metrics = {
            "rollout_return_mean": float(np.mean(episodes.returns)),
            "rollout_return_max": float(np.max(episodes.returns)),
            "reward_std": reward_std,
            "step_norm": float(np.linalg.norm(c.lr * step)),
            "eval_return_mean": self.last_eval_return,
        }
        return IterationResult(n_transitions=int(n_transitions), episodes=episodes, metrics=metrics)

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Env actions for one observation or a batch (ARS policies are deterministic)."""
        obs_array = np.asarray(obs, dtype=np.float64)
        single = obs_array.shape == tuple(self.observation_space.shape)
        action = self.policy.act(obs_array.reshape(-1, self.policy.obs_size))
        return action[0] if single else action

    def close(self) -> None:
        self.stop_workers()
        super().close()
