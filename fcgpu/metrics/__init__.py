"""Metrics that fit and evaluate report beside the loss, with Keras 3's names, arguments and numbers,
computed where the arrays live (``fcgpu.metrics.base`` describes the interface every metric has).

Each metric keeps a small float64 state on the model's backend (sums and counts, confusion counts
per threshold, histograms, ...), every entry a sum over samples; fit and evaluate bind all of them
to views of one device array, add each batch into it and read it a few times an epoch (every batch
only when a callback has a batch hook), so metrics add no host read per step. 'accuracy' in
``compile`` is counted by the loss's own fused step (``CompileAccuracy``).

``get`` resolves what ``compile(metrics=[...])`` accepts: Keras's strings (class names, their
snake-case names, and 'acc', 'mse', 'mae', 'mape', 'msle', 'bce'; a string reports under itself),
classes, instances, config dicts and plain functions ``fn(y_true, y_pred)`` written with
``fcgpu.ops`` (``MeanMetricWrapper``: the weighted mean over samples, named after the function).
"""
from __future__ import annotations

import inspect
from typing import Any

from . import accuracy, base, confusion, regression
from .accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    CompileAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)
from .base import Mean, MeanMetricWrapper, Metric, Sum, Variable, snake_case
from .confusion import AUC, FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives, TruePositives
from .regression import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    KLDivergence,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
    SparseCategoricalCrossentropy,
)

__all__ = [
    "Metric", "Variable", "Mean", "Sum", "MeanMetricWrapper", "CompileAccuracy",
    "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "AUC", "Precision", "Recall", "TruePositives", "FalsePositives",
    "TrueNegatives", "FalseNegatives", "MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "KLDivergence", "R2Score", "get", "METRICS",
    "accuracy", "base", "confusion", "regression",
]

_CLASS_LIST: list[type[Metric]] = [
    Mean, Sum, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy, AUC, Precision, Recall, TruePositives, FalsePositives, TrueNegatives,
    FalseNegatives, MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    KLDivergence, R2Score,
]
_CLASSES: dict[str, type[Metric]] = {cls.__name__: cls for cls in [*_CLASS_LIST, CompileAccuracy]}

#: Keras's metric strings (lower case); a metric asked for by a string reports under that string.
METRICS: dict[str, type[Metric]] = {snake_case(cls.__name__): cls for cls in _CLASS_LIST}
METRICS.update({
    "accuracy": CompileAccuracy, "acc": CompileAccuracy, "mse": MeanSquaredError, "mae": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError, "bce": BinaryCrossentropy,
})


def get(identifier: Any) -> Metric:
    """A metric from an instance, a class, a config dict (``get_config()``), a string (a Keras name,
    reporting under itself: 'mae' as 'mae', 'acc' as 'acc', 'auc' as 'auc') or a function
    ``fn(y_true, y_pred)`` (a ``MeanMetricWrapper`` named after it)."""
    if isinstance(identifier, Metric):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
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
        cls = METRICS.get(key) or _CLASSES.get(identifier)
        if cls is not None:
            metric = cls()
            metric.name = key if key in METRICS else metric.name
            return metric
    elif callable(identifier):
        return MeanMetricWrapper(identifier)
    raise ValueError(f"metrics: expected names from {sorted(METRICS)}, Metric instances or functions "
                     f"fn(y_true, y_pred), got {identifier!r}")


def plain_name(metric: Metric) -> str | None:
    """The string that ``get`` turns back into ``metric`` (its name, when that is a Keras string for its
    class with default arguments), else None; Keras's unique-name counters are left as they were."""
    cls = METRICS.get(metric.name)
    if cls is None or type(metric) is not cls:
        return None
    counts = dict(base.NAME_COUNTS)
    try:
        same = get(metric.name).get_config() == metric.get_config()
    finally:
        base.NAME_COUNTS.clear()
        base.NAME_COUNTS.update(counts)
    return metric.name if same else None


def restorable(config: Any) -> bool:
    """Whether ``get`` rebuilds a metric from ``config`` (an entry of ``get_compile_config``'s
    metrics): a string or a config of one of fcgpu's classes, not a function or a user's subclass."""
    return isinstance(config, str) or (isinstance(config, dict) and config.get("class_name") in _CLASSES)
