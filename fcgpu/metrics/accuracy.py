"""Accuracy metrics with Keras 3's names and per-sample rules, each a weighted mean over samples
(state [total, count]) computed where the arrays live.

``CompileAccuracy`` is what the strings 'accuracy' and 'acc' mean in ``compile``: Keras's rule
chosen from the loss (``Loss.correct``: binary accuracy for a binary cross-entropy or one output,
sparse categorical accuracy for class ids, categorical accuracy otherwise), counted by the loss's
own fused step at no extra device operation. The classes are Keras's:

- ``Accuracy``: y_pred == y_true, averaged over outputs;
- ``BinaryAccuracy(threshold=0.5)``: y_true == (y_pred > threshold), averaged over outputs;
- ``CategoricalAccuracy``: argmax(y_pred) == argmax(y_true row) (the first maximum of each);
- ``SparseCategoricalAccuracy``: argmax(y_pred) == class id;
- ``TopKCategoricalAccuracy(k=5)`` / ``SparseTopKCategoricalAccuracy(k=5)``: the label among the k
  highest scores (ties at the k-th place count as in, as Keras's in_top_k; a NaN score at the
  label ranks last).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import SampleMean

__all__ = [
    "CompileAccuracy",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "AccuracyByLabels",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
]


class CompileAccuracy(SampleMean):
    """'accuracy' in ``compile``: the variant the loss implies (``Loss.correct``), fused into its
    step; the trainer divides the correct count by the rows seen."""

    default_name = "accuracy"
    fused_with_loss = True

    def state_size(self, outputs: int) -> int:
        return 0

    def bind(self, state, backend, outputs=None):
        self._state, self._backend, self._outputs = state, backend, outputs

    def update(self, backend, y_pred, y_true=None, sample_weight=None):
        raise TypeError("metrics: 'accuracy' as a string is counted by the model's loss in fit and evaluate; "
                        "standalone, use Accuracy, BinaryAccuracy, CategoricalAccuracy or SparseCategoricalAccuracy")


class Accuracy(SampleMean):
    """How often predictions equal labels exactly (Keras's ``Accuracy``)."""

    default_name = "accuracy"
    labels_kind = "same"

    def values(self, backend, y_pred, y_true):
        y = self.labels(y_pred, y_true)
        eq = (y_pred == y.astype(y_pred.dtype)).astype(np.float64)
        return backend.xp.mean(eq, axis=1) if eq.ndim > 1 else eq


class BinaryAccuracy(SampleMean):
    """Per row, the fraction of outputs where y_true == (y_pred > threshold)."""

    default_name = "binary_accuracy"
    labels_kind = "same"

    def __init__(self, name: str | None = "binary_accuracy", dtype: Any = None, threshold: float = 0.5) -> None:
        super().__init__(name=name, dtype=dtype)
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.floating)) or not np.isfinite(threshold):
            raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
        self.threshold = float(threshold)

    def values(self, backend, y_pred, y_true):
        y = self.labels(y_pred, y_true)
        eq = (y.astype(np.float64) == (y_pred > self.threshold)).astype(np.float64)
        return backend.xp.mean(eq, axis=1) if eq.ndim > 1 else eq

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(SampleMean):
    """argmax(y_pred) == argmax(y_true row) (the first maximum of each), labels one-hot rows (B, C)."""

    default_name = "categorical_accuracy"
    labels_kind = "rows"

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def values(self, backend, y_pred, y_true):
        xp = backend.xp
        y = self.labels(y_pred, y_true)
        return (xp.argmax(y_pred, axis=1) == xp.argmax(y, axis=1)).astype(np.float64)


class SparseCategoricalAccuracy(CategoricalAccuracy):
    """argmax(y_pred) == class id, labels (B,) or (B, 1)."""

    default_name = "sparse_categorical_accuracy"
    labels_kind = "ids"

    def values(self, backend, y_pred, y_true):
        ids = self.labels(y_pred, y_true)
        return (backend.xp.argmax(y_pred, axis=1) == ids.astype(np.int64)).astype(np.float64)


class AccuracyByLabels(CategoricalAccuracy):
    """'accuracy' of one output of several, resolved from the labels as Keras resolves it: class ids
    (B,) or (B, 1) compare with argmax(y_pred), one-hot rows (B, C) argmax with argmax."""

    default_name = "accuracy"
    labels_kind = "any"

    def values(self, backend, y_pred, y_true):
        xp = backend.xp
        if y_true.ndim == 1 or (y_true.shape[1] == 1 and y_pred.shape[1] > 1):
            return (xp.argmax(y_pred, axis=1) == y_true.reshape(-1).astype(np.int64)).astype(np.float64)
        return (xp.argmax(y_pred, axis=1) == xp.argmax(y_true, axis=1)).astype(np.float64)


class TopKCategoricalAccuracy(SampleMean):
    """The label row's class (its argmax) among the k highest predictions."""

    default_name = "top_k_categorical_accuracy"
    labels_kind = "rows"

    def __init__(self, k: int = 5, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        self.k = int(k)

    def ids(self, backend, y_pred, y_true):
        return backend.xp.argmax(self.labels(y_pred, y_true), axis=1)

    def values(self, backend, y_pred, y_true):
        xp = backend.xp
        ids = self.ids(backend, y_pred, y_true)
        at_label = y_pred[xp.arange(y_pred.shape[0]), ids]
        at_label = xp.where(xp.isnan(at_label), -xp.inf, at_label)
        higher = xp.sum(y_pred > at_label[:, None], axis=1)
        return (higher < self.k).astype(np.float64)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """The class id among the k highest predictions, labels (B,) or (B, 1)."""

    default_name = "sparse_top_k_categorical_accuracy"
    labels_kind = "ids"

    def ids(self, backend, y_pred, y_true):
        return self.labels(y_pred, y_true).astype(np.int64)
