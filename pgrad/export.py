"""Export a trained policy's deterministic action to ONNX, preprocessing and postprocessing baked in.

The exported graph maps a batch of raw observations ``obs (B, *obs_shape) float32`` (a Dict or
Tuple observation: one input per key, ``obs.<key>`` with the keys of policy.json's
``observation_layout``) to what
the env accepts: the observation's encoding (one-hot, image scaling and layout), observation
normalisation (frozen statistics), the encoder and actor, the distribution's deterministic action
(argmax, per-entry argmax, bits, Gaussian mean, truncated-normal mode) and, for bounded Box
actions, the clip to [-1, 1] and rescale to the env's bounds. A policy trained with masking takes
an ``action_mask`` input (float32 0/1). A test runs it in onnxruntime and matches
``agent.predict`` to 1e-5.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from pgrad.distributions import (
    BernoulliHead,
    CategoricalHead,
    DiagGaussianHead,
    MultiCategoricalHead,
    TruncatedNormalHead,
    masked_logits,
)
from pgrad.errors import ConfigError, UnsupportedSpaceError
from pgrad.policy import ActorCriticPolicy


def input_names(policy: ActorCriticPolicy) -> list[str]:
    """The graph's observation inputs: ``obs`` for a space that is not a Dict or Tuple, else one
    per key in the layout's order: ``obs.<key>`` (Dict keys by name, Tuple elements by index:
    ``obs.image``, ``obs.0``)."""
    layout = getattr(policy, "layout", None)
    if layout is None or not layout.nested:
        return ["obs"]
    return [f"obs.{key}" for key in layout.keys]


class ObservationInputs(nn.Module):
    """The raw inputs of an exported graph to the policy's flat observation vector: the same
    encoding as :class:`pgrad.observations.ObservationLayout`, in torch operations ONNX has."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.pieces = list(policy.layout.pieces)
        for index, piece in enumerate(self.pieces):
            if piece.kind == "one_hot":
                space = piece.space
                nvec = [int(space.n)] if isinstance(space, spaces.Discrete) else list(np.ravel(space.nvec))
                start = [int(space.start)] if isinstance(space, spaces.Discrete) else list(np.ravel(space.start))
                # the value each column stands for, and the entry it belongs to
                values = np.concatenate([np.arange(n) + s for n, s in zip(nvec, start)])
                entries = np.repeat(np.arange(len(nvec)), nvec)
                self.register_buffer(f"values_{index}", torch.as_tensor(values, dtype=torch.float32))
                self.register_buffer(f"entries_{index}", torch.as_tensor(entries, dtype=torch.long))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs[0].shape[0]
        parts = []
        for index, (piece, x) in enumerate(zip(self.pieces, inputs)):
            x = x.to(torch.float32)
            if piece.kind == "one_hot":
                flat = x.reshape(batch, -1).index_select(1, getattr(self, f"entries_{index}"))
                parts.append((flat == getattr(self, f"values_{index}")).to(torch.float32))
            elif piece.kind == "image":
                if piece.channels_last:
                    x = x.permute(0, 3, 1, 2)
                scale = 1.0 / 255.0 if piece.space.dtype == np.uint8 else 1.0
                parts.append(x.reshape(batch, piece.size) * scale)
            else:
                parts.append(x.reshape(batch, piece.size))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class DeterministicActor(nn.Module):
    """``obs -> env action`` as one traceable module (the same maths as ``Algorithm.predict``).

    Inputs: the observation (one input per key of a Dict or Tuple observation, all float32), then
    for a policy trained with masking ``action_mask`` (float32 0/1, one row per observation).
    """

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.actor_critic = isinstance(policy, ActorCriticPolicy)
        if not self.actor_critic and not isinstance(policy.observation_space, spaces.Box):
            raise UnsupportedSpaceError(f"ONNX export of ARS needs Box observations, not {policy.observation_space}")
        self.inputs = ObservationInputs(policy) if self.actor_critic else None
        self.masked = bool(getattr(policy, "mask_size", 0))
        self.n_inputs = len(input_names(policy)) if self.actor_critic else 1
        space = policy.action_space
        self.discrete_start = int(space.start) if isinstance(space, spaces.Discrete) else 0
        if isinstance(space, spaces.MultiDiscrete):
            self.register_buffer("multi_start", torch.as_tensor(np.ravel(space.start), dtype=torch.long))
        self.action_shape = tuple(space.shape) if space.shape is not None else ()
        if policy.rescale_actions:
            self.register_buffer("action_low", torch.as_tensor(space.low, dtype=torch.float32).reshape(-1))
            self.register_buffer("action_high", torch.as_tensor(space.high, dtype=torch.float32).reshape(-1))

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """One zero observation (and an all-allowed mask) to trace the graph with."""
        policy = self.policy
        if not self.actor_critic:
            return (torch.zeros(1, *policy.observation_space.shape),)
        examples = []
        for piece in policy.layout.pieces:
            shape = () if isinstance(piece.space, spaces.Discrete) else tuple(piece.space.shape)
            examples.append(torch.zeros(1, *shape))
        if self.masked:
            examples.append(torch.ones(1, policy.mask_size))
        return tuple(examples)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not self.actor_critic:  # a deterministic policy (ARS): forward gives raw actions
            x = inputs[0]
            return self._rescale(self.policy(x.reshape(x.shape[0], -1).to(torch.float32)))
        return self.action(self.policy.normalize(self.flat(*inputs)))

    def flat(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The policy's stored vector: the encoded observation, then the mask's columns."""
        x = self.inputs(*inputs[: self.n_inputs])
        if self.masked:
            x = torch.cat([x, inputs[self.n_inputs].reshape(x.shape[0], -1).to(torch.float32)], dim=1)
        return x

    def action(self, x: torch.Tensor, encoded: bool = False) -> torch.Tensor:
        """Env action for normalised stored vectors ``x`` (``encoded``: LSTM features instead)."""
        policy = self.policy
        features = policy.actor_body(x if encoded else policy.encode(x))
        head = policy.head
        if isinstance(head, (CategoricalHead, MultiCategoricalHead)):
            mask = x[:, policy.input_size :] > 0.5 if self.masked and not encoded else None
            logits = masked_logits(head.logits(features), mask)
            if isinstance(head, CategoricalHead):
                return logits.argmax(dim=-1) + self.discrete_start
            choices = [part.argmax(dim=-1) for part in logits.split(head.nvec, dim=-1)]
            return (torch.stack(choices, dim=-1) + self.multi_start).reshape(-1, *self.action_shape)
        if isinstance(head, BernoulliHead):
            return (head.logits(features) > 0).to(torch.int8).reshape(-1, *self.action_shape)
        if isinstance(head, (DiagGaussianHead, TruncatedNormalHead)):
            # the Gaussian's mean, or the truncated normal's mode (loc clamped to [-1, 1]: the clip below)
            return self._rescale(head.loc(features)).reshape(-1, *self.action_shape)
        raise UnsupportedSpaceError(f"ONNX export does not know the action head {type(head).__name__}")

    def _rescale(self, action: torch.Tensor) -> torch.Tensor:
        if self.policy.rescale_actions:
            unit = action.clamp(-1.0, 1.0)
            return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)
        return action


class RecurrentDeterministicActor(DeterministicActor):
    """``(obs..., h, c) -> (env action, h, c)`` for a recurrent policy: one step of ``RecurrentPPO.predict``.

    ``h`` and ``c`` are ``(lstm_layers, B, lstm_hidden_size)``; feed zeros at an episode start.
    """

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *observation, h, c = inputs
        x = self.policy.normalize(self.flat(*observation))
        features, (h, c) = self.policy.actor_lstm(self.policy.lstm_input(x.unsqueeze(0)), (h, c))
        return self.action(features[0], encoded=True), h, c


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
    example = module.example_inputs()
    observation_names = input_names(agent.policy) if module.actor_critic else ["obs"]
    names = {"input_names": observation_names + (["action_mask"] if module.masked else []), "output_names": ["action"]}
    axes = {name: {0: "batch"} for name in [*names["input_names"], "action"]}
    if recurrent:
        state = torch.zeros(agent.policy.lstm_layers, 1, agent.policy.lstm_hidden_size)
        example += (state, state.clone())
        names = {"input_names": [*names["input_names"], "h", "c"], "output_names": ["action", "h_out", "c_out"]}
        axes.update({name: {1: "batch"} for name in ("h", "c", "h_out", "c_out")})
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of one that needs onnxscript;
        # for these small static graphs it is exact and has no extra dependency.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), **names, dynamic_axes=axes, opset_version=opset, dynamo=False)
    return path


def run_onnx(
    path: str | Path,
    obs: np.ndarray | dict | tuple,
    state: tuple[np.ndarray, np.ndarray] | None = None,
    action_mask: np.ndarray | None = None,
):
    """Run an exported policy on a batch of observations with onnxruntime (for checks and users).

    ``obs``: a batch as the env gives it (a Dict observation as a dict of arrays, a Tuple as a
    tuple). ``action_mask``: for a policy trained with masking, one row per observation (None:
    all allowed). For a recurrent policy pass ``state=(h, c)``; the result is then
    ``(action, (h_out, c_out))``.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = {node.name: node for node in session.get_inputs()}
    if isinstance(obs, dict):
        feed = {name: np.asarray(_leaf(obs, name), dtype=np.float32) for name in graph_inputs if name not in _NOT_OBS}
    elif isinstance(obs, tuple):
        feed = {name: np.asarray(_leaf(obs, name), dtype=np.float32) for name in graph_inputs if name not in _NOT_OBS}
    else:
        feed = {"obs": np.asarray(obs, dtype=np.float32)}
    if "action_mask" in graph_inputs:
        batch = next(iter(feed.values())).shape[0]
        width = graph_inputs["action_mask"].shape[1]
        feed["action_mask"] = (
            np.ones((batch, width), np.float32) if action_mask is None else np.asarray(action_mask, np.float32)
        )
    if state is None:
        return session.run(["action"], feed)[0]
    feed.update({"h": np.asarray(state[0], dtype=np.float32), "c": np.asarray(state[1], dtype=np.float32)})
    action, h, c = session.run(["action", "h_out", "c_out"], feed)
    return action, (h, c)


_NOT_OBS = ("action_mask", "h", "c")


def _leaf(obs: dict | tuple, name: str):
    """The array of an input (``"obs.a"``, ``"obs.a.b"``, ``"obs.0"``) in a batched Dict/Tuple observation."""
    for part in name.split(".")[1:]:
        obs = obs[int(part)] if isinstance(obs, tuple) else obs[part]
    return obs
