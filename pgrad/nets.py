"""Network bodies and initialisation shared by every algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# Orthogonal initialisation with these gains is what the PPO implementation study found to matter
# (Engstrom et al. 2020, "Implementation Matters", sec. 3; Andrychowicz et al. 2021, C.2):
# sqrt(2) for ReLU/tanh hidden layers, a tiny gain for the policy output so the initial policy is
# close to uniform / zero-mean, and 1 for the value output.
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_OUTPUT_GAIN = 0.01
VALUE_OUTPUT_GAIN = 1.0

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def layer_init(layer: nn.Linear, gain: float = HIDDEN_GAIN, bias: float = 0.0) -> nn.Linear:
    """Orthogonally initialise ``layer`` in place with ``gain`` and a constant bias; return it."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLP(nn.Sequential):
    """Fully connected body: ``in_features -> hidden_sizes... `` with an activation after each layer.

    ``out_features`` adds a final linear layer without activation (initialised with ``out_gain``).
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        out_features: int | None = None,
        out_gain: float = 1.0,
        layer_norm: bool = False,
    ) -> None:
        """``layer_norm``: a LayerNorm (Ba et al. 2016) between each hidden layer and its activation."""
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers.append(layer_init(nn.Linear(width, size)))
            if layer_norm:
                layers.append(nn.LayerNorm(size))
            layers.append(ACTIVATIONS[activation]())
            width = size
        if out_features is not None:
            layers.append(layer_init(nn.Linear(width, out_features), out_gain))
            width = out_features
        super().__init__(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - nn.Sequential semantics
        return super().forward(x)
