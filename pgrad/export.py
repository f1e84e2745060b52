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
        x = obs.reshape(obs.shape[0], -1).to(torch.float32)
        if not isinstance(self.policy, ActorCriticPolicy):
            return self._rescale(self.policy(x))  # a deterministic policy (ARS): forward gives raw actions
        return self.action(self.policy.normalize(x))

    def action(self, x: torch.Tensor) -> torch.Tensor:
        """Env action for what the actor MLP reads (normalised observations, or LSTM features)."""
        policy = self.policy
        features = policy.actor_body(x)
        head = policy.head
        if isinstance(head, CategoricalHead):
            return head.logits(features).argmax(dim=-1) + self.discrete_start
        if isinstance(head, (DiagGaussianHead, TruncatedNormalHead)):
            # the Gaussian's mean, or the truncated normal's mode (loc clamped to [-1, 1]: the clip below)
            action = head.loc(features)
        else:
            raise UnsupportedSpaceError(f"ONNX export does not know the action head {type(head).__name__}")
        return self._rescale(action)

    def _rescale(self, action: torch.Tensor) -> torch.Tensor:
        if self.policy.rescale_actions:
            unit = action.clamp(-1.0, 1.0)
            return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)
        return action


class RecurrentDeterministicActor(DeterministicActor):
    """``(obs, h, c) -> (env action, h, c)`` for a recurrent policy: one step of ``RecurrentPPO.predict``.

    ``h`` and ``c`` are ``(lstm_layers, B, lstm_hidden_size)``; feed zeros at an episode start.
    """

    def forward(
        self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.policy.normalize(obs.reshape(obs.shape[0], -1).to(torch.float32))
        features, (h, c) = self.policy.actor_lstm(x.unsqueeze(0), (h, c))
        return self.action(features[0]), h, c


def export_onnx(agent, path: str | Path, opset: int = 17) -> Path:
    """Write ``agent``'s deterministic policy to ``path`` (input ``obs``, output ``action``).

    A recurrent agent's graph also takes the LSTM state ``h``, ``c`` and returns ``h_out``, ``c_out``.
    """
    try:
        import onnx  # noqa: F401  torch's exporter needs it
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'pgrad[export]'") from None
    if not isinstance(agent.policy, ActorCriticPolicy) and not getattr(agent.policy, "deterministic", False):
        raise UnsupportedSpaceError(f"ONNX export supports MLP, LSTM and ARS policies; {agent.name} is not one")
    recurrent = getattr(agent, "recurrent", False)
    module = (RecurrentDeterministicActor if recurrent else DeterministicActor)(agent.policy).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(1, *module.obs_shape, dtype=torch.float32),)
    names = {"input_names": ["obs"], "output_names": ["action"]}
    axes = {"obs": {0: "batch"}, "action": {0: "batch"}}
    if recurrent:
        state = torch.zeros(agent.policy.lstm_layers, 1, agent.policy.lstm_hidden_size)
        example += (state, state.clone())
        names = {"input_names": ["obs", "h", "c"], "output_names": ["action", "h_out", "c_out"]}
        axes.update({name: {1: "batch"} for name in ("h", "c", "h_out", "c_out")})
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of one that needs onnxscript;
        # for these small static graphs it is exact and has no extra dependency.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), **names, dynamic_axes=axes, opset_version=opset, dynamo=False)
    return path


def run_onnx(path: str | Path, obs: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None = None):
    """Run an exported policy on a batch of observations with onnxruntime (for checks and users).

    For a recurrent policy pass ``state=(h, c)``; the result is then ``(action, (h_out, c_out))``.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"obs": np.asarray(obs, dtype=np.float32)}
    if state is None:
        return session.run(["action"], feed)[0]
    feed.update({"h": np.asarray(state[0], dtype=np.float32), "c": np.asarray(state[1], dtype=np.float32)})
    action, h, c = session.run(["action", "h_out", "c_out"], feed)
    return action, (h, c)
