"""From any supported observation space to the one flat float vector a policy stores and reads.

Every policy in pgrad reads a flat float32 vector per observation: the rollout buffer, the
minibatches and the normaliser all work on ``(B, size)`` arrays, whatever the env returns.
:class:`ObservationLayout` is the map from the env's space to that vector, as plain data and
pure numpy: which piece of the observation goes where, and how it is encoded.

- Box (not an image): its values, flattened.
- Image Box (3-D; uint8, bool, or floats in [0, 1]): its pixels flattened channels-first, uint8
  scaled by 1/255; the policy's encoder reshapes them back to ``(C, H, W)`` for a CNN.
- Discrete: one-hot. MultiDiscrete: one one-hot per entry, concatenated. MultiBinary: its bits.
- Dict: each key's piece in the sorted order of its keys (the order Gymnasium's Dict space keeps),
  recorded in policy.json. Tuple: each element in order, named ``"0"``, ``"1"``, ...

A flat Box and a Discrete space give exactly the vector pgrad has always used, so policies on
them compute what they always did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from pgrad.errors import UnsupportedSpaceError

SUPPORTED = (
    "supported: Box (vectors of any shape; 3-D uint8 or [0, 1] images), Discrete, MultiDiscrete, MultiBinary, "
    "and Dict or Tuple of these"
)


@dataclass(frozen=True)
class Piece:
    """Where one leaf of the observation goes in the flat vector."""

    key: str  # "" for a space that is not a Dict/Tuple; "image", "0", "a.b" inside one
    kind: str  # "vector", "image", "one_hot" or "bits"
    space: spaces.Space
    offset: int  # first column in the flat vector
    size: int  # number of columns
    image_shape: tuple[int, int, int] | None = None  # (C, H, W) for an image
    channels_last: bool = False  # an image the env gives as (H, W, C)

    def encode(self, values: np.ndarray, batch: int) -> np.ndarray:
        """This piece of ``batch`` observations as ``(batch, size)`` float32."""
        if self.kind == "one_hot":
            if isinstance(self.space, spaces.Discrete):
                index = np.asarray(values, dtype=np.int64).reshape(batch, 1) - int(self.space.start)
                nvec = np.array([int(self.space.n)])
            else:
                index = np.asarray(values, dtype=np.int64).reshape(batch, -1) - np.asarray(self.space.start).reshape(
                    1, -1
                )
                nvec = np.asarray(self.space.nvec).reshape(-1)
            offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
            out = np.zeros((batch, self.size), dtype=np.float32)
            out[np.arange(batch)[:, None], offsets[None, :] + index] = 1.0
            return out
        array = np.asarray(values)
        if self.kind == "image":
            if self.channels_last:
                array = np.moveaxis(array.reshape(batch, *array.shape[-3:]), -1, 1)
            scale = 1.0 / 255.0 if array.dtype == np.uint8 else 1.0
            return (array.reshape(batch, self.size).astype(np.float32)) * np.float32(scale)
        return array.reshape(batch, self.size).astype(np.float32)


def image_layout(space: spaces.Box) -> tuple[tuple[int, int, int], bool] | None:
    """``((C, H, W), channels_last)`` if ``space`` is an image pgrad feeds to a CNN, else None.

    An image is a 3-D Box of uint8 (0..255), bool, or floats within [0, 1]. The channel axis is
    the smaller end axis: (H, W, C) when the last axis is no longer than the first two (MiniGrid's
    (7, 7, 3), MinAtar's (10, 10, n), CarRacing's (96, 96, 3)), otherwise (C, H, W) when the first
    is no longer than the other two (a frame stack's (4, 84, 84)).
    """
    if len(space.shape) != 3:
        return None
    is_pixels = space.dtype == np.uint8 or space.dtype == np.bool_
    is_unit = np.issubdtype(space.dtype, np.floating) and bool(np.all(space.low >= 0.0) and np.all(space.high <= 1.0))
    if not (is_pixels or is_unit):
        return None
    a, b, c = space.shape
    if c <= min(a, b):
        return (c, a, b), True
    if a <= min(b, c):
        return (a, b, c), False
    raise UnsupportedSpaceError(
        f"image observation of shape {space.shape}: cannot tell its channel axis; expected (H, W, C) or (C, H, W) "
        "with the fewest entries on the channel axis"
    )


def _leaves(space: spaces.Space, prefix: str) -> Iterator[tuple[str, spaces.Space]]:
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _leaves(sub, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(space, spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            yield from _leaves(sub, f"{prefix}.{index}" if prefix else str(index))
    else:
        yield prefix, space


def _piece(key: str, space: spaces.Space, offset: int) -> Piece:
    where = f"observation key {key!r}" if key else "observation space"
    if isinstance(space, spaces.Box):
        image = image_layout(space)
        if image is not None:
            return Piece(key, "image", space, offset, int(np.prod(image[0])), image[0], image[1])
        return Piece(key, "vector", space, offset, int(np.prod(space.shape)))
    if isinstance(space, spaces.Discrete):
        return Piece(key, "one_hot", space, offset, int(space.n))
    if isinstance(space, spaces.MultiDiscrete):
        return Piece(key, "one_hot", space, offset, int(np.sum(space.nvec)))
    if isinstance(space, spaces.MultiBinary):
        return Piece(key, "bits", space, offset, int(np.prod(space.shape)))
    way_out = " (choose the keys to use with --set obs_keys=KEY,KEY)" if key else ""
    raise UnsupportedSpaceError(f"{where} is {type(space).__name__}, which pgrad cannot encode{way_out}; {SUPPORTED}")


class ObservationLayout:
    """The pieces of an observation space and the flat vector they make (see the module docstring)."""

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        self.pieces: list[Piece] = []
        offset = 0
        for key, leaf in _leaves(space, ""):
            piece = _piece(key, leaf, offset)
            self.pieces.append(piece)
            offset += piece.size
        self.size = offset
        self.nested = isinstance(space, (spaces.Dict, spaces.Tuple))
        self.images = [piece for piece in self.pieces if piece.kind == "image"]
        # a flat Box or a Discrete: the vector pgrad has always built, by the policy's own fast code
        self.plain = isinstance(space, (spaces.Box, spaces.Discrete)) and not self.images

    @property
    def keys(self) -> list[str]:
        """The leaves' keys in the order of the flat vector (recorded in policy.json)."""
        return [piece.key for piece in self.pieces]

    def normalized_columns(self) -> np.ndarray:
        """A bool mask over the flat vector: True where observation normalisation applies (every
        column except image pixels, which are already on [0, 1])."""
        mask = np.ones(self.size, dtype=bool)
        for piece in self.images:
            mask[piece.offset : piece.offset + piece.size] = False
        return mask

    def flatten(self, obs: Any) -> np.ndarray:
        """Raw observations (one, or a batch as a vector env returns them) as ``(B, size)`` float32."""
        leaves = list(observation_leaves(obs, self.space))
        batch = _batch_size(leaves[0], self.pieces[0])
        if len(self.pieces) == 1:
            return self.pieces[0].encode(leaves[0], batch)
        return np.concatenate([piece.encode(values, batch) for piece, values in zip(self.pieces, leaves)], axis=1)

    def describe(self) -> list[dict[str, Any]]:
        """The layout as JSON-able data: per piece its key, kind, columns (and image shape)."""
        described = []
        for piece in self.pieces:
            entry: dict[str, Any] = {"key": piece.key, "kind": piece.kind, "offset": piece.offset, "size": piece.size}
            if piece.image_shape is not None:
                entry["image_shape"] = list(piece.image_shape)
                entry["channels_last"] = piece.channels_last
            described.append(entry)
        return described


def _batch_size(values: Any, piece: Piece) -> int:
    array = np.asarray(values)
    leaf_shape = piece.space.shape if piece.space.shape is not None else ()
    if isinstance(piece.space, spaces.Discrete):
        leaf_shape = ()
    extra = array.ndim - len(leaf_shape)
    return int(array.shape[0]) if extra >= 1 else 1


def observation_leaves(obs: Any, space: spaces.Space) -> Iterator[Any]:
    """The leaf arrays of ``obs`` in the layout's order (Dict keys as the space orders them)."""
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, dict):
            raise UnsupportedSpaceError(
                f"expected a dict observation with keys {list(space.spaces)}, got {type(obs).__name__}"
            )
        for key, sub in space.spaces.items():
            if key not in obs:
                raise UnsupportedSpaceError(f"observation has no key {key!r}; expected keys {list(space.spaces)}")
            yield from observation_leaves(obs[key], sub)
    elif isinstance(space, spaces.Tuple):
        for values, sub in zip(obs, space.spaces):
            yield from observation_leaves(values, sub)
    else:
        yield obs


