"""train_step, evaluate and predict, each with its own captured CUDA graph (fit's is ``graph_step``).

The model keeps them in its ``GraphCache`` (a few, the most recently used), one per call kind and
batch shape. Each works on fixed batch buffers: the host uploads train_step's batch into them (no
device operation), evaluate and predict copy each batch of their device arrays in (one operation
each), and one ``Graph.launch()`` runs the rest:

- ``TrainStepGraph`` (train_step, train_on_batch): the training step of ``graph_capture.CapturedTraining``
  on the uploaded batch; its sums (loss x rows, correct rows) are read once, as the step-by-step
  path reads them.
- ``InferenceGraph``: the model's inference forward (one fused kernel where every width is at most
  128 on real CuPy, ``backends/cupy/fused_mlp.py``), and for evaluate the loss's fused step adding
  the batch's loss and correct count into the graph's accumulator (its gradient unused); predict
  reads the output buffer. A last partial batch: evaluate runs it step by step; predict runs the
  graph on the batch buffer's first rows (rows are independent in a chain of Dense layers).

Eligible where fit's step is (``graph_step.chain_why_not``); inference also on N ranks and
uncompiled (predict). Captured again where a layer's parameters, the layers, the loss or (training)
the optimizer, rate or counts changed; where it cannot be, the step-by-step path runs.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..backends.base import Array
from ..layers.dense import Dense
from .graph_capture import CapturedTraining, capture, layer_settings
from .graph_step import chain_why_not, why_not
from .step import layout_watch

__all__ = ["GraphCache", "InferenceGraph", "TrainStepGraph", "evaluate_graph", "predict_graph", "train_step_graph"]

log = logging.getLogger("fcgpu.graphs")

CACHED = 4  # graphs a model keeps (each holds its batch's buffers)


class GraphCache:
    """A model's captured train_step / evaluate / predict graphs, by (kind, batch shape); the most
    recently used ``CACHED``. Not copied with the model (``copy.deepcopy`` gives an empty one)."""

    def __init__(self) -> None:
        self.graphs: dict[tuple, Any] = {}

    def get(self, key: tuple, make: Any) -> Any:
        graph = self.graphs.pop(key, None)
        if graph is None:
            graph = make()
            while len(self.graphs) >= CACHED:
                self.graphs.pop(next(iter(self.graphs)))
        self.graphs[key] = graph
        return graph

    def __deepcopy__(self, memo: dict) -> "GraphCache":
        return GraphCache()


# -- train_step -----------------------------------------------------------------------------------
class TrainStepGraph(CapturedTraining):
    """train_step's captured step on batches of one shape, uploaded into xb and yb."""

    full_batches = 1

    def __init__(self, model: Any, xh: np.ndarray, yh: np.ndarray) -> None:
        super().__init__(model, xh.shape[0], xh.shape[1:], yh.shape[1:], yh.dtype, 1)
        self.sums = self.backend.zeros((2,), np.float64)

    def why_not(self) -> str | None:
        return why_not(self.model, self.batch, self.batch)

    def __call__(self, xh: np.ndarray, yh: np.ndarray) -> np.ndarray | None:
        """The batch's sums (loss x rows, correct rows) after one captured step; None where it must
        run step by step (nothing done)."""
        key = self._key()
        if self.failed is not None and self.failed[0] == key:
            return None
        self.xb.set(np.ascontiguousarray(xh, self.xb.dtype))  # cast on the host as the device rounds
        self.yb.set(np.ascontiguousarray(yh))
        if not self.run(key):
            return None
        return self.backend.to_numpy(self.sums)


def train_step_graph(model: Any, xh: np.ndarray, yh: np.ndarray) -> np.ndarray | None:
    """train_step's sums through its captured graph, or None (the step-by-step path takes it)."""
    if chain_why_not(model, xh.shape[0]) is not None:
        return None
    key = ("train", xh.shape, yh.shape, yh.dtype)
    return model.graph_cache.get(key, lambda: TrainStepGraph(model, xh, yh))(xh, yh)


