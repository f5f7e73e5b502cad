"""fit's training step captured once as a CUDA graph and replayed: one device launch a step.

For an eligible model (``why_not``: a chain of Dense and Dropout layers no wider than 1024, a batch
of at most 4096 rows, the CuPy backend, SGD or Adam without clipping, averages or constraints, no
sample weights and no metric beyond the loss's fused accuracy; one process or data parallel, the
all-reduce captured with the step) ``stepper_for`` gives
fit a ``GraphStepper`` (a ``graph_capture.CapturedTraining``). Its first full batch is a warm-up
step in graph mode (``CupyBackend.graph_mode``: every buffer allocated, the GEMMs without cuBLAS,
each step's scalars read from the device); the same step is then captured on a non-default stream,
and every later full batch is one ``Graph.launch()``. The step's first launches gather its rows of
the epoch's order (uploaded once an epoch, no device operation) from the counter's batch; the
learning rate comes from a table of the schedule over this fit's iterations; the dropout masks are
the step-by-step path's (Philox keyed by the step at capture + ctr[0]).

A last partial batch runs the step-by-step path (``accumulate_batch``) on rows gathered by index,
and bumps ctr[0]. ``fcgpu.config.set_graphs(False)`` turns this off; an ineligible model, or a
capture that fails, runs the step-by-step path, with the reason logged to ``fcgpu.graphs``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..backends.base import Array
from ..config import settings
from ..distributed.communicator import World
from ..distributed.data_parallel import step_share
from ..distributed.sharding import epoch_batches, shard_bounds
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..optimizers import SGD, Adam, AdamW
from .graph_capture import CapturedTraining, inner_optimizer

__all__ = ["GraphStepper", "MAX_BATCH", "MAX_WIDTH", "chain_why_not", "stepper_for", "why_not"]

log = logging.getLogger("fcgpu.graphs")

MAX_WIDTH = 1024
MAX_BATCH = 4096


def chain_why_not(model: Any, batch_size: int) -> str | None:
    """Why ``model``'s layers and backend cannot run a captured step of ``batch_size`` rows (None: they can)."""
    backend = model.backend
    if settings.graphs is False:
        return "CUDA graphs are off (fcgpu.config.set_graphs(False))"
    if not backend.has_graph_mode:
        return f"the {backend.name} backend has no graph mode"
    if settings.graphs == "auto" and not backend.own_capture_gemms:
        return "the host stand-in captures only when asked (fcgpu.config.set_graphs(True)): its capture GEMM is a loop"
    if not 0 < batch_size <= MAX_BATCH:
        return f"batch {batch_size}: graphs take batches of 1..{MAX_BATCH} rows"
    if model.fusion_plan(True) is None:
        return "the model's layers are not one chain (several inputs or outputs)"
    for layer in model.compute_layers:
        if isinstance(layer, Dense):
            if max(layer.kernel.shape) > MAX_WIDTH:
                return f"layer {layer.name!r} is wider than {MAX_WIDTH}"
            if layer.weight_constraints():
                return f"layer {layer.name!r} has weight constraints"
        elif not isinstance(layer, Dropout):
            return f"layer {layer.name!r} ({type(layer).__name__}) is not Dense or Dropout"
    return None


def why_not(model: Any, batch_size: int, rows: int, sample_weight: Any = None) -> str | None:
    """Why the training step of ``model`` cannot be captured (None: it can)."""
    reason = chain_why_not(model, batch_size)
    if reason is not None:
        return reason
    if batch_size < World.current.size:
        return f"a global batch of {batch_size} rows leaves a rank without rows"
    if sample_weight is not None:
        return "sample weights run the step-by-step path"
    if rows < batch_size:
        return f"batch {batch_size} of {rows} rows: graphs take one full batch at least"
    binding = model.bound_step()
    if not binding.flat_update or binding.regularized or binding.columns != 2:
        return "the step has per-parameter updates, weight penalties or metrics beyond the loss's accuracy"
    inner = inner_optimizer(binding.update)
    if type(inner) not in (SGD, Adam, AdamW):
        return f"optimizer {type(inner).__name__}: graphs take SGD, Adam and AdamW"
    if inner.clipnorm or inner.clipvalue or inner.global_clipnorm or inner.use_ema:
        return "gradient clipping or weight averages run the step-by-step path"
    if inner.schedule is not None and binding.scale is not None:
        return "a learning-rate schedule under loss scaling reads the device each step"
    return None


