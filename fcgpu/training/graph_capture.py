"""What every captured step shares: the capture itself, and a training step's counts kept in step.

``capture`` records a step on a non-default stream into a ``cupy.cuda.Graph`` and returns, beside it,
every buffer array the step used (``fcgpu.backends.buffers.recording``): a graph writes at fixed
addresses, so those arrays are held for the graph's life, though a later call of another batch size
replaces them in their layers' buffers.

``CapturedTraining`` is a training step captured once and replayed (fit's ``graph_step.GraphStepper``
and train_step's ``graph_calls.TrainStepGraph``). What changes between its steps lives on the
device (``CupyBackend.graph_scalars``): the counter ``ctr`` (ctr[0]: steps since the bases were
taken; ctr[1]: the batch in the epoch), from which the step's first kernel derives the learning
rate (a table of the schedule, one entry an iteration) and Adam's bias corrections, and the
dropout kernels their Philox step; the step's last kernel writes its sums into the batch's row and
advances the counter. The host advances its own counts (dropout steps, the optimizer's iterations
and step counts) by one a replay, and captures again where they moved otherwise (another path took
a step), or the model, the optimizer or its schedule changed (``key``); a new constant learning
rate is one upload into the table before the next replay.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ..backends.base import Array
from ..backends.buffers import recording
from ..distributed.allreduce import AllReduceOptimizer
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..optimizers import LossScaleOptimizer

__all__ = ["CapturedTraining", "capture", "inner_optimizer", "layer_settings"]

log = logging.getLogger("fcgpu.graphs")

LR_WINDOW = 1024  # iterations a learning-rate table covers where the number of steps is not known


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that holds the counts and the rate (inside an all-reduce and a loss scaler)."""
    if isinstance(optimizer, AllReduceOptimizer):
        optimizer = optimizer.inner
    return optimizer.inner if isinstance(optimizer, LossScaleOptimizer) else optimizer


def layer_settings(model: Any) -> tuple:
    """What a chain's captured launches take as constants besides the parameters: each Dense's
    activation and each Dropout's rate (a change means a new capture)."""
    return tuple(layer.rate if isinstance(layer, Dropout) else layer.activation.name if isinstance(layer, Dense)
                 else type(layer) for layer in model.compute_layers)


def capture(backend: Any, body: Callable[[], None]) -> tuple[Any, list[Array]]:
    """(graph, held): ``body`` captured by ``backend.capture_graph``; ``held``: every buffer array
    it used, to keep as long as the graph (its memory must not go back to the pool)."""
    with recording() as held:
        graph = backend.capture_graph(body)
    return graph, held


