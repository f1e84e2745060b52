"""Observation encoders: from the flat observation vector to the features the actor and critic read.

The policy stores each observation as one flat vector (:mod:`pgrad.observations`). The encoder
turns it into features: image pieces go through a CNN each, every other piece passes through as
it is, and the results are concatenated (images first, in layout order, then the other columns).
Without images the encoder is the identity and has no weights, so MLP policies are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from pgrad.errors import ConfigError
from pgrad.nets import layer_init
from pgrad.observations import ObservationLayout, Piece

CNNS = ("auto", "nature", "small")

# The Nature CNN's first layer is an 8x8 kernel with stride 4, then 4x4/2 and 3x3/1: it needs
# images of at least 36 pixels a side. Smaller ones (MiniGrid's 7x7, MinAtar's 10x10) take the
# small CNN.
NATURE_MIN_SIDE = 36


class ConvFeatures(nn.Module):
    """Convolutions (ReLU after each), flattened, then a linear layer to ``features`` with ReLU.

    ``layers``: ``(out_channels, kernel, stride, padding)`` per convolution; orthogonal init with
    gain sqrt(2), as every hidden layer in pgrad (pgrad/nets.py).
    """

    def __init__(
        self, channels: int, height: int, width: int, features: int, layers: list[tuple[int, int, int, int]]
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for out_channels, kernel, stride, padding in layers:
            modules += [layer_init(nn.Conv2d(channels, out_channels, kernel, stride, padding)), nn.ReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*modules, nn.Flatten())
        with torch.no_grad():
            flat = int(self.convs(torch.zeros(1, modules[0].in_channels, height, width)).shape[1])
        self.linear = nn.Sequential(layer_init(nn.Linear(flat, features)), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(images))


class NatureCNN(ConvFeatures):
    """The DQN network's convolutions (Mnih et al. 2015, "Human-level control through deep RL",
    Methods): 32 8x8/4, 64 4x4/2, 64 3x3/1, then a linear layer to ``features`` (512 there)."""

    def __init__(self, channels: int, height: int, width: int, features: int) -> None:
        super().__init__(channels, height, width, features, [(32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0)])


class SmallCNN(ConvFeatures):
    """Two 3x3 stride-1 convolutions of 16 and 32 channels (padding 1), then a linear layer to
    ``features``: for small grids, after the MinAtar paper's one-layer network (Young & Tian 2019,
    sec. 4) with a second layer so that a 7x7 view still sees 5x5 neighbourhoods."""

    def __init__(self, channels: int, height: int, width: int, features: int) -> None:
        super().__init__(channels, height, width, features, [(16, 3, 1, 1), (32, 3, 1, 1)])


def make_cnn(kind: str, piece: Piece, features: int) -> nn.Module:
    """The CNN for one image piece: ``kind`` is ``nature``, ``small`` or ``auto`` (nature when both
    sides are at least 36 pixels, small otherwise)."""
    channels, height, width = piece.image_shape
    if kind == "auto":
        kind = "nature" if min(height, width) >= NATURE_MIN_SIDE else "small"
    if kind == "nature":
        if min(height, width) < NATURE_MIN_SIDE:
            raise ConfigError(
                f"cnn=nature needs images of at least {NATURE_MIN_SIDE}x{NATURE_MIN_SIDE}; observation "
                f"{piece.key or 'image'} is {height}x{width}: use cnn=small or cnn=auto"
            )
        return NatureCNN(channels, height, width, features)
    if kind == "small":
        return SmallCNN(channels, height, width, features)
    raise ConfigError(f"unknown cnn={kind!r}; expected one of {', '.join(CNNS)}")


class ObservationEncoder(nn.Module):
    """Flat observation vectors ``(B, layout.size)`` to features ``(B, out_features)``."""

    def __init__(self, layout: ObservationLayout, cnn: str = "auto", cnn_features: int = 512) -> None:
        super().__init__()
        if cnn_features < 1:
            raise ConfigError(f"cnn_features={cnn_features} must be a positive int")
        self.images = list(layout.images)
        self.cnns = nn.ModuleList(make_cnn(cnn, piece, cnn_features) for piece in self.images)
        image_columns = torch.zeros(layout.size, dtype=torch.bool)
        for piece in self.images:
            image_columns[piece.offset : piece.offset + piece.size] = True
        # the columns that pass through as they are (a buffer: moves with the module, not saved)
        self.register_buffer("other_columns", torch.nonzero(~image_columns).reshape(-1), persistent=False)
        self.identity = not self.images
        self.out_features = layout.size if self.identity else len(self.images) * cnn_features + len(self.other_columns)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return flat
        batch = flat.shape[0]
        parts = [
            cnn(flat[:, piece.offset : piece.offset + piece.size].reshape(batch, *piece.image_shape))
            for piece, cnn in zip(self.images, self.cnns)
        ]
        if len(self.other_columns):
            parts.append(flat.index_select(1, self.other_columns))
        return torch.cat(parts, dim=1)


class CustomEncoder(nn.Module):
    """A user's ``torch.nn.Module`` class as the observation encoder.

    Built as ``encoder_class(observation_space, **encoder_kwargs)``. Its ``forward`` receives the
    observation as pgrad encodes it, normalised, as float32 tensors with a leading batch axis: for a
    Dict or Tuple observation a dict ``{key: tensor}`` (layout keys: ``"image"``, ``"0"``,
    ``"a.b"``), otherwise one tensor; images as ``(B, C, H, W)`` on [0, 1], Discrete and
    MultiDiscrete one-hot, others flattened to ``(B, size)``. It must return ``(B, F)`` features;
    ``F`` is read from a trial forward at construction.
    """

    def __init__(self, layout: ObservationLayout, encoder_class: type, encoder_kwargs: dict | None = None) -> None:
        super().__init__()
        name = getattr(encoder_class, "__name__", repr(encoder_class))
        if not (isinstance(encoder_class, type) and issubclass(encoder_class, nn.Module)):
            raise ConfigError(f"encoder must be a torch.nn.Module class, got {name}")
        self.layout = layout
        self.net = encoder_class(layout.space, **(encoder_kwargs or {}))
        self.identity = False
        with torch.no_grad():
            out = self.forward(torch.zeros(2, layout.size))
        self.out_features = int(out.shape[1])

    def inputs(self, flat: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The flat vector ``(B, size)`` cut into the pieces the user's module receives."""
        batch = flat.shape[0]
        parts = {}
        for piece in self.layout.pieces:
            part = flat[:, piece.offset : piece.offset + piece.size]
            parts[piece.key] = part.reshape(batch, *piece.image_shape) if piece.image_shape is not None else part
        return parts if self.layout.nested else parts[self.layout.pieces[0].key]

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        out = self.net(self.inputs(flat))
        name = type(self.net).__name__
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != flat.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"encoder {name} returned {got}; expected features of shape (batch, F)")
        return out