# -- evaluate and predict -------------------------------------------------------------------------
class InferenceGraph:
    """The inference forward (and for evaluate the loss's sums into ``acc``) of ``batch`` rows,
    captured on xb (and yb) and replayed for every batch copied in."""

    def __init__(self, model: Any, batch: int, x_dev: Array, y_dev: Array | None) -> None:
        self.model, self.batch = model, int(batch)
        backend = self.backend = model.backend
        self.xb = backend.zeros((self.batch, *x_dev.shape[1:]), model.compute_layers[0].compute_dtype)
        self.yb = None if y_dev is None else backend.zeros((self.batch, *y_dev.shape[1:]), y_dev.dtype)
        self.acc = backend.zeros((2,), np.float64)
        self.scalars = backend.graph_scalars()
        self.graph: Any = None
        self.held: list[Array] = []
        self.out: Array | None = None  # predict: the forward's output buffer (batch, N_last)
        self.key: Any = None
        self.watch: list = []
        self.failed: Any = None  # the key the capture failed for
        self.fused: tuple | None = None  # the fused MLP forward's arguments, where it runs (``_fused_chain``)

    def _key(self) -> tuple:
        model = self.model
        loss = model.output_loss() if self.yb is not None else None
        return tuple(model.compute_layers), model.backend, loss, layer_settings(model)

    def ready(self) -> bool:
        """Whether the graph (captured now where it was not, or the model changed) can run this call."""
        key = self._key()
        if self.graph is not None and key == self.key and all(ns.get(k) is v for ns, k, v in self.watch):
            return True
        if self.failed == key:
            return False
        self.key, self.graph, self.held, self.out, self.failed = key, None, [], None, None
        self.watch = layout_watch(self.model.compute_layers)
        self.fused = self._fused_chain(self.yb is not None and self.model.output_loss()[1])
        self._body()  # warm up: every buffer allocated (results discarded)
        try:
            self.graph, self.held = capture(self.backend, lambda: self._body(keep=True))
        except Exception as e:  # noqa: BLE001 - any refusal: step by step until the model changes
            self.failed, self.graph = key, None
            log.warning("%s: inference could not be captured as a CUDA graph (%s: %s); running step by step",
                        type(self).__name__, type(e).__name__, e)
            return False
        return True

    def _fused_chain(self, logits: bool) -> tuple | None:
        """(weights, biases, activations, out) of the chain's Dense layers where the backend runs
        their inference forward as one kernel (``fuses_chain``: real CuPy, widths <= 128; the
        Dropouts are the identity here), else None (layer by layer)."""
        dense = [layer for layer in self.model.compute_layers if isinstance(layer, Dense)]
        if not dense or any(layer.compute_dtype != self.xb.dtype for layer in dense):
            return None
        activations = [layer.activation.name for layer in dense[:-1]] + ["linear" if logits else dense[-1].activation.name]
        widths = [self.xb.shape[1], *(layer.units for layer in dense)]
        if not self.backend.fuses_chain(widths, activations, self.xb.dtype):
            return None
        weights = [layer.compute_weights() for layer in dense]
        out = self.backend.empty((self.batch, widths[-1]), self.xb.dtype)
        return [w for w, _ in weights], [b for _, b in weights], activations, out

    def _forward(self, logits: bool) -> Array:
        if self.fused is None:
            return self.model.infer(self.xb, logits=logits)
        weights, biases, activations, out = self.fused
        return self.backend.fused_mlp.forward(self.xb, weights, biases, activations, out)

    def _body(self, keep: bool = False) -> None:
        """The captured work; ``keep``: note predict's output buffer (not in the warm-up: a buffer
        held there would not be handed out again to the capture)."""
        model, backend = self.model, self.backend
        with backend.graph_mode(self.scalars):
            if self.yb is None:
                out = self._forward(False)
                if keep:
                    self.out = out
                return
            loss, on_logits = model.output_loss()
            logits = self._forward(on_logits)
            loss.step(backend, logits, self.yb, self.acc, any(m.fused_with_loss for m in model.metric_objects))

    def run(self, xs: Array, ys: Array | None = None) -> Array | None:
        """One batch (rows of xs, ys; at most ``batch``) copied in and the graph launched; predict:
        the output's rows (a view of the graph's buffer, valid until the next run)."""
        rows = xs.shape[0]
        self.xb[:rows] = xs
        if ys is not None:
            self.yb[...] = ys
        self.graph.launch()
        return None if self.out is None else self.out[:rows]


def _inference_graph(model: Any, kind: str, batch: int, x_dev: Array, y_dev: Array | None) -> InferenceGraph | None:
    reason = chain_why_not(model, batch)
    if reason is not None:
        log.info("%s runs step by step: %s", kind, reason)
        return None
    key = (kind, batch, x_dev.shape[1:], None if y_dev is None else (y_dev.shape[1:], y_dev.dtype))
    graph = model.graph_cache.get(key, lambda: InferenceGraph(model, batch, x_dev, y_dev))
    return graph if graph.ready() else None


def evaluate_graph(model: Any, batch: int, x_dev: Array, y_dev: Array, w_dev: Array | None) -> InferenceGraph | None:
    """evaluate's graph for batches of ``batch`` rows of (x_dev, y_dev), its sums zeroed; None (the
    step-by-step path) where it cannot run: sample weights, metrics beyond the loss's accuracy."""
    if w_dev is not None or model.metric_columns() != 2 or x_dev.shape[0] < batch:
        return None
    graph = _inference_graph(model, "evaluate", batch, x_dev, y_dev)
    if graph is not None:
        graph.acc[...] = 0.0
    return graph


def predict_graph(model: Any, batch: int, x_dev: Array) -> InferenceGraph | None:
    """predict's graph for batches of at most ``batch`` rows of x_dev, or None (step by step)."""
    if x_dev.shape[0] == 0:
        return None
    return _inference_graph(model, "predict", min(batch, x_dev.shape[0]), x_dev, None)
