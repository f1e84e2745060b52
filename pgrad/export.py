"""Export a trained policy's deterministic action to ONNX, preprocessing and postprocessing baked in.

The exported graph maps a batch of raw observations ``obs (B, *obs_shape) float32`` to what the
env accepts: observation normalisation (frozen statistics), the actor, the distribution's
deterministic action (argmax, Gaussian mean, truncated-normal mode) and, for bounded Box actions,
the clip to [-1, 1] and rescale to the env's bounds. A test runs it in onnxruntime and matches
``agent.predict`` to 1e-5.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import CategoricalHead, DiagGaussianHead, TruncatedNormalHead
from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.policy import ActorCriticPolicy


class DeterministicActor(nn.Module):
    """``obs -> env action`` as one traceable module (the same maths as ``Algorithm.predict``)."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        if not isinstance(policy.observation_space, spaces.Box):
            raise UnsupportedSpaceError(
                f"ONNX export supports Box observations; this policy observes {policy.observation_space}"
            )
        self.policy = policy
        self.obs_shape = tuple(policy.observation_space.shape)
        space = policy.action_space
        self.discrete_start = int(space.start) if isinstance(space, spaces.Discrete) else 0
        if policy.rescale_actions:
            self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.policy
        x = obs.reshape(obs.shape[0], -1).to(torch.float32)
        if not isinstance(policy, ActorCriticPolicy):
            return self._rescale(policy(x))  # a deterministic policy (ARS): forward gives raw actions
        x = policy.normalize(x)
        features = policy.actor_body(x)
        head = policy.head
        if isinstance(head, CategoricalHead):
            return head.logits(features).argmax(dim=-1) + self.discrete_start
        if isinstance(head, DiagGaussianHead):
            action = head.mean(features)
        elif isinstance(head, TruncatedNormalHead):
            action = head.loc(features)  # its mode is loc clamped to [-1, 1]; the clip below does that
        else:
            raise UnsupportedSpaceError(f"ONNX export does not know the action head {type(head).__name__}")
        return self._rescale(action)

    def _rescale(self, action: torch.Tensor) -> torch.Tensor:
        if self.policy.rescale_actions:
            unit = action.clamp(-1.0, 1.0)
            return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)
        return action


def export_onnx(agent, path: str | Path, opset: int = 17) -> Path:
    """Write ``agent``'s deterministic policy to ``path`` (input ``obs``, output ``action``)."""
    try:
        import onnx  # noqa: F401  torch's exporter needs it
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'pgrad[export]'") from None
    if not isinstance(agent.policy, ActorCriticPolicy) and not getattr(agent.policy, "deterministic", False):
        raise UnsupportedSpaceError(f"ONNX export supports MLP and ARS policies; {agent.name} is not one")
    module = DeterministicActor(agent.policy).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, *module.obs_shape, dtype=torch.float32)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of one that needs onnxscript;
        # for these small static graphs it is exact and has no extra dependency.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), input_names=["obs"], output_names=["action"],
            dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=opset, dynamo=False,
        )
    return path


def run_onnx(path: str | Path, obs: np.ndarray) -> np.ndarray:
    """Run an exported policy on a batch of observations with onnxruntime (for checks and users)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["action"], {"obs": np.asarray(obs, dtype=np.float32)})[0]
