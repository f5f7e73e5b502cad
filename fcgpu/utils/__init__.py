"""Keras's helpers that MLP programs call (``keras.utils.to_categorical``, ``normalize``, ``set_random_seed``,
``PyDataset``), and ``datasets``: the data sets of the training job (digits, Fashion-MNIST)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..initializers import set_seed
from .py_dataset import PyDataset

__all__ = ["to_categorical", "normalize", "set_random_seed", "PyDataset", "Sequence"]

Sequence = PyDataset  # Keras 2's name, which Keras 3 keeps as an alias


def set_random_seed(seed: int) -> None:
    """Keras's ``utils.set_random_seed``: seeds fcgpu's generator (initial weights, shuffling) and
    NumPy's global one and Python's ``random``, as Keras seeds the generators a program may use."""
    import random

    set_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot rows (N, num_classes) float32 from class ids x (N,) (or (N, 1)), as Keras's.

    ``num_classes`` defaults to max(x) + 1; ids must be whole numbers in [0, num_classes).
    """
    ids = np.asarray(x)
    if ids.ndim == 2 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.dtype.kind not in "biuf" or ids.dtype.kind == "b":
        raise TypeError(f"x: expected integer class ids, got dtype {ids.dtype}")
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all() or not np.array_equal(ids, np.round(ids)):
            raise ValueError("x: expected whole-number class ids, got non-integral values")
    ids = ids.astype(np.int64)
    if num_classes is None:
        num_classes = int(ids.max()) + 1 if ids.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"x: class ids must be in [0, {num_classes}), got values in [{ids.min()}, {ids.max()}]")
    out = np.zeros(ids.shape + (int(num_classes),), np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def normalize(x: Any, axis: int = -1, order: int = 2) -> np.ndarray:
    """x divided by its ``order``-norm along ``axis`` (zero norms left as zeros), as Keras's."""
    a = np.asarray(x, dtype=np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
    norm = np.linalg.norm(a, ord=order, axis=axis, keepdims=True)
    return np.divide(a, norm, out=np.zeros_like(a), where=norm != 0)
