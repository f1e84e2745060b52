"""Saving and loading without pickle: safetensors for tensors, JSON for everything else.

Every file is written atomically (a temp file in the same folder, fsync, then ``os.replace``), so a
run killed mid-write leaves the previous file intact, never a half-written one. ``policy.json``
records the SHA-256 of ``policy.safetensors``, so corruption anywhere in the tensor data is
detected on load, not only in the header that safetensors itself checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from pgrad.errors import PolicyFileError, UnsupportedSpaceError

POLICY_FORMAT = "pgrad-policy"
CHECKPOINT_FORMAT = "pgrad-checkpoint"
FORMAT_VERSION = 1


# -- atomic writes ---------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic, indented JSON write."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a JSON object or raise PolicyFileError naming ``what`` and the problem."""
    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"{what} not found: {path}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyFileError(f"{what} {path} is corrupted (not valid JSON: {exc})") from None
    if not isinstance(obj, dict):
        raise PolicyFileError(f"{what} {path} is corrupted (expected a JSON object)")
    return obj


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> str:
    """Atomically write tensors as safetensors; return the file's SHA-256 hex digest."""
    # clone: safetensors refuses tensors that share memory, as views of one buffer do (an
    # optimizer state kept flat by pgrad.numpy_twin.NumpyAdam)
    data = safetensors_save(
        {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    )
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: str | os.PathLike, what: str, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, checking its digest if given; never unpickles anything."""
    path = Path(path)
    if not path.is_file():
        raise PolicyFileError(f"{what} not found: {path}")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise PolicyFileError(f"{what} {path} is corrupted (SHA-256 does not match the one recorded at save time)")
    try:
        return safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise PolicyFileError(f"{what} {path} is corrupted (not a valid safetensors file: {exc})") from None


# -- spaces as JSON --------------------------------------------------------------------------


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """Describe a Box, Discrete, MultiDiscrete, MultiBinary, or a Dict/Tuple of them, in JSON."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, spaces.Dict):
        # a list of pairs, not an object: the order of the keys is the order of the policy's input
        return {"type": "Dict", "spaces": [[key, space_to_json(sub)] for key, sub in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(sub) for sub in space.spaces]}
    raise UnsupportedSpaceError(
        f"space {space} cannot be saved; supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple of these"
    )


def space_from_json(obj: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_json`."""
    try:
        kind = obj["type"]
        if kind == "Box":
            # JSON has no inf: json.dumps writes Infinity, which json.loads reads back as float.
            low = np.array(obj["low"], dtype=obj["dtype"]).reshape(obj["shape"])
            high = np.array(obj["high"], dtype=obj["dtype"]).reshape(obj["shape"])
            return spaces.Box(low, high, dtype=np.dtype(obj["dtype"]))
        if kind == "Discrete":
            return spaces.Discrete(int(obj["n"]), start=int(obj.get("start", 0)))
        if kind == "MultiDiscrete":
            dtype = np.dtype(obj["dtype"])
            return spaces.MultiDiscrete(np.array(obj["nvec"], dtype=dtype), dtype=dtype, start=np.array(obj["start"]))
        if kind == "MultiBinary":
            shape = [int(n) for n in obj["shape"]]
            return spaces.MultiBinary(shape[0] if len(shape) == 1 else shape)
        if kind == "Dict":
            return spaces.Dict({str(key): space_from_json(sub) for key, sub in obj["spaces"]})
        if kind == "Tuple":
            return spaces.Tuple([space_from_json(sub) for sub in obj["spaces"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyFileError(f"policy.json has an invalid space description: {exc}") from None
    raise PolicyFileError(
        f"policy.json names an unsupported space type {obj.get('type')!r}; "
        "supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple"
    )


# -- policy and checkpoint files --------------------------------------------------------------


def _flat_size(space: dict[str, Any], image_features: int) -> int:
    """How many numbers the policy's input (observations) or output (actions) takes for a space
    described in JSON, computed from the description alone (nothing is built or allocated): an
    image Box (3-D) counts as ``image_features``, what its CNN hands on."""
    kind = space.get("type")
    if kind == "Box":
        shape = [int(n) for n in space.get("shape", [])]
        return image_features if len(shape) == 3 else int(np.prod(shape, dtype=object))
    if kind == "Discrete":
        return int(space.get("n", 1))
    if kind == "MultiDiscrete":
        return int(sum(int(n) for n in np.ravel(np.asarray(space.get("nvec", []), dtype=object))))
    if kind == "MultiBinary":
        return int(np.prod([int(n) for n in space.get("shape", [])], dtype=object))
    if kind == "Dict":
        return sum(_flat_size(sub, image_features) for _, sub in space.get("spaces", []))
    if kind == "Tuple":
        return sum(_flat_size(sub, image_features) for sub in space.get("spaces", []))
    return 0


def implied_weight_count(description: dict[str, Any]) -> int:
    """A lower bound on the number of weights the network policy.json describes: the products of
    consecutive layer widths (input, hidden layers, action outputs; LSTM gates), from the JSON
    alone. :func:`check_policy_size` compares it with the weights file before anything is built,
    so a file naming absurd widths (a memory bomb) is refused instead of reaching the allocator."""
    try:
        config = description.get("config", {}) or {}
        features = int(config.get("cnn_features", 512) or 512)
        inputs = _flat_size(description.get("observation_space", {}), features)
        outputs = _flat_size(description.get("action_space", {}), features)
        lstm = int(config.get("lstm_hidden_size", 0) or 0)
        inputs = lstm or inputs  # a recurrent policy's MLPs read the LSTM's output
        linear = config.get("policy_type") == "linear"  # ARS's default: no hidden layers
        hidden = [] if linear else [int(w) for w in config.get("hidden_sizes") or []]
        bound = sum(a * b for a, b in zip([inputs, *hidden], [*hidden, outputs]))
        for key in ("pi_hidden_sizes", "vf_hidden_sizes"):  # after a shared trunk or not: widths only
            widths = [int(w) for w in config.get(key) or []]
            bound = max(bound, sum(a * b for a, b in zip(widths, widths[1:])))
        return max(bound, 4 * lstm * lstm)  # the recurrent weights of one LSTM layer
    except (TypeError, ValueError, AttributeError) as exc:
        raise PolicyFileError(f"policy.json has an invalid network description: {exc}") from None


def check_policy_size(description: dict[str, Any], state_dict: dict[str, torch.Tensor], where: Any) -> None:
    """PolicyFileError unless the weights file holds at least as many numbers as the network the
    description implies (:func:`implied_weight_count`): checked before building the network."""
    held = sum(int(tensor.numel()) for tensor in state_dict.values())
    implied = implied_weight_count(description)
    if implied > held:
        raise PolicyFileError(
            f"{where} describes a network of at least {implied:,} weights, but its weights file holds {held:,} "
            "numbers in all; refusing to build it (a tampered or mismatched policy.json?)"
        )


def policy_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(policy.json, policy.safetensors)`` for a run folder or either file's path."""
    path = Path(path)
    if path.is_dir() or path.suffix not in (".json", ".safetensors"):
        return path / "policy.json", path / "policy.safetensors"
    return path.with_suffix(".json"), path.with_suffix(".safetensors")


def save_policy(folder: str | os.PathLike, description: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    """Write ``policy.safetensors`` then ``policy.json`` (with the weights' digest) into ``folder``."""
    json_path, tensor_path = policy_paths(folder)
    digest = write_tensors(tensor_path, state_dict)
    write_json(json_path, {"format": POLICY_FORMAT, "format_version": FORMAT_VERSION, **description, "sha256": digest})


def check_inside(file: Path, folder: Path) -> None:
    """PolicyFileError if ``file`` is a symlink (or has one on its way) leading out of ``folder``:
    a run folder's files are its own, and a planted link must not make pgrad read elsewhere."""
    if file.exists() and not file.resolve().is_relative_to(folder.resolve()):
        raise PolicyFileError(
            f"{file} leads out of its folder (to {file.resolve()}); pgrad reads run files in place only"
        )


def load_policy(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a saved policy; return ``(description, state_dict)``."""
    json_path, tensor_path = policy_paths(path)
    if not json_path.exists() and not tensor_path.exists():
        raise PolicyFileError(f"no saved policy at {path} (expected policy.json and policy.safetensors)")
    for file in (json_path, tensor_path):
        check_inside(file, json_path.parent)
    description = read_json(json_path, "policy description")
    if description.get("format") != POLICY_FORMAT:
        raise PolicyFileError(f"{json_path} is not a pgrad policy description (format {description.get('format')!r})")
    if description.get("format_version") != FORMAT_VERSION:
        raise PolicyFileError(
            f"{json_path} has format_version {description.get('format_version')!r}; this pgrad reads {FORMAT_VERSION}"
        )
    state_dict = read_tensors(tensor_path, "policy weights", sha256=description.get("sha256"))
    return description, state_dict


# The checkpoint's JSON state travels inside the tensor file's header (safetensors metadata), so
# one atomic rename commits a whole checkpoint: a kill between writing two files could otherwise
# leave new tensors beside an old state (or the reverse), with the previous checkpoint gone.
# state.json is written after it as a readable copy; readers take the state from the tensor file.
STATE_KEY, TENSORS_DIGEST_KEY = "pgrad_state", "pgrad_tensors_sha256"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes, dtypes and bytes, in name order: what a checkpoint
    file records about its own data (a file cannot hold the digest of its own bytes)."""
    hasher = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        hasher.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write a resumable checkpoint: ``state.safetensors`` (the tensors, and the JSON state in its
    header; one atomic write commits both) and ``state.json`` (a readable copy of the state)."""
    folder = Path(folder)
    record = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, **state}
    cpu = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    metadata = {STATE_KEY: json.dumps(record), TENSORS_DIGEST_KEY: tensors_digest(cpu)}
    data = safetensors_save(cpu, metadata=metadata)
    atomic_write_bytes(folder / "state.safetensors", data)
    write_json(folder / "state.json", {**record, "sha256": hashlib.sha256(data).hexdigest()})


def _header_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header, reading the header only."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size <= 0 or size > 100_000_000:  # safetensors' own limit on a header
                raise ValueError(f"header size {size}")
            return json.loads(handle.read(size)).get("__metadata__") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise PolicyFileError(f"checkpoint {path} is corrupted (unreadable header: {exc})") from None


def checkpoint_file_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The state a checkpoint tensor file commits (its header), or None if it holds none."""
    text = _header_metadata(Path(path)).get(STATE_KEY)
    return None if text is None else json.loads(text)


def read_checkpoint_state(folder: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's state without its tensors: from the tensor file's header, or state.json for
    a checkpoint written before the state moved there."""
    folder = Path(folder)
    for name in ("state.json", "state.safetensors"):
        check_inside(folder / name, folder)
    tensor_file = folder / "state.safetensors"
    text = _header_metadata(tensor_file).get(STATE_KEY) if tensor_file.is_file() else None
    state = json.loads(text) if text is not None else read_json(folder / "state.json", "checkpoint state")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise PolicyFileError(f"{folder} is not a pgrad checkpoint")
    return state


def load_checkpoint(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a checkpoint written by :func:`save_checkpoint` (or by an earlier pgrad,
    whose state is in state.json with the tensor file's digest)."""
    folder = Path(folder)
    state = read_checkpoint_state(folder)
    tensor_file = folder / "state.safetensors"
    recorded = _header_metadata(tensor_file).get(TENSORS_DIGEST_KEY) if tensor_file.is_file() else None
    # an earlier pgrad's checkpoint: state.json holds the digest of the whole tensor file
    tensors = read_tensors(folder / "state.safetensors", "checkpoint tensors", sha256=state.get("sha256"))
    if recorded is not None and recorded != tensors_digest(tensors):
        raise PolicyFileError(f"checkpoint {folder} is corrupted (its tensors do not match their recorded digest)")
    return state, tensors


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optimizer."
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into flat tensors and JSON-able hyperparameters."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            name = f"{prefix}{param_id}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "optimizer."
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the state back into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        if not name.startswith(prefix):
            continue
        param_id, key = name[len(prefix) :].split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
