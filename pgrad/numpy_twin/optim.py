"""Adam and RMSprop steps in numpy on flat buffers: the optimiser half of the update's fast path.

torch's optimisers spend far more time on per-tensor bookkeeping than on arithmetic for the dozen
small tensors of a 2x64 actor-critic (BENCHMARKS.md, "Speed"). Here the optimiser's state lives
in flat arrays beside the flat gradient of :class:`pgrad.numpy_twin.gradient.NumpyPolicyGradient`,
and a step is a dozen whole-array numpy operations. The torch optimiser stays the owner of the
state that checkpoints save: its state tensors are views of the flat arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pgrad.numpy_twin.policy import compiled_kernels

if TYPE_CHECKING:
    from pgrad.numpy_twin.gradient import NumpyPolicyGradient


class NumpyOptimizer:
    """A torch optimizer's ``step()`` for the parameters of a :class:`NumpyPolicyGradient`, in numpy on flat buffers.

    Here the optimizer's state lives in flat arrays, and a step is a dozen whole-array numpy
    operations on the gradient's own flat buffer. Subclasses give the update rule
    (:class:`NumpyAdam`, :class:`NumpyRMSprop`).

    The torch optimizer stays the owner of the state that checkpoints save and load: its state
    tensors (``step`` and the moment buffers) are made views of the flat arrays, so its
    ``state_dict()`` is always current and its own ``step()`` would continue from the same
    numbers. :meth:`prepare` (once per update, before its steps) re-adopts the state if something
    replaced it (``load_state_dict``, a seed-batched run restacking its seeds) and reads the
    parameters into the flat master copy, which every step writes back to them. Results equal
    torch's up to float32 rounding (tests/unit/test_fast_update.py).
    """

    optimizer_type: type = torch.optim.Optimizer
    buffers: tuple[str, ...] = ()  # the per-parameter state tensors besides "step", in torch's names

    def __init__(self, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient) -> None:
        if not self.supports(optimizer, gradient):
            raise ValueError(f"this optimizer has no numpy step; check {type(self).__name__}.supports first")
        self.optimizer, self.gradient = optimizer, gradient
        # The optimizer's parameters are a contiguous run of the gradient's (all of them, or one
        # network's, where actor and critic have optimizers of their own): its part of the flat gradient.
        first = gradient.run_start(optimizer.param_groups[0]["params"])
        self.parameters = gradient.parameters[first : first + len(optimizer.param_groups[0]["params"])]
        start, stop = gradient.slices[first].start, gradient.slices[first + len(self.parameters) - 1].stop
        self.flat_grad = gradient.flat_grad[start:stop]  # a view: the gradient writes, the step reads
        size = stop - start
        self.flat_params = np.empty(size, dtype=np.float32)
        self.state = {name: np.zeros(size, dtype=np.float32) for name in self.buffers}
        self.steps = np.zeros(len(self.parameters), dtype=np.float32)  # torch keeps a float32 count per parameter
        self._scratch = np.empty(size, dtype=np.float32)
        # the parameters' parts of every flat buffer here (the gradient's slices, shifted to this run)
        self._slices = [
            slice(part.start - start, part.stop - start) for part in gradient.slices[first:][: len(self.parameters)]
        ]
        # each parameter's storage as a flat numpy view (the step writes the new values there)
        self._param_views = [parameter.detach().numpy().reshape(-1) for parameter in self.parameters]
        # for a compiled step (pgrad/numpy_twin/compiled.py, where numba is installed): the views
        # as a tuple and where each starts in the flat buffers
        self.kernels = compiled_kernels()
        self._param_views_tuple = tuple(self._param_views)
        self._offsets = np.array([part.start for part in self._slices], dtype=np.int64)
        self._state_views: list[dict[str, torch.Tensor]] = []
        self._torch_steps = False  # set by prepare(): step with torch's own step() instead
        # seed-batched: the seed each element of the flat buffers belongs to (a parameter (S, ...)
        # flattens seed-major), for steps some seeds sit out (step's ``active``)
        n_seeds = gradient.n_seeds
        self.seed_of_element = (
            None
            if n_seeds is None
            else np.concatenate([np.repeat(np.arange(n_seeds), p.numel() // n_seeds) for p in self.parameters])
        )

    @classmethod
    def supports(cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient) -> bool:
        """This class's optimizer with its plain options, over ``gradient``'s parameters or a
        contiguous run of them (in order)."""
        if type(optimizer) is not cls.optimizer_type or len(optimizer.param_groups) != 1:
            return False
        group = optimizer.param_groups[0]
        params = group["params"]
        return (
            cls._options_supported(group)
            and gradient.run_start(params) is not None
            and all(p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous() for p in params)
        )

    @classmethod
    def _options_supported(cls, group: dict[str, Any]) -> bool:
        """The param group's options are ones this rule computes (checked again by :meth:`prepare`:
        a ``load_state_dict`` or a user can change them after construction)."""
        return (
            cls._plain_options(group)
            and group["weight_decay"] == 0
            and not group.get("maximize", False)
            and not group.get("capturable", False)
            and not group.get("differentiable", False)
            and not isinstance(group["lr"], torch.Tensor)
        )

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        """The optimizer-specific options this update rule covers."""
        raise NotImplementedError

    @classmethod
    def reuse_or_build(
        cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient, cached: NumpyOptimizer | None
    ) -> NumpyOptimizer | None:
        """``cached`` if it serves this optimizer and gradient, else a new one of the matching
        subclass (:class:`NumpyAdam`, :class:`NumpyRMSprop`); None if no subclass supports it."""
        if cached is not None and cached.optimizer is optimizer and cached.gradient is gradient:
            return cached
        for rule in (cls,) if cls.buffers else (NumpyAdam, NumpyRMSprop):
            if rule.supports(optimizer, gradient):
                return rule(optimizer, gradient)
        return None

    @classmethod
    def prepared_step(
        cls, optimizer: torch.optim.Optimizer, gradient: NumpyPolicyGradient, cached: NumpyOptimizer | None
    ) -> tuple[NumpyOptimizer | None, Callable[[], None]]:
        """What an update with the numpy gradient calls once before its steps: the twin to keep
        (``cached`` if still valid, see :meth:`reuse_or_build`) and the step function to call, the
        prepared twin's or, where no twin applies, the optimizer's own."""
        twin = cls.reuse_or_build(optimizer, gradient, cached)
        if twin is None:
            return None, optimizer.step
        twin.prepare()
        return twin, twin.step

    def prepare(self) -> None:
        """Before a run of :meth:`step` calls: adopt the optimizer's state if it is not ours, read the parameters."""
        state = self.optimizer.state
        adopted = len(self._state_views) == len(self.parameters) and all(
            (entry := state.get(parameter)) is not None and all(entry.get(key) is view for key, view in views.items())
            for parameter, views in zip(self.parameters, self._state_views)
        )
        if not adopted:
            self._adopt()
        # torch skips parameters without a gradient, so counts could differ; and options can change
        counts_agree = bool(np.all(self.steps == self.steps[0]))
        self._torch_steps = not counts_agree or not self._options_supported(self.optimizer.param_groups[0])
        for view, part in zip(self._param_views, self._slices):
            self.flat_params[part] = view

    def _adopt(self) -> None:
        """Copy the optimizer's state (or zeros, before its first step) into the flat arrays and
        make its state tensors views of them. Before a first step that gives the optimizer state
        entries at step 0 with zero moments, which torch's own step treats as it treats none."""
        self._state_views = []
        for index, (parameter, part) in enumerate(zip(self.parameters, self._slices)):
            entry = self.optimizer.state[parameter]
            for name, flat in self.state.items():
                flat[part] = entry[name].detach().reshape(-1).numpy() if entry else 0.0
            self.steps[index] = float(entry["step"]) if entry else 0.0
            views = {"step": torch.from_numpy(self.steps[index : index + 1]).view(())}  # 0-d, as torch's own
            views.update(
                {name: torch.from_numpy(flat[part]).view(parameter.shape) for name, flat in self.state.items()}
            )
            entry.update(views)
            self._state_views.append(views)

    def step(
        self,
        active: np.ndarray | None = None,
        seed_steps: np.ndarray | None = None,
        seed_lrs: np.ndarray | None = None,
    ) -> None:
        """One step with this optimizer's part of ``gradient.flat_grad``, as ``optimizer.step()`` takes it.

        Seed-batched, with seeds that step apart (``target_kl`` stops each seed's epochs on its own):
        ``active`` ``(S,)`` says which seeds take this step; the others' parameters and state do
        not change. ``seed_steps`` ``(S,)`` is each seed's own step count including this step, for
        the rules whose step depends on it (Adam's bias corrections): each seed steps as its lone
        run's optimiser would. ``seed_lrs`` ``(S,)``: each seed's learning rate, where they differ
        (seeds whose budgets are at different points anneal differently); else the group's.
        """
        if self._torch_steps:  # torch's own step, on the same state (its tensors are our views)
            if active is not None:
                raise ValueError("steps for some seeds only need the numpy optimizer (plain options)")
            self.optimizer.step()
            self.prepare()
            return
        self.steps += np.float32(1.0)
        group = self.optimizer.param_groups[0]
        if active is None:
            factors = self._step_factors(group, float(self.steps[0]))
            if self._compiled_step(group, factors):  # the parameters are written already
                return
            self._update(group, factors)  # leaves the change in _scratch
        else:
            sitting_out = ~np.asarray(active)[self.seed_of_element]  # (size,) elements of the seeds not stepping
            kept = {name: flat[sitting_out] for name, flat in self.state.items()}
            lrs = [group["lr"]] * len(seed_steps) if seed_lrs is None else [float(lr) for lr in seed_lrs]
            per_seed = [self._step_factors({**group, "lr": lr}, float(count)) for lr, count in zip(lrs, seed_steps)]
            # each factor as a float32 array over the elements: seed s's elements get exactly its scalar
            factors = tuple(np.array(column, dtype=np.float32)[self.seed_of_element] for column in zip(*per_seed))
            self._update(group, factors)
            for name, flat in self.state.items():
                flat[sitting_out] = kept[name]
            self._scratch[sitting_out] = 0.0
        self.flat_params -= self._scratch
        for view, part in zip(self._param_views, self._slices):
            view[...] = self.flat_params[part]

    @staticmethod
    def _step_factors(group: dict[str, Any], step: float) -> tuple[np.float32, ...]:
        """The float32 factors of the update that depend on the step count (none by default)."""
        return ()

    def _update(self, group: dict[str, Any], factors: tuple) -> None:
        """Advance the state by one step and write the parameter decrement into ``self._scratch``;
        ``factors``: :meth:`_step_factors`, scalars or one value per element."""
        raise NotImplementedError

    def _compiled_step(self, group: dict[str, Any], factors: tuple) -> bool:
        """The whole step (state, flat parameters and the parameters' storage) in one compiled call
        where this rule has one and numba is installed; False: not done, the numpy step follows."""
        return False