def is_single_observation(obs: Any, space: spaces.Space) -> bool:
    """Whether ``obs`` is one observation of ``space`` rather than a batch of them."""
    leaf_values = next(observation_leaves(obs, space))
    _, leaf = next(_leaves(space, ""))
    leaf_ndim = 0 if isinstance(leaf, spaces.Discrete) else len(leaf.shape)
    return np.asarray(leaf_values).ndim == leaf_ndim


def observation_arrays(obs: Any, space: spaces.Space) -> dict[str, np.ndarray]:
    """The leaves of ``obs`` that ``space`` names, by key path (``""`` for a space that is not a
    Dict or Tuple): how checkpoints store observations. Keys the space leaves out are dropped."""
    return {key: np.asarray(values) for (key, _), values in zip(_leaves(space, ""), observation_leaves(obs, space))}


def observation_arrays_keys(space: spaces.Space) -> list[str]:
    """The keys :func:`observation_arrays` gives for ``space``."""
    return [key for key, _ in _leaves(space, "")]


def observation_from_arrays(arrays: dict[str, np.ndarray], space: spaces.Space, prefix: str = "") -> Any:
    """Inverse of :func:`observation_arrays`."""
    if isinstance(space, spaces.Dict):
        return {
            key: observation_from_arrays(arrays, sub, f"{prefix}.{key}" if prefix else str(key))
            for key, sub in space.spaces.items()
        }
    if isinstance(space, spaces.Tuple):
        return tuple(
            observation_from_arrays(arrays, sub, f"{prefix}.{index}" if prefix else str(index))
            for index, sub in enumerate(space.spaces)
        )
    return arrays[prefix]


