"""The all-reduce optimizer: gradients averaged over the ranks, then the wrapped optimizer's update.

As ChainerMN's ``create_multi_node_optimizer`` (and in the shape of ``LossScaleOptimizer``),
``AllReduceOptimizer(optimizer, comm)`` wraps an optimizer: its update is one in-place all-reduce
per flat gradient buffer (MPI on the host, NCCL between GPUs), then the wrapped optimizer's update
of the same buffers. Each rank weighs its gradient by its ``share`` of the global batch's rows
(its rows / the global batch's rows; None: an equal share, 1 / ranks): the loss scales each rank's
gradient by 1 / its own rows, so the sum is the full batch's mean gradient, an uneven last batch
included. A share of 0 (a rank with no rows in this batch, stepping on a borrowed row) gives exact
zeros. The training step sets the share each step (``accumulate_batch``'s ``share``).

Under 'mixed_float16' the all-reduce wraps the loss scaling, ``AllReduceOptimizer(LossScaleOptimizer
(inner))``: the gradients (scaled by the loss scale, a linear factor) are summed first, so the
overflow check reads the reduced gradients, which are the same on every rank, and every rank skips
or applies the step alike. ``compile`` puts the loss scaling inside a given AllReduceOptimizer.

What is saved is the wrapped optimizer's: ``get_config``, ``state_dict``, ``load_state_dict``,
``state``, ``steps``, ``iterations`` and the learning rate are its own, so a model trained data
parallel saves the optimizer as one process would (Keras keeps no trace of the all-reduce either).
In a world of one the update is the wrapped optimizer's alone; ``all_reducing`` gives the optimizer
itself there, and the training step then runs exactly as without data parallelism.
"""
from __future__ import annotations

from typing import Any

from ..optimizers import LossScaleOptimizer, Optimizer
from ..optimizers.base import layers_of
from ..optimizers.wrapper import OptimizerWrapper
from .communicator import LocalWorld, world

__all__ = ["AllReduceOptimizer", "all_reducing", "create_multi_node_optimizer"]


