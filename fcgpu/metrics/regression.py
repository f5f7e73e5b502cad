"""Regression and probabilistic metrics with Keras 3's names and formulas, each (but ``R2Score``)
a weighted mean over samples of a per-sample value averaged over outputs (state [total, count]):

- ``MeanSquaredError``, ``MeanAbsoluteError``, ``RootMeanSquaredError`` (the square root of the
  weighted mean squared error), ``MeanAbsolutePercentageError`` (100 |y - p| / max(|y|, eps)),
  ``MeanSquaredLogarithmicError`` ((log(max(p, eps) + 1) - log(max(y, eps) + 1))**2);
- ``BinaryCrossentropy(from_logits, label_smoothing)``, ``CategoricalCrossentropy(from_logits,
  label_smoothing)``, ``SparseCategoricalCrossentropy(from_logits)``: Keras's losses per sample
  (probabilities normalised and clipped to [eps, 1 - eps]); ``KLDivergence``: sum y log(y / p),
  both clipped to [eps, 1];
- ``R2Score(class_aggregation='uniform_average', num_regressors=0)``: per output, weighted sums of
  y, y**2, (y - p)**2 and weights, and the sample count.

eps is Keras's epsilon (1e-7). Values are computed in float64.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import EPSILON, Metric, SampleMean, add_into

__all__ = [
    "MeanSquaredError",
    "MeanAbsoluteError",
    "RootMeanSquaredError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "KLDivergence",
    "R2Score",
]


class Elementwise(SampleMean):
    """A per-sample mean over outputs of ``elements(p, y)`` (labels of the predictions' shape)."""

    labels_kind = "same"

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def elements(self, xp: Any, p: Any, y: Any) -> Any:
        raise NotImplementedError

    def values(self, backend, y_pred, y_true):
        p = y_pred.astype(np.float64)
        y = self.labels(y_pred, y_true).astype(np.float64)
        e = self.elements(backend.xp, p, y)
        return backend.xp.mean(e, axis=1) if e.ndim > 1 else e


class MeanSquaredError(Elementwise):
    default_name = "mean_squared_error"

    def elements(self, xp, p, y):
        return (p - y) ** 2


class MeanAbsoluteError(Elementwise):
    default_name = "mean_absolute_error"

    def elements(self, xp, p, y):
        return xp.abs(p - y)


class RootMeanSquaredError(MeanSquaredError):
    default_name = "root_mean_squared_error"

    def result_from(self, state):
        return float(np.sqrt(super().result_from(state)))


class MeanAbsolutePercentageError(Elementwise):
    default_name = "mean_absolute_percentage_error"

    def elements(self, xp, p, y):
        return 100.0 * xp.abs((y - p) / xp.maximum(xp.abs(y), EPSILON))


class MeanSquaredLogarithmicError(Elementwise):
    default_name = "mean_squared_logarithmic_error"

    def elements(self, xp, p, y):
        return (xp.log(xp.maximum(p, EPSILON) + 1.0) - xp.log(xp.maximum(y, EPSILON) + 1.0)) ** 2


class KLDivergence(Elementwise):
    default_name = "kl_divergence"

    def elements(self, xp, p, y):
        y = xp.clip(y, EPSILON, 1.0)
        return y * xp.log(y / xp.clip(p, EPSILON, 1.0))

    def values(self, backend, y_pred, y_true):  # a sum over outputs, not a mean
        p = y_pred.astype(np.float64)
        y = self.labels(y_pred, y_true).astype(np.float64)
        e = self.elements(backend.xp, p, y)
        return backend.xp.sum(e, axis=1) if e.ndim > 1 else e


def _check_smoothing(label_smoothing: Any) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


class BinaryCrossentropy(Elementwise):
    """Keras's binary cross-entropy per sample (the mean over outputs)."""

    default_name = "binary_crossentropy"

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False,
                 label_smoothing: float = 0) -> None:
        super().__init__(name=name, dtype=dtype)
        self.from_logits, self.label_smoothing = bool(from_logits), _check_smoothing(label_smoothing)

    def elements(self, xp, p, y):
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:  # max(z, 0) - z y + log(1 + exp(-|z|))
            return xp.maximum(p, 0) - p * y + xp.log1p(xp.exp(-xp.abs(p)))
        p = xp.clip(p, EPSILON, 1.0 - EPSILON)
        return -(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


def _log_probs(xp: Any, p: Any, from_logits: bool) -> Any:
    """log of the class probabilities (B, C): log_softmax of logits, or probabilities normalised
    per row and clipped to [eps, 1 - eps], as Keras's."""
    if from_logits:
        m = xp.max(p, axis=1, keepdims=True)
        z = p - m
        return z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))
    q = p / xp.sum(p, axis=1, keepdims=True)
    return xp.log(xp.clip(q, EPSILON, 1.0 - EPSILON))


