"""Return and advantage estimators: pure functions over time-first batches.

Every input is laid out ``(T, n_envs)`` (or ``(T,)`` for a single stream): row ``t`` holds what
the vector env returned for step ``t``. Numpy arrays and torch tensors are both accepted; the
outputs have the type, dtype and device of ``rewards``.

Episode ends come as two flags, kept apart because they mean different things (Pardo et al. 2018,
"Time Limits in Reinforcement Learning", sec. 3):

- ``terminated[t]``: the MDP reached a terminal state; the future after step ``t`` is worth 0.
- ``truncated[t]``: the episode was cut (time limit) in a state whose future is still worth
  V(s_{t+1}); the next row belongs to a new episode, so nothing flows back across it, but the
  value of the final observation is still bootstrapped where a critic exists.

If both are set on the same step, terminated wins: the state really was terminal.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

__all__ = ["gae", "discounted_returns"]

# Dtypes a CPU tensor can share memory with numpy in; the backward recursion runs several times
# faster over numpy rows than over torch rows (BENCHMARKS.md, "Speed"), because each torch op
# carries microseconds of dispatch overhead.
_NUMPY_SHAREABLE_DTYPES = (torch.float16, torch.float32, torch.float64)


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Array, Array]:
    r"""Generalized Advantage Estimation, with time-limit truncation handled correctly.

    Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
    Estimation", eq. 11-16: the TD residual of step ``t`` is

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t

    and the advantage is the exponentially weighted sum of residuals of the same episode,
    computed backwards from ``adv_T = 0``:

        adv_t = delta_t + gamma * lam * (1 - (terminated_t or truncated_t)) * adv_{t+1}
        returns_t = adv_t + values_t            (the TD(lambda) target for the critic)

    ``next_values[t]`` must be V of the observation that followed step ``t``; where the episode
    ended at ``t`` that is the episode's *final* observation, never the reset observation of the
    next episode. A truncated step therefore still bootstraps with V(final observation) (Pardo
    et al. 2018, sec. 3), but its advantage does not accumulate the next episode's residuals.
    At the cut end of the batch (t = T-1, episode still running) ``next_values[T-1]`` bootstraps
    the whole tail, as in PPO's truncated GAE (Schulman et al. 2017, eq. 11-12).

    Args:
        rewards: ``(T, n_envs)`` or ``(T,)``; its type, dtype and device are those of the outputs
            (integer rewards give float64 numpy / default-dtype torch outputs).
        values: V(s_t), same shape as ``rewards``.
        next_values: V(s_{t+1}) as described above, same shape.
        terminated: bool or 0/1 floats, same shape; the step reached a terminal state.
        truncated: bool or 0/1 floats, same shape; the episode was cut after this step.
        gamma: discount factor in [0, 1].
        lam: GAE lambda in [0, 1]; 0 gives one-step TD advantages, 1 Monte-Carlo ones.

    Returns:
        ``(advantages, returns)``, each shaped like ``rewards``. They are targets, not part of
        any graph: torch outputs never require grad.
    """
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    views = _numpy_views(rewards, values, next_values, terminated, truncated)
    if views is not None:
        # The same elementwise float arithmetic in numpy, on views: each torch op on rows this
        # small costs microseconds of dispatch, and A2C calls this every 5 steps.
        advantages, returns = gae(*views, gamma=gamma, lam=lam)
        return torch.from_numpy(advantages), torch.from_numpy(returns)
    rewards, (values, next_values), (terminated, truncated) = _align(
        "gae",
        rewards,
        {"values": values, "next_values": next_values},
        {"terminated": terminated, "truncated": truncated},
    )

    # The two flags play different roles: only termination zeroes the bootstrap value, while
    # either ends the episode and so stops the advantage from reaching into the next one.
    not_terminal = 1 - _to_float(terminated, rewards)  # (T, ...) 1.0 where V(s_{t+1}) counts
    episode_continues = 1 - _to_float(terminated | truncated, rewards)  # (T, ...)
    deltas = rewards + gamma * not_terminal * next_values - values  # (T, ...)
    advantages = _backward_discounted_sum(
        deltas, gamma * lam * episode_continues, initial=_zeros_like_row(rewards)
    )  # (T, ...)
    return advantages, advantages + values


def discounted_returns(
    rewards: Array,
    terminated: Array,
    truncated: Array,
    gamma: float,
    last_values: Array | float | None = None,
    *,
    next_values: Array | None = None,
) -> Array:
    r"""Monte-Carlo discounted returns (reward-to-go), episode by episode.

    The return of REINFORCE (Williams 1992; Sutton & Barto 2018, sec. 13.3), computed backwards:

        G_t = r_t + gamma * truncated_only_t * next_values_t
                  + gamma * (1 - (terminated_t or truncated_t)) * G_{t+1}
        G_T = last_values   (or 0 when ``last_values`` is None)

    where ``truncated_only_t`` is 1 where the step was truncated and not terminated. So
    ``last_values`` only reaches step ``T-1`` when that step did not end its episode, i.e. when
    the batch was cut in the middle of an episode.

    A truncated step *inside* the batch is bootstrapped only if ``next_values`` is given: its
    return is then ``r_t + gamma * V(final observation)`` (Pardo et al. 2018, sec. 3), as a
    baseline's critic allows. Without it (pure Monte-Carlo, no critic) the return is the sum of
    the rewards seen until the cut, which underestimates the return of states near a time limit:
    the usual REINFORCE trade-off.

    Args:
        rewards: ``(T, n_envs)`` or ``(T,)``; its type, dtype and device are those of the output.
        terminated: bool or 0/1 floats, same shape as ``rewards``.
        truncated: bool or 0/1 floats, same shape as ``rewards``.
        gamma: discount factor in [0, 1].
        last_values: estimate of the return after the last step, shape ``(n_envs,)`` (``()``
            for 1-D rewards) or a scalar; None means 0.
        next_values: same shape as ``rewards``; ``next_values[t]`` is V of the observation that
            followed step ``t`` (the episode's final observation where it ended at ``t``). Only
            read at truncated, non-terminated steps; None means truncation is not bootstrapped.

    Returns:
        The returns, shaped like ``rewards``; torch outputs never require grad.
    """
    _check_unit_interval("gamma", gamma)
    views = _numpy_views(rewards, terminated, truncated, *(() if next_values is None else (next_values,)))
    if views is not None:  # the same arithmetic in numpy, on views, as in gae
        rewards_view, terminated_view, truncated_view, *next_values_view = views
        returns = discounted_returns(
            rewards_view,
            terminated_view,
            truncated_view,
            gamma,
            last_values,
            next_values=next_values_view[0] if next_values_view else None,
        )
        return torch.from_numpy(returns)
    bootstrap_inputs = {} if next_values is None else {"next_values": next_values}
    rewards, bootstrap, (terminated, truncated) = _align(
        "discounted_returns", rewards, bootstrap_inputs, {"terminated": terminated, "truncated": truncated}
    )
    episode_continues = 1 - _to_float(terminated | truncated, rewards)  # (T, ...)
    increments = rewards  # (T, ...)
    if bootstrap:
        # A time-limit cut ends the recursion like a terminal state but keeps the value of the
        # state it cut in: fold gamma * V(final obs) into the last reward of the episode.
        truncated_only = _to_float(truncated & ~terminated, rewards)  # (T, ...)
        increments = rewards + gamma * truncated_only * bootstrap[0]
    tail = _zeros_like_row(rewards)  # (n_envs,) or ()
    if last_values is not None:
        if _shape(last_values) not in ((), tuple(rewards.shape[1:])):
            raise ValueError(
                f"discounted_returns: last_values has shape {_shape(last_values)} but must be "
                f"{tuple(rewards.shape[1:])} (one value per env) or a scalar"
            )
        tail = tail + _as_like(last_values, rewards)  # (n_envs,) or (), a scalar broadcast
    return _backward_discounted_sum(increments, gamma * episode_continues, initial=tail)


def _backward_discounted_sum(increments: Array, decay: Array, initial: Array) -> Array:
    """``out_t = increments_t + decay_t * out_{t+1}`` for t = T-1..0, with ``out_T = initial``.

    One Python iteration per time step over whole ``(n_envs,)`` rows; the recursion is
    sequential in t, so this loop is the irreducible part (a parallel scan would only pay off for
    T far beyond a rollout's length).
    """
    out = (
        torch.empty_like(increments) if isinstance(increments, torch.Tensor) else np.empty_like(increments)
    )  # (T, ...)
    carry = initial  # (...)
    for t in range(increments.shape[0] - 1, -1, -1):
        carry = increments[t] + decay[t] * carry
        out[t] = carry
    return out


def _numpy_views(rewards: Array, *others: Array) -> list[np.ndarray] | None:
    """Numpy views of CPU tensors whose rewards numpy can share memory with; None otherwise."""
    tensors = (rewards, *others)
    if not all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tensors):
        return None
    if rewards.dtype not in _NUMPY_SHAREABLE_DTYPES or any(
        t.dtype in (torch.bfloat16, torch.complex64, torch.complex128) for t in others
    ):
        return None
    try:
        return [t.detach().numpy() for t in tensors]
    except RuntimeError:  # a conjugate or negative view numpy cannot share
        return None


def _align(
    function: str,
    rewards: Array,
    float_inputs: dict[str, Array],
    flag_inputs: dict[str, Array],
) -> tuple[Array, list[Array], list[Array]]:
    """Check shapes and bring every input to ``rewards``' backend: floats in its dtype, flags bool.

    Torch inputs are detached: the estimates are used as fixed targets and weights.
    """
    if isinstance(rewards, torch.Tensor):
        rewards = rewards.detach()
        if not rewards.is_floating_point():
            rewards = rewards.to(torch.get_default_dtype())
    else:
        rewards = np.asarray(rewards)
        if not np.issubdtype(rewards.dtype, np.floating):
            rewards = rewards.astype(np.float64)
    if rewards.ndim not in (1, 2):
        raise ValueError(f"{function}: rewards has shape {_shape(rewards)}; expected time-first (T,) or (T, n_envs)")
    for name, array in {**float_inputs, **flag_inputs}.items():
        if _shape(array) != tuple(rewards.shape):
            raise ValueError(
                f"{function}: {name} has shape {_shape(array)} but rewards has shape "
                f"{tuple(rewards.shape)}; all inputs must share it"
            )
    floats = [_as_like(array, rewards) for array in float_inputs.values()]
    flags = [_as_like(array, rewards) != 0 for array in flag_inputs.values()]
    return rewards, floats, flags


def _as_like(array, like: Array) -> Array:
    """``array`` as the backend, dtype and device of ``like``, without tracking gradients."""
    if isinstance(like, torch.Tensor):
        if isinstance(array, torch.Tensor):
            return array.detach().to(device=like.device, dtype=like.dtype)
        return torch.as_tensor(np.asarray(array), dtype=like.dtype, device=like.device)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=like.dtype)


def _to_float(flags: Array, like: Array) -> Array:
    return flags.to(like.dtype) if isinstance(flags, torch.Tensor) else flags.astype(like.dtype)


def _zeros_like_row(rewards: Array) -> Array:
    """Zeros shaped like one time step of ``rewards``: ``(n_envs,)``, or ``()`` for 1-D input."""
    if isinstance(rewards, torch.Tensor):
        return torch.zeros(rewards.shape[1:], dtype=rewards.dtype, device=rewards.device)
    return np.zeros(rewards.shape[1:], dtype=rewards.dtype)


def _shape(array) -> tuple[int, ...]:
    return tuple(array.shape) if hasattr(array, "shape") else np.shape(array)


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
