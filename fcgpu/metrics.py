"""Metrics that fit and evaluate report beside the loss, computed where the arrays live, with
Keras 3's names and meanings.

A metric adds the sum over a batch's rows of its per-row value into one float64 slot of the
trainer's device accumulator; the trainer divides by the rows seen when it reads the sums (a few
times an epoch), so every figure is Keras's mean over samples. 'accuracy' is Keras's rule chosen
from the loss (``Loss.correct``: binary accuracy for a binary cross-entropy or one output, sparse
categorical accuracy for class ids, categorical accuracy otherwise) and is counted by the loss's
own fused step at no extra device operation. The others take a few operations a batch of their own:

- ``BinaryAccuracy(threshold=0.5)``: per row, the fraction of outputs with (pred > threshold) ==
  (label > 0.5); ``CategoricalAccuracy``: argmax(pred) == argmax(label row);
  ``SparseCategoricalAccuracy``: argmax(pred) == class id; ``TopKCategoricalAccuracy(k=5)`` /
  ``SparseTopKCategoricalAccuracy(k=5)``: the label among the k highest scores (ties counted in,
  as Keras's in_top_k).
- ``MeanAbsoluteError`` / ``MeanSquaredError``: per row, the mean over outputs of |pred - y| or
  (pred - y)**2.

The key in the logs is the metric's ``name``: the string it was asked for by ('mae' stays 'mae',
'mean_absolute_error' stays 'mean_absolute_error'), else the class's Keras name.

Shapes: pred (B, C) predictions (probabilities or values, after the output activation), labels as
the loss prepared them ((B,) class ids or (B, C)).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Backend
from .backends.base import Array, Scalar
from .loss_base import outputs_of

__all__ = [
    "Metric",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "get",
    "METRICS",
]


class Metric:
    """Base class: ``name`` (the key in logs and History) and ``update``."""

    name = "metric"
    #: Counted by the loss's fused step (Loss.step with count=True) into the accumulator's slot 1.
    fused_with_loss = False

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"name: expected a non-empty string, got {name!r}")
            self.name = name

    def update(self, backend: Backend, pred: Array, labels: Array, loss: Any, slot: Array) -> None:
        """Add the sum over rows of this metric for ``pred`` against ``labels`` into ``slot`` (a
        float64 device array of shape (1,))."""
        slot += self.row_sum(backend, pred, labels)

    def row_sum(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        """The sum over rows of the per-row value, where the arrays live."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    # -- label shapes: checked from shapes alone, so per batch without reading the device ---------
    #: What the labels must be: 'same' (the predictions' shape), 'ids' (class ids) or 'rows' (label rows).
    labels_kind = "any"

    def check(self, pred_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
        """Refuse labels (as the loss prepared them) that this metric cannot compare with
        predictions of ``pred_shape``: a ValueError saying what it expects."""
        self._labels_for(pred_shape, labels_shape)

    def _labels_for(self, pred_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape to view the labels as, or a ValueError."""
        pred_shape, labels_shape = tuple(pred_shape), tuple(labels_shape)
        kind, batch = self.labels_kind, pred_shape[0]
        if kind == "same":
            if labels_shape == pred_shape:
                return labels_shape
            if int(np.prod(labels_shape)) == int(np.prod(pred_shape)) and labels_shape[:1] == (batch,) and (
                len(pred_shape) == 1 or pred_shape[1] == 1
            ):
                return pred_shape
            hint = " (class ids: use 'sparse_categorical_accuracy')" if len(labels_shape) == 1 else ""
            expected = f"labels of the predictions' shape{hint}"
        elif len(pred_shape) != 2:
            expected = "predictions of shape (batch, classes)"
        elif kind == "ids":
            if labels_shape in ((batch,), (batch, 1)):
                return (batch,)
            hint = " (one-hot rows: use the metric without 'sparse_')" if labels_shape == pred_shape else ""
            expected = f"class ids of shape ({batch},){hint}"
        elif kind == "rows":
            if labels_shape == pred_shape:
                return labels_shape
            hint = " (class ids: use the 'sparse_' metric)" if len(labels_shape) == 1 else ""
            expected = f"one-hot label rows of the predictions' shape{hint}"
        else:
            return labels_shape
        raise ValueError(
            f"metrics: '{self.name}' expects {expected}; got labels of shape {labels_shape} for predictions of "
            f"shape {pred_shape}"
        )

    def _labels(self, pred: Array, labels: Array) -> Array:
        """``labels`` checked and viewed as ``_labels_for`` says."""
        shape = self._labels_for(pred.shape, labels.shape)
        return labels if labels.shape == shape else labels.reshape(shape)


class Accuracy(Metric):
    """Keras's 'accuracy': the variant the loss implies (``Loss.correct``), fused into its step."""

    name = "accuracy"
    fused_with_loss = True

    def update(self, backend, pred, labels, loss, slot):
        slot += loss.correct(backend, pred, labels)


class BinaryAccuracy(Metric):
    """Per row, the fraction of outputs where (pred > threshold) matches (label > 0.5)."""

    name = "binary_accuracy"
    labels_kind = "same"

    def __init__(self, threshold: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.floating)) or not np.isfinite(threshold):
            raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
        self.threshold = float(threshold)

    def row_sum(self, backend, pred, labels):
        outputs = outputs_of(pred)
        return backend.count_correct(pred, self._labels(pred, labels), self.threshold) / outputs

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """argmax(pred) == argmax(label row) (the first maximum of each), labels one-hot rows (B, C)."""

    name = "categorical_accuracy"
    labels_kind = "rows"

    def row_sum(self, backend, pred, labels):
        return backend.count_correct(pred, self._labels(pred, labels), None)


class SparseCategoricalAccuracy(Metric):
    """argmax(pred) == label, labels class ids (B,) or (B, 1)."""

    name = "sparse_categorical_accuracy"
    labels_kind = "ids"

    def row_sum(self, backend, pred, labels):
        return backend.count_correct(pred, self._labels(pred, labels), None)


class TopKCategoricalAccuracy(Metric):
    """The label row's class (its argmax) among the k highest predictions (ties at the k-th place
    count as in, as Keras's in_top_k)."""

    name = "top_k_categorical_accuracy"
    labels_kind = "rows"

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        self.k = int(k)

    def row_sum(self, backend, pred, labels):
        return backend.count_top_k(pred, self._labels(pred, labels), self.k)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """The class id among the k highest predictions, labels (B,) or (B, 1)."""

    name = "sparse_top_k_categorical_accuracy"
    labels_kind = "ids"


class MeanAbsoluteError(Metric):
    """Per row, the mean over outputs of |pred - y| (Keras's mean_absolute_error)."""

    name = "mean_absolute_error"
    labels_kind = "same"

    def row_sum(self, backend, pred, labels):
        return backend.abs_error_sum(pred, self._labels(pred, labels)) / (outputs_of(pred))


class MeanSquaredError(Metric):
    """Per row, the mean over outputs of (pred - y)**2 (Keras's mean_squared_error)."""

    name = "mean_squared_error"
    labels_kind = "same"

    def row_sum(self, backend, pred, labels):
        return backend.mse_sum(pred, self._labels(pred, labels)) / (outputs_of(pred))


#: Keras's metric names; a metric asked for by name reports under that name.
METRICS: dict[str, type[Metric]] = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
_CLASSES: dict[str, type[Metric]] = {cls.__name__: cls for cls in METRICS.values()}


def get(identifier: str | Metric | dict[str, Any]) -> Metric:
    """A metric from an instance, a config dict (``get_config()``), a class name or a Keras name
    ('accuracy', 'acc', 'mae', 'top_k_categorical_accuracy', ...). A Keras name reports under
    itself ('mae' as 'mae', 'acc' as 'acc'), as Keras 3 logs it."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"metrics: unknown config {identifier!r}; known classes: {sorted(_CLASSES)}")
        config = {k: v for k, v in identifier.items() if k != "class_name"}
        try:
            return cls(**config)
        except TypeError as e:
            raise ValueError(f"metrics: config {identifier!r} does not fit {cls.__name__}: {e}") from None
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in METRICS:
            cls = METRICS[key]
            return cls(name=key)
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
    raise ValueError(f"metrics: expected names from {sorted(METRICS)} or Metric instances, got {identifier!r}")
