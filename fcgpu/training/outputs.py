"""Models of several outputs: a loss per output (weighted), each output's loss figure and metrics,
as Keras 3's ``compile`` makes them (logged as 'loss', '<output>_loss', '<output>_<metric>'; an
output is named by its key where the model's outputs are a dict, else by its layer's name).

The outputs reach the trainer side by side, (B, N_1 + N_2 + ...), and so do their labels (each
output's prepared labels as columns of one float64 array: class ids one column), so that
shuffling, batching, weights and data parallel treat them as one array. ``OutputsLoss`` runs each
output's own loss step on its columns (its fused kernel where the output's activation allows) and
writes the weighted gradients side by side; ``OutputMetric`` gives a metric its output's columns.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np

from .. import losses as losses_module
from .. import metrics as metrics_module
from ..metrics.accuracy import AccuracyByLabels
from ..backends import Backend
from ..backends.base import Array, Scalar
from ..backends.buffers import Buffers
from ..losses import Loss

__all__ = ["OutputLossTracker", "OutputMetric", "OutputsLoss", "check_one_loss_weight", "compile_outputs",
           "metrics_by_output", "one_sample_weight"]


class OutputLossTracker(metrics_module.Mean):
    """'<output>_loss': the mean over samples of one output's loss, filled by ``OutputsLoss.step``."""

    def update(self, backend: Backend, y_pred: Array, y_true: Array = None, sample_weight: Array | None = None) -> None:
        pass  # the loss's step adds into this state

    def add_batch(self, loss_rows: Array, rows: int) -> None:
        self._total += loss_rows
        self._count += float(rows)