def stepper_for(model: Any, x_dev: Array, y_dev: Array, w_dev: Array | None, batch_size: int,
                epochs: int) -> "GraphStepper | None":
    """A ``GraphStepper`` for this fit, or None (the reason logged) where the step cannot be captured."""
    reason = why_not(model, batch_size, x_dev.shape[0], w_dev)
    if reason is not None:
        log.info("fit runs step by step: %s", reason)
        return None
    return GraphStepper(model, x_dev, y_dev, batch_size, epochs)


class GraphStepper(CapturedTraining):
    """One fit's captured step: the epoch's order and sums on the device, the counter, the graph.
    Data parallel, each rank captures its share of a full global batch (its rows of the epoch's
    order, gathered; its weight in the gradients' average; its first row in the batch, which keys
    the dropout masks), and the all-reduce optimizer's NCCL all-reduce is captured with the step."""

    def __init__(self, model: Any, x_dev: Array, y_dev: Array, batch_size: int, epochs: int) -> None:
        n, comm = x_dev.shape[0], World.current
        steps = -(-n // batch_size)
        lo, hi = shard_bounds(batch_size, comm.rank, comm.size)  # this rank's rows of a full batch
        super().__init__(model, hi - lo, x_dev.shape[1:], y_dev.shape[1:], y_dev.dtype, max(1, epochs) * steps)
        self.x_dev, self.y_dev, self.global_batch = x_dev, y_dev, batch_size
        if comm.size > 1:
            self.share, self.row_offset = (hi - lo) / batch_size, lo
        self.full_batches = n // batch_size  # full batches: the counter's batch wraps there
        self.sums = self.backend.zeros((2 * steps,), np.float64)  # run_epoch's buffer: rows of (loss, correct)
        _, mine = epoch_batches(n, batch_size, comm.rank, comm.size, gathered=True)
        self.perm = self.backend.zeros((n if mine is None else mine.size,), np.int64)
        self.order = np.arange(n)
        self.ordered = False  # whether perm holds an order
        self.index = 0  # the batch of the epoch being stepped

    def why_not(self) -> str | None:
        return why_not(self.model, self.global_batch, self.x_dev.shape[0])

    def inputs(self) -> None:
        """The batch's rows of the epoch's order, gathered on the device from ctr[1]."""
        self.backend.graph_gather(self.x_dev, self.perm, self.scalars, self.xb)
        self.backend.graph_gather(self.y_dev, self.perm, self.scalars, self.yb)

    def epoch(self, order: np.ndarray | None, mine: np.ndarray | None = None) -> tuple[Array, Array, None]:
        """Take this epoch's row order (None: in order; ``mine``: this rank's positions in it, from
        ``epoch_batches(..., gathered=True)``), one upload; (x, y, weights) for run_epoch."""
        if order is not None or not self.ordered:
            order = np.arange(self.x_dev.shape[0]) if order is None else np.asarray(order, np.int64)
            self.order = order if mine is None else order[mine]
            self.perm.set(self.order)
            self.ordered = True
        return self.x_dev, self.y_dev, None

    def step(self, index: int, batch: Any) -> None:
        """Batch ``index`` of the epoch (this rank's rows batch.start .. batch.stop of its order, of
        a global batch of batch.rows rows) into sums row ``index``."""
        self.index = index
        if batch.rows == self.global_batch and self.run():
            return
        # Today's step on rows gathered by index (a partial batch, or where the step cannot be captured).
        rows = self.backend.from_numpy(self.order[batch.start : batch.stop])
        row = self.sums[2 * index : 2 * index + 2]
        row[...] = 0.0
        if self.share is None:
            self.model.accumulate_batch(self.x_dev[rows], self.y_dev[rows], row)
        else:
            spare = (self.x_dev[0:1], self.y_dev[0:1])  # a rank without rows in this batch steps on it
            step_share(self.model, self.x_dev[rows], self.y_dev[rows], row, 0, batch.stop - batch.start, batch.rows,
                       spare)
        self.stepped()
        # The batch the next captured step gathers: this one's successor (the first after the last
        # full batch), as the captured step's last kernel would have left it.
        self.scalars.ctr[1:2] = index + 1 if index + 1 < self.full_batches else 0

    def at_capture(self) -> None:
        self.scalars.ctr[1:2] = self.index  # the batch this warm-up step and its replays start from