class CapturedTraining:
    """A model's training step on fixed batch buffers (xb, yb) captured once and replayed.

    Subclasses give ``why_not()`` (None: the step can be captured), ``inputs()`` (the launches
    that fill xb and yb inside the step, if any), ``sums`` (rows of (loss, correct), the step's
    last kernel writing row ctr[1]) and ``full_batches`` (where ctr[1] wraps)."""

    sums: Array
    full_batches: int
    share: float | None = None  # data parallel: this rank's part of a full global batch's rows
    row_offset = 0  # data parallel: the index of this rank's first row in the global batch

    def __init__(self, model: Any, batch: int, x_shape: tuple, y_shape: tuple, y_dtype: Any, iterations: int) -> None:
        self.model, self.batch = model, int(batch)
        backend = self.backend = model.backend
        # x in the first layer's compute dtype (half under a mixed policy): filled as the layer's own
        # cast would fill it (round to nearest), so the captured step allocates no cast.
        self.xb = backend.empty((self.batch, *x_shape), model.compute_layers[0].compute_dtype)
        self.yb = backend.empty((self.batch, *y_shape), y_dtype)
        self.acc = backend.zeros((2,), np.float64)
        self.scalars = backend.graph_scalars()
        self.iterations = max(1, iterations) + 1  # iterations an lr table covers (from it_fit on)
        self.it_fit = inner_optimizer(model.optimizer).iterations
        self.graph: Any = None
        self.held: list[Array] = []
        self.key: Any = None
        self.lrs: Array | None = None
        self.rate = 0.0  # the constant rate lrs holds
        self.failed: tuple | None = None  # (key, reason): the step runs step by step until the key changes
        self.expected: tuple | None = None  # the host's counts after the last replay

    def why_not(self) -> str | None:
        raise NotImplementedError

    def inputs(self) -> None:
        """The step's launches that fill xb and yb (none where the host uploads them)."""

    def at_capture(self) -> None:
        """Before a warm-up step and its capture: set what the step reads of its position."""

    # -- one step ---------------------------------------------------------------------------------
    def run(self, key: tuple | None = None) -> bool:
        """One step on xb, yb: a replay, or a step that warms up and captures (then True); False
        where this step must run step by step (not eligible, or the capture failed). ``key``: the
        caller's ``_key()`` of this step, where it took it."""
        key = self._key() if key is None else key
        if self.failed is not None and self.failed[0] == key:
            return False
        if self.graph is None or key != self.key or self._host_counts() != self.expected:
            reason = self.why_not()
            if reason is not None:
                self.failed = (key, reason)
                log.info("%s runs step by step: %s", type(self).__name__, reason)
                return False
            self._warm_up_and_capture(key)
            return True
        if key[1] == "constant":
            rate = float(inner_optimizer(self.model.optimizer).learning_rate)
            if rate != self.rate:  # (a callback's new rate, Keras's ReduceLROnPlateau): one upload
                self.lrs.set(np.array([rate], np.float64))
                self.rate = rate
        self.graph.launch()  # on the current stream, which also orders the uploads and reads around it
        if isinstance(self.model.optimizer, LossScaleOptimizer):  # its device state decided this step
            self.model.optimizer.ran_on_device()
        self._shift_host(1)
        self.expected = self._host_counts()
        return True

    def stepped(self) -> None:
        """A step the host took outside the graph (step by step): the device's count follows."""
        self.scalars.ctr[0:1] += 1
        if self.expected is not None:
            self.expected = self._host_counts()

    def _key(self) -> tuple:
        """What the graph depends on beyond the device arrays: the binding, the rate (its table's window)."""
        binding = self.model.bound_step()
        inner = inner_optimizer(binding.update)
        # (The binding is made again where the optimizer's settings, a layer's activation or a
        # Dropout's rate changed: the constants the captured launches take.)
        if inner.schedule is None:  # a constant rate: uploaded where it changed (``run``), no new capture
            return binding, "constant"
        if not self.it_fit <= inner.iterations < self.it_fit + self.iterations - 1:
            self.it_fit, self.iterations = inner.iterations, LR_WINDOW  # a new window of the table
        return binding, inner.schedule, self.it_fit

    def _lr_table(self, rate: Any) -> Array:
        if rate == "constant":
            self.rate = float(inner_optimizer(self.model.optimizer).learning_rate)
            return self.backend.from_numpy(np.array([self.rate], np.float64))
        values = [float(rate(self.it_fit + j)) for j in range(self.iterations)]
        return self.backend.from_numpy(np.array(values, np.float64))

    def _graph_step(self) -> None:
        """The step every launch of which is the same: scalars, the batch's rows, the step, its sums."""
        backend, g = self.backend, self.scalars
        inner = inner_optimizer(self.model.optimizer)
        beta1, beta2 = inner.bias_correction_betas()
        t_base = max(inner.steps.values(), default=0)
        with backend.graph_mode(g):
            backend.graph_begin(g, self.lrs, inner.iterations, self.it_fit, t_base, beta1, beta2)
            self.inputs()
            self.model.accumulate_batch(self.xb, self.yb, self.acc, self.share, self.row_offset)
            backend.graph_end(g, self.sums, self.full_batches, self.acc)

    def _warm_up_and_capture(self, key: tuple) -> None:
        """One step in graph mode (it allocates what the step needs), then the same step captured."""
        self.key, self.lrs, self.graph, self.held, self.failed = key, self._lr_table(key[1]), None, [], None
        # The step's scalars are the host's counts at ctr[0] = 0, plus ctr[0] on the device: the
        # counter starts again at each capture (a new optimizer's step counts start where it has none).
        self.scalars.ctr[0:1] = 0
        self.at_capture()
        self._graph_step()  # a real step: the host's counts advance with it, and ctr[0] on the device
        saved = self.expected = self._host_counts()
        self._shift_host(-1)  # the capture's bases: the counts before that step, as every count moved by it
        try:
            self.graph, self.held = capture(self.backend, self._graph_step)
        except Exception as e:  # noqa: BLE001 - any refusal: the step-by-step path until the key changes
            self.failed = (key, f"{type(e).__name__}: {e}")
            log.warning("the training step could not be captured as a CUDA graph (%s); running it step by step",
                        self.failed[1])
        finally:
            self._restore_host_counts(saved)  # the capture ran no step

    # -- the host's counts ------------------------------------------------------------------------
    def _counted(self) -> tuple[list[Any], Any]:
        # the Dropouts whose counter a training step advances (rate 0 is the identity, no step)
        dropouts = [layer for layer in self.model.compute_layers if isinstance(layer, Dropout) and layer.rate > 0]
        return dropouts, inner_optimizer(self.model.optimizer)

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
