"""Dense layers and activations of an MLP as numpy arrays: one forward, one backward, with or
without a leading seed axis.

A layer is a :class:`Dense` (weight ``(..., out, in)``, bias ``(..., out)``) or one of the
activation functions :func:`tanh` and :func:`relu`; a network is a list of them, applied in order
by :func:`forward`. Any leading axes of the weights (the seed axis of a seed-batched model,
``(S, out, in)``) are carried through: ``x`` is then ``(S, B, in)`` and every product is batched
over the seeds, so slice ``[s]`` of every output and gradient is seed ``s``'s alone.

Where torch's backward has a convention of its own, it is followed, so gradients equal
autograd's up to float32 rounding: ``tanh``'s derivative is computed from its output, ReLU's is
zero where the output is 0 (``threshold_backward``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from torch import nn

from pgrad.batched import SeedBatchedLinear


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))  # a float32 zero keeps float32 inputs float32


ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {nn.Tanh: tanh, nn.ReLU: relu}
ACTIVATIONS_BY_NAME: dict[str, Callable[[np.ndarray], np.ndarray]] = {"tanh": tanh, "relu": relu}


class Dense:
    """``y = x @ W.T + b`` on numpy arrays: weight ``(..., out, in)``, bias ``(..., out)`` or None.

    Built from views of torch parameters (:func:`read_network`), it sees every in-place optimiser
    step; ``weight_grad`` and ``bias_grad`` are where :func:`backward` writes, if given.
    """

    __slots__ = ("weight", "weight_t", "bias_row", "weight_grad", "bias_grad")

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        weight_grad: np.ndarray | None = None,
        bias_grad: np.ndarray | None = None,
    ) -> None:
        self.weight = weight  # (..., out, in)
        self.weight_t = np.swapaxes(weight, -1, -2)  # (..., in, out), a view
        # (..., 1, out) with a seed axis, so it broadcasts over each seed's batch; (out,) without
        self.bias_row = None if bias is None else (bias[..., None, :] if bias.ndim > 1 else bias)
        self.weight_grad, self.bias_grad = weight_grad, bias_grad

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        return y if self.bias_row is None else y + self.bias_row

    @classmethod
    def transposed(cls, weight_t: np.ndarray, bias_row: np.ndarray | None) -> Dense:
        """A layer from its transposed weight ``(..., in, out)`` and broadcastable bias (no gradients)."""
        layer = cls.__new__(cls)
        layer.weight = np.swapaxes(weight_t, -1, -2)
        layer.weight_t, layer.bias_row, layer.weight_grad, layer.bias_grad = weight_t, bias_row, None, None
        return layer

    def seed(self, s: int) -> Dense:
        """Seed ``s``'s layer of a seed-batched one (views)."""
        return Dense.transposed(self.weight_t[s], None if self.bias_row is None else self.bias_row[s])


Layer = Dense | Callable[[np.ndarray], np.ndarray]

# The activation after a dense layer, as pgrad/numpy_twin/compiled.py's kernels take it
NO_ACTIVATION, TANH, RELU = 0, 1, 2


def dense_with_activations(layers: Sequence[Layer]) -> list[tuple[Dense, int]] | None:
    """The network as ``(dense layer, code of the activation after it)`` pairs, the form the
    compiled kernels take; None unless it is dense layers, each followed by at most one tanh or ReLU."""
    pairs: list[tuple[Dense, int]] = []
    for layer in layers:
        if isinstance(layer, Dense):
            pairs.append((layer, NO_ACTIVATION))
        elif pairs and pairs[-1][1] == NO_ACTIVATION and layer in (tanh, relu):
            pairs[-1] = (pairs[-1][0], TANH if layer is tanh else RELU)
        else:
            return None  # an activation first, two in a row, or one the kernels do not have
    return pairs


def is_supported_module(module: nn.Module) -> bool:
    """Whether :func:`read_network` can read ``module``: a linear layer (plain or seed-batched) or
    an activation it knows."""
    return isinstance(module, (nn.Linear, SeedBatchedLinear)) or type(module) in ACTIVATIONS