class OutputsLoss(Loss):
    """One loss per output, weighted (``loss_weights``); the total is sum_k w_k loss_k."""

    structured_labels = True  # y is a list (or a dict by output name): checked here, not by rows
    keeps_batch = False

    def __init__(self, losses: Sequence[Loss], weights: Sequence[float], names: Sequence[str],
                 columns: Sequence[tuple[int, int]], trackers: Sequence[OutputLossTracker] | None = None) -> None:
        super().__init__(name="loss")
        self.losses, self.weights, self.names, self.columns = list(losses), [float(w) for w in weights], list(names), list(columns)
        self.trackers = list(trackers) if trackers is not None else [OutputLossTracker(name=f"{n}_loss") for n in names]
        # the order of the outputs' '<output>_loss' in the logs: Keras's, the loss dict's for dict outputs
        self.log_order: list[int] = list(range(len(self.names)))
        self.weighs_rows = all(loss.weighs_rows for loss in self.losses)
        # (start, stop, class ids, the dtype its loss prepared) of each output's labels
        self.label_columns: list[tuple[int, int, bool, str]] | None = None
        self._buffers = Buffers()
        self._weight_arrays: dict[int, Array] = {}
        self._fused: dict[tuple[str, ...], tuple["OutputsLoss", tuple[bool, ...]]] = {}

    def get_config(self) -> dict[str, Any]:
        return {"class_name": "OutputsLoss", "losses": [loss.get_config() for loss in self.losses],
                "loss_weights": self.weights, "output_names": self.names}

    def __repr__(self) -> str:
        return f"OutputsLoss({dict(zip(self.names, self.losses))!r}, loss_weights={self.weights})"

    def for_outputs(self, activations: Sequence[str]) -> tuple["OutputsLoss", tuple[bool, ...]]:
        """(the loss each output computes, whether it takes that output's logits): a probability
        cross-entropy after its matching activation runs on the logits, as for one output."""
        key = tuple(activations)
        if key not in self._fused:
            losses, flags = [], []
            for loss, name, activation in zip(self.losses, self.names, activations):
                fused = loss.fused_with(activation)
                if fused is None and loss.takes_probabilities and activation not in ("sigmoid", "softmax"):
                    raise ValueError(f"loss: {loss!r} for output '{name}' takes probabilities in [0, 1], but that "
                                     f"output's activation is '{activation}'; use from_logits=True or end it with its activation")
                losses.append(fused if fused is not None else loss)
                flags.append(fused is not None)
            inner = OutputsLoss(losses, self.weights, self.names, self.columns, self.trackers)
            inner.label_columns, inner.log_order = self.label_columns, self.log_order
            self._fused[key] = (inner, tuple(flags))
        inner, flags = self._fused[key]
        inner.label_columns = self.label_columns
        return inner, flags

    # -- labels ------------------------------------------------------------------
    def per_output(self, values: Any, argument: str, what: str = "label arrays") -> list[Any]:
        """``values`` for each output, in output order: a list in output order, or a dict by output
        name (a dict output's key)."""
        if isinstance(values, dict):
            if set(values) != set(self.names):
                raise ValueError(f"{argument}: the model's outputs are {self.names}; got a dict with keys {sorted(values)}")
            return [values[name] for name in self.names]
        if isinstance(values, (list, tuple)) and len(values) == len(self.names):
            return list(values)
        got = f"a list of {len(values)}" if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{argument}: the model has {len(self.names)} outputs {self.names}: expected a list of "
                         f"{len(self.names)} {what} or a dict by output name, got {got}")

    def prepare_labels(self, labels: Any, pred_shape: tuple[int, ...], dtype: Any, argument: str) -> np.ndarray:
        """Each output's labels (a list in output order, or a dict by output name) prepared by its
        loss, side by side as the columns of one float64 array."""
        parts = self.per_output(labels, argument)
        rows, arrays, layout, start = pred_shape[0], [], [], 0
        for k, (loss, part, (a, b)) in enumerate(zip(self.losses, parts, self.columns)):
            where = f"{argument}[{self.names[k]!r}]"
            if len(part) != rows:
                raise ValueError(f"{where}: expected {rows} samples (as x), got {len(part)}")
            prepared = loss.prepare_labels(part, (rows, b - a), dtype, where)
            ids = prepared.ndim == 1
            arrays.append(prepared.reshape(rows, -1).astype(np.float64))
            layout.append((start, start + arrays[-1].shape[1], ids, prepared.dtype.name))
            start += arrays[-1].shape[1]
        if self.label_columns is not None and self.label_columns != layout:
            raise ValueError(f"{argument}: the labels' layout {layout} differs from the one the model was trained "
                             f"with {self.label_columns} (class ids against one-hot rows?)")
        self.label_columns = layout
        return np.concatenate(arrays, axis=1)

    def label_part(self, backend: Backend, labels: Array, k: int) -> Array:
        """Output ``k``'s labels from the side-by-side array, as its loss prepared them (contiguous)."""
        start, stop, ids, dtype = self.label_columns[k]
        part = labels[:, start] if ids else labels[:, start:stop]
        return backend.copy(part.astype(dtype))

    # -- the step --------------------------------------------------------------------------
    def step(self, backend: Backend, pred: Array, labels: Array, acc: Array, count: bool, *, scale: Any = None,
             sample_weight: Array | None = None) -> Array:
        """Each output's loss step on its columns: the gradient (B, N_1 + ...) weighted per output; the
        total loss x rows into ``acc[0]``, each output's into its tracker."""
        rows = pred.shape[0]
        grad = self._buffers.get(backend, "grad", pred.shape, pred.dtype)
        sums = backend.zeros((len(self.losses), 2), np.float64)
        for k, (loss, w, (a, b)) in enumerate(zip(self.losses, self.weights, self.columns)):
            part = backend.copy(pred[:, a:b])
            g = loss.step(backend, part, self.label_part(backend, labels, k), sums[k], False, scale=scale,
                          sample_weight=sample_weight)
            backend.copy(g if w == 1.0 else g * g.dtype.type(w), out=grad[:, a:b])
            self.trackers[k].add_batch(sums[k, 0:1], rows)
        weights = self._weight_arrays.get(id(backend))
        if weights is None:  # uploaded once per backend
            weights = self._weight_arrays[id(backend)] = backend.from_numpy(np.asarray(self.weights, np.float64))
        total = acc[0:1]
        total += (sums[:, 0] * weights).sum()
        return grad

    def compute(self, backend: Backend, pred: Array, labels: Array, keep: bool = True) -> Scalar:
        """The mean total loss of a batch (evaluate), each output's figure into its tracker."""
        acc = backend.zeros((2,), np.float64)
        self.step(backend, pred, labels, acc, False)
        return acc[0] / pred.shape[0]

    def correct(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        raise TypeError("metrics: 'accuracy' of a model of several outputs is each output's metric")

    def clear_buffers(self) -> None:
        self._buffers.clear()
        self._weight_arrays.clear()
        for loss in self.losses:
            loss.clear_buffers()

    def release(self) -> None:
        pass


class OutputMetric(metrics_module.Metric):
    """A metric of one output: named '<output>_<metric>', given that output's columns and labels."""

    def __init__(self, metric: metrics_module.Metric, k: int, loss: OutputsLoss) -> None:
        super().__init__(name=f"{loss.names[k]}_{metric.name}")
        self.metric, self.k, self.outputs_loss = metric, k, loss

    def state_size(self, outputs: int) -> int:
        a, b = self.outputs_loss.columns[self.k]
        return self.metric.state_size(b - a)

    def bind(self, state: Array, backend: Backend, outputs: int | None = None) -> None:
        a, b = self.outputs_loss.columns[self.k]
        self.metric.bind(state, backend, b - a)

    def update(self, backend: Backend, y_pred: Array, y_true: Array, sample_weight: Array | None = None) -> None:
        a, b = self.outputs_loss.columns[self.k]
        labels = self.outputs_loss.label_part(backend, y_true, self.k)
        self.metric.update(backend, backend.copy(y_pred[:, a:b]), labels, sample_weight)

    def result_from(self, state: np.ndarray) -> Any:
        return self.metric.result_from(state)

    def custom_reset(self) -> bool:
        return self.metric.custom_reset()

    def reset_state(self) -> None:
        self.metric.reset_state()

    def check(self, pred_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
        a, b = self.outputs_loss.columns[self.k]
        start, stop, ids, _ = self.outputs_loss.label_columns[self.k]
        self.metric.check((pred_shape[0], b - a), (pred_shape[0],) if ids else (pred_shape[0], stop - start))

    def get_config(self) -> dict[str, Any]:
        return self.metric.get_config()


def _per_output(value: Any, names: list[str], argument: str, single: bool = True) -> list[Any]:
    """``value`` for each output: one value for all (where ``single``), a list in output order, or a dict by name."""
    if isinstance(value, dict) and not ("class_name" in value and single):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{argument}: the model's outputs are {names}; got keys {sorted(unknown)} that are not")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{argument}: the model has {len(names)} outputs {names}: expected {len(names)} entries "
                             f"(one per output) or a dict by output name, got {len(value)}")
        return list(value)
    if not single:
        raise ValueError(f"{argument}: the model has {len(names)} outputs {names}: expected a list with one entry per "
                         f"output or a dict by output name, got {value!r}")
    return [value] * len(names)


def _accuracy_for(loss: Loss, width: int) -> metrics_module.Metric:
    """'accuracy' for one output, as Keras resolves it from the labels and predictions."""
    if width == 1:
        return metrics_module.BinaryAccuracy(name="accuracy")
    if "sparse" in type(loss).__name__.lower():
        return metrics_module.SparseCategoricalAccuracy(name="accuracy")
    return AccuracyByLabels(name="accuracy")  # class ids or one-hot rows, as the labels come


def one_sample_weight(outputs_loss: OutputsLoss, sample_weight: Any, argument: str = "sample_weight") -> Any:
    """One weight array for every output from ``sample_weight``: itself, or (a list in output order,
    a dict by output name, as Keras takes them) the one array each output is given; outputs weighed
    differently are refused (each output's rows weigh the same in this release)."""
    if isinstance(sample_weight, (list, tuple)) and (len(sample_weight) != len(outputs_loss.names) or not all(
            part is None or np.ndim(part) >= 1 for part in sample_weight)):
        return sample_weight  # one weight a row, given as a list
    if not isinstance(sample_weight, (dict, list, tuple)):
        return sample_weight
    parts = outputs_loss.per_output(sample_weight, argument, "weight arrays")
    given = [part for part in parts if part is not None]
    if not given:
        return None
    first = np.asarray(given[0])
    if len(given) < len(parts) or any(np.shape(p) != first.shape or not np.array_equal(np.asarray(p), first) for p in given):
        raise ValueError(f"{argument}: the outputs {outputs_loss.names} are given weights that differ (or none for some); "
                         f"in this release every output weighs its rows alike: give one array for all of them")
    return given[0]


def check_one_loss_weight(loss_weights: Any, model: str) -> None:
    """Refuses ``loss_weights`` other than 1 for a model of one output (fcgpu does not scale its loss)."""
    if loss_weights is not None:
        weights = list(loss_weights.values()) if isinstance(loss_weights, dict) else list(loss_weights) \
            if isinstance(loss_weights, (list, tuple)) else [loss_weights]
        if weights != [1] and weights != [1.0]:
            raise ValueError(f"loss_weights: model '{model}' has one output; a weight other than 1 scales "
                             f"its loss, which fcgpu does not do: got {loss_weights!r}")


def compile_outputs(names: list[str], columns: list[tuple[int, int]], loss: Any, loss_weights: Any, metrics: Any,
                    keyed: bool = False, weighted_metrics: Any = None
                    ) -> tuple[OutputsLoss, list[metrics_module.Metric], list[metrics_module.Metric]]:
    """(the loss, the metric objects, the weighted metric objects) of ``compile`` for a model whose
    outputs are ``names`` (the keys of a dict of outputs where ``keyed``: a loss dict's order is then
    the logs' order, as Keras's). A weighted metric named as one of its output's metrics is logged
    as '<output>_weighted_<metric>', as Keras logs it."""
    keyed = keyed and isinstance(loss, dict) and "class_name" not in loss
    if isinstance(loss, dict) and loss.get("class_name") == "OutputsLoss":  # a saved compile config
        loss_weights = loss.get("loss_weights") if loss_weights is None else loss_weights
        loss = loss["losses"]
    given = _per_output(loss, names, "loss")
    if any(g is None for g in given):
        raise ValueError(f"loss: every output needs a loss in this release (outputs {names}), got {loss!r}")
    losses = [copy.deepcopy(g) if isinstance(g, Loss) else losses_module.get(g) for g in given]
    weights = [1.0 if w is None else w for w in _per_output(1.0 if loss_weights is None else loss_weights, names, "loss_weights")]
    for name, w in zip(names, weights):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w) or w < 0:
            raise ValueError(f"loss_weights: expected a finite number >= 0 for output '{name}', got {w!r}")
    outputs_loss = OutputsLoss(losses, weights, names, columns)
    if keyed:
        outputs_loss.log_order = [names.index(key) for key in loss if loss[key] is not None]
    objects = [*outputs_loss.trackers, *_output_metrics(metrics, outputs_loss, "metrics")]
    weighted = _output_metrics(weighted_metrics, outputs_loss, "weighted_metrics")
    for metric in weighted:
        if any(o.name == metric.name for o in objects):
            metric.name = f"{names[metric.k]}_weighted_{metric.metric.name}"
    return outputs_loss, objects, weighted