class AllReduceOptimizer(OptimizerWrapper):
    """Wraps ``inner`` (an Optimizer, a LossScaleOptimizer included): all-reduce the gradients over
    ``comm``'s ranks (the current world where None), weighted by ``share``, then ``inner``'s update.

    Args:
        inner: the optimizer that applies the averaged gradients.
        comm: the communicator (``fcgpu.distributed.init()``'s); None: ``fcgpu.distributed.world()``
            when each update runs.
    """

    reduces_gradients = True  # what LossScaleOptimizer refuses to wrap (the reduction goes first)

    def __init__(self, inner: Optimizer, comm: Any = None) -> None:
        if not isinstance(inner, Optimizer) or isinstance(inner, AllReduceOptimizer):
            raise TypeError(f"inner: expected an optimizer (not an AllReduceOptimizer), got {inner!r}")
        if comm is not None and not isinstance(comm, LocalWorld):
            raise TypeError(f"comm: expected a communicator (fcgpu.distributed.init()'s) or None, got {comm!r}")
        self.inner = inner
        self.comm = comm
        self.share: float | None = None  # this rank's part of the global batch's rows (None: 1 / ranks)
        self._bound: Any = None  # the flat buffers bound to (bind)

    # -- the inner optimizer's surface -------------------------------------------------

    _OWN = frozenset({"inner", "comm", "share", "_bound"})


    @property
    def world(self) -> Any:
        """The communicator the gradients are reduced over."""
        return world() if self.comm is None else self.comm

    def to(self, backend: Any) -> "AllReduceOptimizer":
        self._bound = None
        self.inner.to(backend)
        return self

    def forget(self, names: Any) -> None:
        self._bound = None
        self.inner.forget(names)

    def reset(self) -> None:
        self._bound = None
        self.inner.reset()

    def loss_scale_state(self, flat: Any) -> Any:
        return self.inner.loss_scale_state(flat)

    def bias_correction_betas(self) -> tuple[float, float]:
        return self.inner.bias_correction_betas()

    def flat_step_ready(self, flat: Any) -> bool:
        return self.inner.flat_step_ready(flat)

    def finalize_variable_values(self, model_or_layers: Any) -> None:
        self.inner.finalize_variable_values(model_or_layers)

    def state_slots(self) -> tuple[str, ...]:
        return self.inner.state_slots()

    # -- the all-reduce ----------------------------------------------------------------
    def reduce(self, grads: Any, backend: Any) -> None:
        """Each of ``grads`` (contiguous arrays of ``backend``) replaced in place, on every rank, by
        the sum over the ranks of share x gradient; nothing in a world of one."""
        comm = self.world
        if comm.size == 1:
            return
        share = self.share
        weight = 1.0 / comm.size if share is None else float(share)
        for grad in grads:
            if weight == 0.0:
                grad[...] = 0  # exact zeros, whatever a borrowed row's gradient held
                backend.allreduce_sum(grad, comm)
            else:
                backend.allreduce_sum(grad, comm, weight)

    # -- stepping ----------------------------------------------------------------------
    def bind(self, flat: Any) -> bool:
        """Bind the inner optimizer to the model's flat buffers (the gradients reduced are theirs)."""
        self._bound = None
        if not self.inner.bind(flat):
            return False
        self._bound = flat
        return True

    def apply(self, *, unscale: float = 1.0, guard: Any = None) -> None:
        """One step of the bound flat buffers: one all-reduce a gradient buffer, then the inner update."""
        flat = self._bound
        self.reduce(list(flat.grads.values()), flat.backend)
        if unscale == 1.0 and guard is None:
            self.inner.apply()
        else:
            self.inner.apply(unscale=unscale, guard=guard)

    def step(self, model_or_layers: Any, *, unscale: float = 1.0) -> None:
        """Reduce the gradients (the model's flat buffers, else each layer's gradient), then the
        inner optimizer's ``step``."""
        flat_parameters = getattr(model_or_layers, "flat_parameters", None)
        flat = flat_parameters() if callable(flat_parameters) else None
        if flat is not None and flat.grads_ready():
            self.reduce(list(flat.grads.values()), flat.backend)
        else:
            for layer in layers_of(model_or_layers):
                grads = [g for _, _, g in layer.parameters() if g is not None]
                self.reduce(grads, layer.backend)
        if unscale == 1.0:
            self.inner.step(model_or_layers)
        else:
            self.inner.step(model_or_layers, unscale=unscale)

    # -- config and state (the inner optimizer's) --------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The inner optimizer's: a saved model keeps the optimizer one process would have."""
        return self.inner.get_config()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], backend: Any) -> None:
        self._bound = None
        self.inner.load_state_dict(state_dict, backend)

    def with_loss_scaling(self) -> "AllReduceOptimizer":
        """The same all-reduce around ``LossScaleOptimizer(inner)`` (the inner one where it scales
        already): the overflow check then reads the reduced gradients."""
        if isinstance(self.inner, LossScaleOptimizer):
            return self
        return AllReduceOptimizer(LossScaleOptimizer(self.inner), self.comm)

    def __repr__(self) -> str:
        return f"AllReduceOptimizer({self.inner!r})"


def create_multi_node_optimizer(optimizer: Optimizer, comm: Any = None) -> AllReduceOptimizer:
    """ChainerMN's name: ``optimizer`` wrapped so that each update first averages the gradients
    over ``comm``'s ranks (``AllReduceOptimizer``)."""
    return AllReduceOptimizer(optimizer, comm)


def all_reducing(optimizer: Optimizer, comm: Any = None) -> Optimizer:
    """What a data-parallel step updates with: ``optimizer`` itself in a world of one or where it
    all-reduces already, else ``AllReduceOptimizer(optimizer, comm)``."""
    comm = world() if comm is None else comm
    if comm.size == 1 or isinstance(optimizer, AllReduceOptimizer):
        return optimizer
    return AllReduceOptimizer(optimizer, comm)

