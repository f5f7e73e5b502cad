"""fit's training step captured once as a CUDA graph and replayed: one device launch a step.

For an eligible model (``why_not``: a chain of Dense and Dropout layers no wider than 1024, a batch
of at most 4096 rows, the CuPy backend, one process, SGD or Adam without clipping, averages or
constraints, no sample weights and no metric beyond the loss's fused accuracy) ``stepper_for`` gives
fit a ``GraphStepper``. Its first full batch is a warm-up step in graph mode (``CupyBackend.graph_mode``:
every buffer allocated, the GEMMs without cuBLAS, each step's scalars read from the device); the
same step is then captured on a non-default stream, and every later full batch is one
``Graph.launch()``. What changes between steps lives on the device: the counter ``ctr`` (steps
taken, the batch in the epoch), from which the step's first kernel derives the learning rate (a
table of the schedule, one entry an iteration of this fit) and Adam's bias corrections, the dropout
kernels their Philox step (the step at capture + ctr[0]: the same masks as the step-by-step path),
and the gather its rows of the epoch's order (uploaded once an epoch, no device operation); the
step's last kernel writes its sums into the epoch's row and advances the counter. The host
advances its own counts (dropout steps, the optimizer's iterations and step counts) by one a replay.

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
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..optimizers import SGD, Adam, AdamW, LossScaleOptimizer

__all__ = ["GraphStepper", "MAX_BATCH", "MAX_WIDTH", "stepper_for", "why_not"]

log = logging.getLogger("fcgpu.graphs")

MAX_WIDTH = 1024
MAX_BATCH = 4096


def _inner(optimizer: Any) -> Any:
    return optimizer.inner if isinstance(optimizer, LossScaleOptimizer) else optimizer


def why_not(model: Any, batch_size: int, rows: int, sample_weight: Any = None) -> str | None:
    """Why fit cannot capture ``model``'s step (None: it can)."""
    backend = model.backend
    if settings.graphs is False:
        return "CUDA graphs are off (fcgpu.config.set_graphs(False))"
    if not backend.has_graph_mode:
        return f"the {backend.name} backend has no graph mode"
    if settings.graphs == "auto" and not backend.own_capture_gemms:
        return "the host stand-in captures only when asked (fcgpu.config.set_graphs(True)): its capture GEMM is a loop"
    if World.current.size > 1:
        return "data parallel runs the step-by-step path"
    if sample_weight is not None:
        return "sample weights run the step-by-step path"
    if not 0 < batch_size <= MAX_BATCH or rows < batch_size:
        return f"batch {batch_size} of {rows} rows: graphs take batches of 1..{MAX_BATCH} rows and one full batch"
    for layer in model.compute_layers:
        if isinstance(layer, Dense):
            if max(layer.kernel.shape) > MAX_WIDTH:
                return f"layer {layer.name!r} is wider than {MAX_WIDTH}"
            if layer.weight_constraints():
                return f"layer {layer.name!r} has weight constraints"
        elif not isinstance(layer, Dropout):
            return f"layer {layer.name!r} ({type(layer).__name__}) is not Dense or Dropout"
    binding = model.bound_step()
    if not binding.flat_update or binding.regularized or binding.columns != 2:
        return "the step has per-parameter updates, weight penalties or metrics beyond the loss's accuracy"
    inner = _inner(binding.update)
    if type(inner) not in (SGD, Adam, AdamW):
        return f"optimizer {type(inner).__name__}: graphs take SGD, Adam and AdamW"
    if inner.clipnorm or inner.clipvalue or inner.global_clipnorm or inner.use_ema:
        return "gradient clipping or weight averages run the step-by-step path"
    if inner.schedule is not None and binding.update is not inner:
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


