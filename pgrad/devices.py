"""Where an algorithm's gradient updates run: the ``device`` setting (``cpu``, ``cuda``, ``auto``).

pgrad keeps the policy that acts on the CPU in every case: rollouts step one observation batch of
``n_envs`` rows at a time, where a GPU's launch and copy latency outweighs its arithmetic, and the
numpy fast path (pgrad/numpy_twin/) only exists there. On ``cuda`` the algorithm keeps a second
copy of the policy on the GPU, the *learner*, which its optimiser steps on whole minibatches; the
learner's weights are copied back to the acting policy after every update (for a Nature CNN,
1.7M floats: about a millisecond over PCIe, once per rollout). ``auto`` picks ``cuda`` only when
torch sees a GPU and the policy has an image encoder: small MLPs update faster on the CPU.
"""

from __future__ import annotations

import torch

from pgrad.errors import ConfigError

DEVICE_CHOICES = ("cpu", "cuda", "auto")


def cuda_problem() -> str | None:
    """Why torch cannot use a CUDA device here (torch's own words), or None if it can."""
    if torch.cuda.is_available():
        return None
    try:
        torch.zeros(1, device="cuda")
    except (AssertionError, RuntimeError) as exc:  # a CPU build raises AssertionError, a driver problem RuntimeError
        return str(exc).strip().splitlines()[0]
    return "torch.cuda.is_available() is False"


def resolve_device(setting: str, has_image_encoder: bool, algo: str, updates_on_device: bool) -> torch.device:
    """The device an agent's updates run on, for its ``device`` setting.

    Args:
        setting: ``cpu``, ``cuda`` or ``auto``.
        has_image_encoder: the policy has a CNN (``auto`` uses a GPU only then).
        algo: the algorithm's name, for the error message.
        updates_on_device: whether this algorithm can update on a GPU (PPO and A2C: whole-batch
            updates; the others update per step or per episode, where a GPU does not pay).

    Raises:
        ConfigError: ``cuda`` without a usable GPU (with what torch reports), or for an algorithm
            that updates on the CPU only.
    """
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "auto":
        use_gpu = updates_on_device and has_image_encoder and torch.cuda.is_available()
        return torch.device("cuda" if use_gpu else "cpu")
    if setting != "cuda":
        raise ConfigError(f"device={setting!r} is not one of: {', '.join(DEVICE_CHOICES)}")
    if not updates_on_device:
        raise ConfigError(f"device=cuda: {algo} updates on the CPU only (on a GPU: ppo, a2c); use device=cpu")
    problem = cuda_problem()
    if problem is not None:
        raise ConfigError(
            f"device=cuda, but torch cannot use a GPU: {problem} (torch {torch.__version__}); "
            "install a CUDA build of torch (README) or use device=cpu"
        )
    return torch.device("cuda")