def env_row(obs: Any, index: int) -> Any:
    """Env ``index``'s observation out of a vector env's batched ``obs`` (dicts and tuples too)."""
    if isinstance(obs, dict):
        return {key: env_row(value, index) for key, value in obs.items()}
    if isinstance(obs, tuple):
        return tuple(env_row(value, index) for value in obs)
    return obs[index]


def stack_rows(rows: Sequence[Any]) -> Any:
    """Single-env observations stacked into a batch (inverse of :func:`env_row`)."""
    first = rows[0]
    if isinstance(first, dict):
        return {key: stack_rows([row[key] for row in rows]) for key in first}
    if isinstance(first, tuple):
        return tuple(stack_rows([row[i] for row in rows]) for i in range(len(first)))
    return np.stack([np.asarray(row) for row in rows])


def all_finite(obs: Any) -> bool:
    """Whether every float in ``obs`` (an array, or a dict/tuple of them) is finite."""
    if isinstance(obs, dict):
        return all(all_finite(value) for value in obs.values())
    if isinstance(obs, tuple):
        return all(all_finite(value) for value in obs)
    array = np.asarray(obs)
    return not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())


def select_keys(space: spaces.Space, keys: Sequence[str]) -> spaces.Space:
    """The Dict ``space`` restricted to ``keys`` (``--set obs_keys=...``), in the space's order."""
    if not keys:
        return space
    if not isinstance(space, spaces.Dict):
        raise UnsupportedSpaceError(f"obs_keys selects keys of a Dict observation; this env's observation is {space}")
    missing = [key for key in keys if key not in space.spaces]
    if missing:
        raise UnsupportedSpaceError(
            f"obs_keys names {missing}, not keys of the observation; its keys: {list(space.spaces)}"
        )
    return spaces.Dict({key: sub for key, sub in space.spaces.items() if key in keys})