def _output_metrics(spec: Any, outputs_loss: OutputsLoss, argument: str) -> list[metrics_module.Metric]:
    """The ``OutputMetric`` of each entry of ``spec`` (a list with one entry per output, or a dict)."""
    objects: list[metrics_module.Metric] = []
    if spec is None:
        return objects
    for k, entry in enumerate(_per_output(spec, outputs_loss.names, argument, single=False)):
        for m in [] if entry is None else entry if isinstance(entry, (list, tuple)) else [entry]:
            a, b = outputs_loss.columns[k]
            metric = _accuracy_for(outputs_loss.losses[k], b - a) if m in ("accuracy", "acc") else metrics_module.get(m)
            if m == "acc":
                metric.name = "acc"
            objects.append(OutputMetric(metric, k, outputs_loss))
    return objects


def metrics_by_output(objects: Sequence[metrics_module.Metric], weighted_ids: set[int], keys: list[str]
                      ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(the metrics, the weighted metrics) of ``objects`` by output key, as compile takes them
    (each a name or a config)."""
    plain: dict[str, list[Any]] = {key: [] for key in keys}
    weighted: dict[str, list[Any]] = {key: [] for key in keys}
    for metric in objects:
        if isinstance(metric, OutputMetric):
            entry = metrics_module.plain_name(metric.metric) or metric.metric.get_config()
            (weighted if id(metric) in weighted_ids else plain)[keys[metric.k]].append(entry)
    return plain, weighted