def read_network(modules: Sequence[nn.Module], grads: dict[nn.Parameter, np.ndarray] | None = None) -> list[Layer]:
    """The numpy layers of ``modules`` (linear layers, plain or seed-batched, and activations) as
    views of their parameters; ``grads``: each parameter's gradient array, for :func:`backward`."""
    layers: list[Layer] = []
    for module in modules:
        if type(module) in ACTIVATIONS:
            layers.append(ACTIVATIONS[type(module)])
            continue
        if not is_supported_module(module):
            raise ValueError(f"no numpy twin for {type(module).__name__}")
        weight = module.weight.detach().numpy()  # shares memory with the parameter
        bias = module.bias.detach().numpy() if module.bias is not None else None
        layers.append(
            Dense(
                weight,
                bias,
                grads.get(module.weight) if grads else None,
                grads.get(module.bias) if grads and module.bias is not None else None,
            )
        )
    return layers


def forward(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """The network's output for ``x`` (``(..., B, in)``)."""
    for layer in layers:
        x = layer(x)
    return x


def forward_keeping_outputs(layers: Sequence[Layer], x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output, the input first: ``[x, layer_1(x), ...]`` (what :func:`backward` needs)."""
    outputs = [x]
    for layer in layers:
        x = layer(x)
        outputs.append(x)
    return outputs


def backward(layers: Sequence[Layer], outputs: list[np.ndarray], grad: np.ndarray, ones: np.ndarray) -> None:
    """Backpropagate ``grad`` (of the last output) through ``layers``, writing each Dense layer's
    ``weight_grad`` and ``bias_grad``.

    ``ones``: a ``(B,)`` vector of ones; ``ones @ grad`` sums over the batch in one BLAS call,
    several times cheaper than ``np.sum(axis=0)`` at these sizes."""
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        if layer is tanh:
            out = outputs[index + 1]
            grad = grad * (np.float32(1.0) - out * out)  # tanh' = 1 - tanh^2, from the output as torch does
        elif layer is relu:
            grad = grad * (outputs[index + 1] > 0)  # torch's threshold_backward: zero where the output is 0
        else:
            np.matmul(np.swapaxes(grad, -1, -2), outputs[index], out=layer.weight_grad)  # (..., out, in)
            np.matmul(ones, grad, out=layer.bias_grad)  # (..., out)
            if index > 0:  # the observation needs no gradient
                grad = grad @ layer.weight


def fuse(first: Sequence[Layer], second: Sequence[Layer]) -> list[Layer] | None:
    """One network computing ``[first(x), second(x)]`` side by side, None if their shapes differ.

    Layer 1 stacks both weight matrices (both read the input); every later layer is
    block-diagonal, so the two halves never mix. Exact zeros add nothing, so each output is the
    same sum of products as in its own network (up to the order BLAS sums them in). Leading
    (seed) axes are carried through. The fused weights are copies: fuse again after an update.
    """
    if len(first) != len(second):
        return None
    fused: list[Layer] = []
    for index, (a, c) in enumerate(zip(first, second)):
        if isinstance(a, Dense) != isinstance(c, Dense) or (not isinstance(a, Dense) and a is not c):
            return None
        if not isinstance(a, Dense):
            fused.append(a)
            continue
        if index == 0:
            # (..., in, out_a + out_c), C-ordered as the zero-filled later layers (the compiled act reads rows)
            weight_t = np.ascontiguousarray(np.concatenate([a.weight_t, c.weight_t], axis=-1))
        else:
            (a_in, a_out), (c_in, c_out) = a.weight_t.shape[-2:], c.weight_t.shape[-2:]
            weight_t = np.zeros((*a.weight_t.shape[:-2], a_in + c_in, a_out + c_out), dtype=np.float32)
            weight_t[..., :a_in, :a_out] = a.weight_t
            weight_t[..., a_in:, a_out:] = c.weight_t
        fused.append(Dense.transposed(weight_t, np.concatenate([a.bias_row, c.bias_row], axis=-1)))
    return fused


def refill_fused(fused: Sequence[Layer], first: Sequence[Layer], second: Sequence[Layer]) -> None:
    """Copy the current weights of ``first`` and ``second`` into ``fused`` (their :func:`fuse`), in
    place: after an update, when neither network was rebuilt. The zero blocks stay zero, so this
    is :func:`fuse` again without reallocating (a handful of copies instead of a rebuild)."""
    for index, (layer, a, c) in enumerate(zip(fused, first, second)):
        if not isinstance(layer, Dense):
            continue
        a_in, a_out = a.weight_t.shape[-2:]
        if index == 0:
            layer.weight_t[..., :a_out] = a.weight_t
            layer.weight_t[..., a_out:] = c.weight_t
        else:
            layer.weight_t[..., :a_in, :a_out] = a.weight_t
            layer.weight_t[..., a_in:, a_out:] = c.weight_t
        layer.bias_row[..., :a_out] = a.bias_row
        layer.bias_row[..., a_out:] = c.bias_row


def copy_network(layers: Sequence[Layer]) -> list[Layer]:
    """A copy of ``layers`` with each weight C-ordered as ``(in, out)`` (the compiled step reads
    rows of it); refresh it with :func:`refill_copy`."""
    return [
        Dense.transposed(
            np.ascontiguousarray(layer.weight_t), None if layer.bias_row is None else layer.bias_row.copy()
        )
        if isinstance(layer, Dense)
        else layer
        for layer in layers
    ]


def refill_copy(copy: Sequence[Layer], layers: Sequence[Layer]) -> None:
    """Copy the current weights of ``layers`` into ``copy`` (their :func:`copy_network`), in place."""
    for target, source in zip(copy, layers):
        if isinstance(target, Dense):
            target.weight_t[...] = source.weight_t
            if target.bias_row is not None:
                target.bias_row[...] = source.bias_row


def all_parameters(module: nn.Module) -> list[nn.Parameter]:
    """``list(module.parameters())``, in the same order, by a plain walk of the module tree.

    ``Module.parameters()`` goes through ``named_modules`` generators that build every prefixed
    name; this walk costs a third of that, and the numpy twin's checks run once per update of
    algorithms that update every env step (one-step actor-critic)."""
    found: list[nn.Parameter] = []
    seen: set[int] = set()

    def visit(current: nn.Module) -> None:  # pre-order, children in registration order, as torch
        for parameter in current._parameters.values():
            if parameter is not None and id(parameter) not in seen:
                seen.add(id(parameter))
                found.append(parameter)
        for child in current._modules.values():
            if child is not None:
                visit(child)

    visit(module)
    return found


def parts_of(module: nn.Module) -> list:
    """Every module of ``module``'s tree (pre-order) and each parameter's storage address: what a
    twin built from views of the parameters depends on. Equal lists mean no module was replaced,
    added or removed, no parameter was replaced by one on other storage (moved to another device
    included), and no parameter became a buffer or the reverse. The list holds the modules, so
    they stay alive and their identities are not reused while it is kept."""
    found: list = []

    def visit(current: nn.Module) -> None:
        found.append(current)
        for parameter in current._parameters.values():
            if parameter is not None:
                found.append(parameter.data_ptr())
        for child in current._modules.values():
            if child is not None:
                visit(child)

    visit(module)
    return found


def dense_network(
    weights_and_biases: Sequence[tuple[np.ndarray, np.ndarray | None]], activation: Callable[[np.ndarray], np.ndarray]
) -> list[Layer]:
    """An MLP from ``(weight (out, in), bias (out,) or None)`` pairs: ``activation`` between the
    Dense layers, none after the last (ARS keeps its weights as one flat vector, not as modules)."""
    layers: list[Layer] = []
    for index, (weight, bias) in enumerate(weights_and_biases):
        if index > 0:
            layers.append(activation)
        layers.append(Dense(weight, bias))
    return layers