class NumpyAdam(NumpyOptimizer):
    """``torch.optim.Adam`` (no amsgrad): Kingma & Ba 2015, Algorithm 1, with torch's placement of eps,
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""

    optimizer_type = torch.optim.Adam
    buffers = ("exp_avg", "exp_avg_sq")

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        return not group["amsgrad"]

    @staticmethod
    def _step_factors(group: dict[str, Any], step: float) -> tuple[np.float32, ...]:
        """``1 / sqrt(1 - b2^t)`` and ``lr / (1 - b1^t)``, the bias corrections at step ``t``."""
        lr, (beta1, beta2) = group["lr"], group["betas"]
        bias_correction1 = 1.0 - beta1**step
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
        return np.float32(1.0 / bias_correction2_sqrt), np.float32(lr / bias_correction1)

    def _compiled_step(self, group: dict[str, Any], factors: tuple) -> bool:
        # pgrad/numpy_twin/compiled.py's adam_step: _update's float32 operations in the same
        # order, then the parameters written, in one call (equal to the bit; test_fast_update.py).
        # Seed-batched, it is called only when every seed steps with the same factors.
        if self.kernels is None:
            return False
        (beta1, beta2), eps = group["betas"], group["eps"]
        self.kernels.adam_step(
            self.flat_grad, self.state["exp_avg"], self.state["exp_avg_sq"], self.flat_params,
            self._param_views_tuple, self._offsets, np.float32(1.0 - beta1), np.float32(1.0 - beta2),
            np.float32(beta2), *factors, np.float32(eps),
        )  # fmt: skip
        return True

    def _update(self, group: dict[str, Any], factors: tuple) -> None:
        inverse_correction2_sqrt, lr_over_correction1 = factors
        (beta1, beta2), eps = group["betas"], group["eps"]
        grad, m, v, scratch = self.flat_grad, self.state["exp_avg"], self.state["exp_avg_sq"], self._scratch
        # m <- m + (1 - b1) (g - m), torch's lerp; v <- b2 v + (1 - b2) g^2
        np.subtract(grad, m, out=scratch)
        scratch *= np.float32(1.0 - beta1)
        m += scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= np.float32(1.0 - beta2)
        v *= np.float32(beta2)
        v += scratch
        np.sqrt(v, out=scratch)
        scratch *= inverse_correction2_sqrt
        scratch += np.float32(eps)
        np.divide(m, scratch, out=scratch)
        scratch *= lr_over_correction1


class NumpyRMSprop(NumpyOptimizer):
    """``torch.optim.RMSprop`` without momentum or centering (Tieleman & Hinton 2012, with torch's
    eps outside the square root): ``v <- a v + (1 - a) g^2``, ``p -= lr g / (sqrt(v) + eps)``."""

    optimizer_type = torch.optim.RMSprop
    buffers = ("square_avg",)

    @staticmethod
    def _plain_options(group: dict[str, Any]) -> bool:
        return group["momentum"] == 0 and not group["centered"]

    @staticmethod
    def _step_factors(group: dict[str, Any], step: float) -> tuple[np.float32, ...]:
        """The learning rate, as a float32 factor (so that seeds may have their own)."""
        return (np.float32(group["lr"]),)

    def _update(self, group: dict[str, Any], factors: tuple) -> None:
        (lr,) = factors
        alpha, eps = group["alpha"], group["eps"]
        grad, v, scratch = self.flat_grad, self.state["square_avg"], self._scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= np.float32(1.0 - alpha)
        v *= np.float32(alpha)
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += np.float32(eps)
        np.divide(grad, scratch, out=scratch)
        scratch *= lr
