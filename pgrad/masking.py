"""Invalid-action masking: where an env says which actions are allowed, and checking what it says.

An env reports the allowed actions either in ``info["action_mask"]`` (Gymnasium's convention, e.g.
its Taxi-v3) or as an ``action_mask`` key of a Dict observation (PettingZoo's). The mask is a
bool (or 0/1) array with one entry per logit of the policy's head: ``n`` entries for
``Discrete(n)``; for ``MultiDiscrete(nvec)`` the entries of each sub-action side by side
(``sum(nvec)``), or a tuple of one array per sub-action, as ``MultiDiscrete.sample(mask=...)``
takes it.

The policy stores each step's mask as extra columns of its observation vector, so the rollout,
the minibatches and the loss carry it with no change to the algorithms; its heads set the logits
of masked actions to a large negative number (pgrad/distributions.py, ``masked_logits``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from pgrad.errors import ConfigError

MASK_KEY = "action_mask"
ACTION_MASK_CHOICES = ("auto", "on", "off")


def mask_size(action_space: spaces.Space) -> int:
    """Entries of a mask for ``action_space``: Discrete ``n``, MultiDiscrete ``sum(nvec)``."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    raise ConfigError(
        f"invalid-action masking applies to Discrete and MultiDiscrete actions, not {action_space}; set action_mask=off"
    )


def check_action_mask(mask: Any, batch: int, action_space: spaces.Space, where: str) -> np.ndarray:
    """``mask`` (one row or ``batch`` rows) as a bool ``(batch, mask_size)`` array.

    Raises ConfigError (one line, saying ``where``) for a wrong shape or dtype, and for a row that
    allows no action (for MultiDiscrete: a sub-action with no allowed value).
    """
    size = mask_size(action_space)
    if isinstance(mask, (tuple, list)) and isinstance(action_space, spaces.MultiDiscrete):
        mask = np.concatenate([np.asarray(part).reshape(batch, -1) for part in mask], axis=-1)
    array = np.asarray(mask)
    if array.dtype != np.bool_ and not (
        np.issubdtype(array.dtype, np.integer) and bool(np.all((array == 0) | (array == 1)))
    ):
        raise ConfigError(f"action mask {where} has dtype {array.dtype}; expected bool (or integers 0/1)")
    if array.size != batch * size:
        raise ConfigError(
            f"action mask {where} has shape {array.shape}; expected ({size},) per observation for {action_space}"
        )
    rows = array.reshape(batch, size).astype(bool)
    parts = [size] if isinstance(action_space, spaces.Discrete) else list(np.asarray(action_space.nvec).reshape(-1))
    for part in np.split(rows, np.cumsum(parts)[:-1], axis=1):
        empty = ~part.any(axis=1)
        if empty.any():
            raise ConfigError(f"action mask {where} allows no action (row {int(np.flatnonzero(empty)[0])})")
    return rows


def info_masks(info: dict[str, Any], n_envs: int, size: int) -> np.ndarray | None:
    """The ``(n_envs, size)`` masks a vector env's step or reset info holds (Gymnasium batches
    ``info["action_mask"]`` with a presence flag ``info["_action_mask"]``); envs that reported no
    mask allow every action. None if no env reported one."""
    if MASK_KEY not in info:
        return None
    masks = np.asarray(info[MASK_KEY])
    present = np.asarray(info.get(f"_{MASK_KEY}", np.ones(n_envs, dtype=bool)))
    if present.all():
        return masks
    full = np.ones((n_envs, size), dtype=bool)
    full[present] = masks[present].reshape(int(present.sum()), size)
    return full


def observation_without_mask(space: spaces.Space) -> spaces.Space:
    """A Dict observation space without its ``action_mask`` key (what the networks read)."""
    return spaces.Dict({key: sub for key, sub in space.spaces.items() if key != MASK_KEY})


def has_mask_key(space: spaces.Space) -> bool:
    """Whether ``space`` is a Dict observation with an ``action_mask`` key."""
    return isinstance(space, spaces.Dict) and MASK_KEY in space.spaces