class GraphStepper:
    """One fit's captured step: the epoch's order and sums on the device, the counter, the graph."""

    def __init__(self, model: Any, x_dev: Array, y_dev: Array, batch_size: int, epochs: int) -> None:
        self.model, self.x_dev, self.y_dev, self.batch = model, x_dev, y_dev, int(batch_size)
        backend = self.backend = model.backend
        n = x_dev.shape[0]
        self.full, self.steps = n // self.batch, -(-n // self.batch)
        self.sums = backend.zeros((2 * self.steps,), np.float64)  # run_epoch's buffer: rows of (loss, correct)
        self.perm = backend.zeros((n,), np.int64)
        self.order = np.arange(n)
        self.acc = backend.zeros((2,), np.float64)
        # x in the first layer's compute dtype (half under a mixed policy): the gather casts it as the
        # layer's own cast would (round to nearest), and the captured step allocates no cast.
        self.xb = backend.empty((self.batch, *x_dev.shape[1:]), model.compute_layers[0].compute_dtype)
        self.yb = backend.empty((self.batch, *y_dev.shape[1:]), y_dev.dtype)
        self.scalars = backend.graph_scalars()
        self.total = max(1, epochs) * self.steps + 1  # iterations this fit may take (the lr table's length)
        self.graph: Any = None
        self.key: Any = None
        self.lrs: Array | None = None
        self.failed: str | None = None
        self.launches = 0  # replays so far (for tests and benchmarks)
        self.done = 0  # steps since the counter started: ctr[0] on the device
        self.ordered = False  # whether perm holds an order
        self.stream = backend.cp.cuda.Stream(non_blocking=True)
        self.it_fit = _inner(model.optimizer).iterations

    # -- the epoch --------------------------------------------------------------------------------
    def epoch(self, order: np.ndarray | None) -> tuple[Array, Array, None]:
        """Take this epoch's row order (None: in order), one upload; (x, y, weights) for run_epoch."""
        if order is not None or not self.ordered:
            self.order = np.arange(self.x_dev.shape[0]) if order is None else np.asarray(order, np.int64)
            self.perm.set(self.order)
            self.ordered = True
        return self.x_dev, self.y_dev, None

    def step(self, index: int, batch: Any) -> None:
        """Batch ``index`` of the epoch (rows batch.start .. batch.stop of its order) into sums row ``index``."""
        if batch.rows != self.batch or self.failed is not None:
            self._step_by_step(index, batch)
            return
        key = self._key()
        if self.graph is None or key != self.key:  # first, or the model, optimizer or rate changed
            reason = why_not(self.model, self.batch, self.x_dev.shape[0])
            if reason is not None:
                self.failed = reason
                log.info("fit runs step by step from here: %s", reason)
                self._step_by_step(index, batch)
            else:
                self._warm_up_and_capture(key)
            return
        # On the current stream, where fit runs everything else (the reads of the sums, the order's
        # upload, a partial batch): a non-blocking capture stream would not be ordered with them.
        self.graph.launch()
        self.launches += 1
        self._shift_host(1)
        self.done += 1

    # -- the step ---------------------------------------------------------------------------------
    def _key(self) -> tuple:
        """What the captured graph depends on beyond the device arrays: the binding and the rate."""
        binding = self.model.bound_step()
        inner = _inner(binding.update)
        rate = inner.schedule if inner.schedule is not None else float(inner.learning_rate)
        return binding, rate

    def _lr_table(self, rate: Any) -> Array:
        if isinstance(rate, float):
            return self.backend.from_numpy(np.array([rate], np.float64))
        return self.backend.from_numpy(np.array([float(rate(self.it_fit + j)) for j in range(self.total)], np.float64))

    def _graph_step(self) -> None:
        """The step every launch of which is the same: scalars, the batch's rows, the step, its sums."""
        backend, g = self.backend, self.scalars
        inner = _inner(self.model.optimizer)
        beta1, beta2 = inner.bias_correction_betas()
        t_base = max(inner.steps.values(), default=0)
        with backend.graph_mode(g):
            backend.graph_begin(g, self.lrs, inner.iterations, self.it_fit, t_base, beta1, beta2)
            backend.graph_gather(self.x_dev, self.perm, g, self.xb)
            backend.graph_gather(self.y_dev, self.perm, g, self.yb)
            self.model.accumulate_batch(self.xb, self.yb, self.acc)
            backend.graph_end(g, self.sums, self.full, self.acc)

    def _warm_up_and_capture(self, key: tuple) -> None:
        """One step in graph mode (it allocates what the step needs), then the same step captured."""
        self.key, self.lrs, self.graph = key, self._lr_table(key[1]), None
        # The step's scalars are the host's counts less ctr[0] (done), plus ctr[0] on the device.
        self._shift_host(-self.done)
        self._graph_step()  # a real step: the host's counts advance with it, and ctr[0] on the device
        self._shift_host(self.done)
        self.done += 1
        saved = self._host_counts()
        self._shift_host(-self.done)
        try:
            with self.stream:
                self.stream.begin_capture()
                try:
                    self._graph_step()
                finally:
                    graph = self.stream.end_capture()
            self.graph = graph
        except Exception as e:  # noqa: BLE001 - any refusal: the step-by-step path for the rest of this fit
            self.failed = f"{type(e).__name__}: {e}"
            log.warning("fit: the training step could not be captured as a CUDA graph (%s); running it step by step",
                        self.failed)
        finally:
            self._restore_host_counts(saved)  # the capture ran no step

    def _step_by_step(self, index: int, batch: Any) -> None:
        """Today's step on rows gathered by index (a partial batch, or after a failed capture)."""
        backend = self.backend
        rows = backend.from_numpy(self.order[batch.start : batch.stop])
        row = self.sums[2 * index : 2 * index + 2]
        row[...] = 0.0
        self.model.accumulate_batch(self.x_dev[rows], self.y_dev[rows], row)
        self.scalars.ctr[0:1] += 1  # the device's count of steps follows the host's
        self.done += 1

    # -- the host's counts ------------------------------------------------------------------------
    def _counted(self) -> tuple[list[Any], Any]:
        return [layer for layer in self.model.compute_layers if isinstance(layer, Dropout)], _inner(self.model.optimizer)

    def _host_counts(self) -> tuple:
        dropouts, inner = self._counted()
        return [layer.step for layer in dropouts], inner.iterations, dict(inner.steps)

    def _restore_host_counts(self, saved: tuple) -> None:
        dropouts, inner = self._counted()
        for layer, step in zip(dropouts, saved[0]):
            layer.step = step
        inner.__dict__["iterations"] = saved[1]  # as Optimizer.apply sets it: nothing to unbind
        inner.steps.clear()
        inner.steps.update(saved[2])

    def _shift_host(self, k: int) -> None:
        """The host's counts moved by ``k`` steps (+1: what a replay does to them)."""
        dropouts, inner = self._counted()
        for layer in dropouts:
            layer.step += k
        inner.__dict__["iterations"] += k
        for name in inner.steps:
            inner.steps[name] += k
