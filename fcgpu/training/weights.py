"""Per-row sample weights, as Keras 3 takes them: ``sample_weight`` and ``class_weight`` checked on
the host and turned into one weight a row, which the fused loss steps read (one pointer, no pass).

Keras's weighting of the loss (``keras/src/losses/loss.py``, reduction 'sum_over_batch_size'): the
per-sample losses times their weights, summed and divided by the number of samples (not by the sum
of the weights), so a batch's loss is sum_i(w_i l_i) / B and its gradient w_i dl_i / B; an epoch's
logged loss is sum_i(w_i l_i) / N. ``class_weight`` gives each row the weight of its class
(``data_adapter_utils.class_weight_to_sample_weights``): one-hot rows by their argmax, a (B, 1)
column squeezed, values rounded to whole classes, and classes the dict does not name weigh 1.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["sample_weights", "weight_dtype"]


def weight_dtype(label_dtype: Any) -> np.dtype:
    """The weights' dtype: float64 for a float64 model, else float32 (Keras's floatx)."""
    return np.dtype(np.float64) if np.dtype(label_dtype) == np.float64 else np.dtype(np.float32)


def sample_weights(
    sample_weight: Any, class_weight: Any, y: Any, rows: int, classes: int, dtype: Any, argument: str = "sample_weight"
) -> np.ndarray | None:
    """One weight a row (``rows`` of them, in ``dtype``), or None where neither is given.

    ``sample_weight``: an array of shape (rows,) or (rows, 1) of finite numbers >= 0.
    ``class_weight``: a dict {class: weight} whose keys are classes of the model's outputs
    (0 .. classes - 1, or 0 and 1 for a single binary output) and whose weights are finite and >= 0;
    the classes are read from ``y`` (the labels as given) as Keras reads them."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("sample_weight and class_weight: give one of them, not both (Keras refuses both as well)")
    if class_weight is not None:
        return _from_classes(class_weight, y, rows, classes, dtype)
    if sample_weight is None:
        return None
    try:
        host = np.asarray(sample_weight)
    except (TypeError, ValueError):
        raise TypeError(f"{argument}: expected an array of numbers, got {type(sample_weight).__name__}") from None
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected numbers, got dtype {host.dtype}")
    if host.ndim == 2 and host.shape[1] == 1:
        host = host[:, 0]
    if host.ndim != 1:
        raise ValueError(f"{argument}: expected one weight a sample, shape ({rows},) or ({rows}, 1), got shape {host.shape}")
    if host.shape[0] != rows:
        raise ValueError(f"{argument}: expected {rows} weights (one per sample), got {host.shape[0]}")
    values = host.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{argument}: weights must be finite, got {values[~np.isfinite(values)][0]!r}")
    if (values < 0).any():
        raise ValueError(f"{argument}: weights must be >= 0, got {values[values < 0][0]!r}")
    return values.astype(dtype)


def _from_classes(class_weight: Any, y: Any, rows: int, classes: int, dtype: Any) -> np.ndarray:
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight: expected a dict {{class: weight}}, got {type(class_weight).__name__}")
    known = range(2) if classes == 1 else range(classes)
    table: dict[int, float] = {}
    for key, value in class_weight.items():
        whole = isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_))
        if not whole or int(key) not in known:
            raise ValueError(
                f"class_weight: keys must be the model's classes, whole numbers in [0, {len(known)}), got {key!r}"
            )
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"class_weight[{key!r}]: expected a number, got {value!r}")
        if not math.isfinite(float(value)) or value < 0:
            raise ValueError(f"class_weight[{key!r}]: weights must be finite and >= 0, got {value!r}")
        table[int(key)] = float(value)
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else np.squeeze(labels, axis=-1)
    ids = np.round(labels.astype(np.float64)).astype(np.int64)
    out = np.ones(rows, np.float64)
    for key, value in table.items():
        out[ids == key] = value
    return out.astype(dtype)