class CategoricalCrossentropy(SampleMean):
    """Keras's categorical cross-entropy per sample, labels one-hot (or soft) rows."""

    default_name = "categorical_crossentropy"
    labels_kind = "rows"

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False,
                 label_smoothing: float = 0, axis: int = -1) -> None:
        super().__init__(name=name, dtype=dtype)
        if axis not in (-1, 1):
            raise ValueError(f"axis: only the last axis (-1) holds classes in fcgpu, got {axis!r}")
        self.from_logits, self.label_smoothing, self.axis = bool(from_logits), _check_smoothing(label_smoothing), -1

    def values(self, backend, y_pred, y_true):
        xp = backend.xp
        y = self.labels(y_pred, y_true).astype(np.float64)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y.shape[1]
        return -xp.sum(y * _log_probs(xp, y_pred.astype(np.float64), self.from_logits), axis=1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


class SparseCategoricalCrossentropy(SampleMean):
    """Keras's sparse categorical cross-entropy per sample, labels class ids (B,) or (B, 1)."""

    default_name = "sparse_categorical_crossentropy"
    labels_kind = "ids"

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False, axis: int = -1) -> None:
        super().__init__(name=name, dtype=dtype)
        if axis not in (-1, 1):
            raise ValueError(f"axis: only the last axis (-1) holds classes in fcgpu, got {axis!r}")
        self.from_logits, self.axis = bool(from_logits), -1

    def values(self, backend, y_pred, y_true):
        xp = backend.xp
        ids = self.labels(y_pred, y_true).astype(np.int64)
        logp = _log_probs(xp, y_pred.astype(np.float64), self.from_logits)
        return -logp[xp.arange(ids.shape[0]), ids]

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "axis": self.axis}


class R2Score(Metric):
    """The coefficient of determination (Keras's ``R2Score``), per output then aggregated:
    'uniform_average' (default), 'variance_weighted_average' or None (one per output)."""

    labels_kind = "same"

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError(f"class_aggregation: expected None, 'uniform_average' or 'variance_weighted_average', "
                             f"got {class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, (int, np.integer)) or num_regressors < 0:
            raise ValueError(f"num_regressors: expected a non-negative integer, got {num_regressors!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)

    def state_size(self, outputs: int) -> int:
        return 4 * outputs + 1

    def bind(self, state, backend, outputs=None):
        super().bind(state, backend, outputs)
        c = outputs or 1
        self._sums = state[: 4 * c].reshape(4, c)
        self._samples = state[4 * c :]

    def update(self, backend, y_pred, y_true, sample_weight=None):
        xp = backend.xp
        p = y_pred.astype(np.float64).reshape(y_pred.shape[0], -1)
        y = self.labels(y_pred, y_true).astype(np.float64).reshape(p.shape)
        if p.shape[1] != self._sums.shape[1]:
            raise ValueError(f"R2Score: built for {self._sums.shape[1]} outputs, got predictions of shape {tuple(p.shape)}")
        w = xp.ones(p.shape, np.float64) if sample_weight is None else xp.broadcast_to(sample_weight[:, None], p.shape)
        wy = y * w
        add_into(self._sums, xp.stack([xp.sum(wy, axis=0), xp.sum(y * wy, axis=0),
                                       xp.sum((y - p) ** 2 * w, axis=0), xp.sum(w, axis=0)]))
        add_into(self._samples, float(y.size))

    def result_from(self, state):
        c = (len(state) - 1) // 4
        s, sq, mse, count = np.asarray(state[: 4 * c], np.float64).reshape(4, c)
        samples = float(state[4 * c])
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s / count
            total = sq - s * mean
            raw = 1 - mse / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            r2 = np.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            r2 = np.sum(total * raw) / np.sum(total)
        else:
            r2 = raw
        if self.num_regressors:
            if self.num_regressors > samples - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 score. Falling back to "
                              "standard R2 score.", stacklevel=2)
            elif self.num_regressors == samples - 1:
                warnings.warn("Division by zero in Adjusted R2 score. Falling back to standard R2 score.", stacklevel=2)
            else:
                r2 = 1.0 - (1.0 - r2) * (samples - 1.0) / (samples - self.num_regressors - 1.0)
        return float(r2) if np.ndim(r2) == 0 else np.asarray(r2, np.float64)

    def get_config(self):
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}
