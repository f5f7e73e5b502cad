"""Argument checks shared by the layers, the model and the trainer.

Each raises before anything changes, with a message that names the argument and gives the
expected and the actual value; none lets a NumPy traceback or a silently wrong number through.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import to_numpy
from .dtypes import is_float_dtype, is_numeric_dtype

__all__ = ["positive_int", "input_features", "float_array", "is_float_dtype", "is_numeric_dtype"]


def positive_int(value: Any, argument: str, allow_zero: bool = False) -> int:
    """``value`` as an int >= 1 (>= 0 with ``allow_zero``); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{argument}: expected a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")
    return int(value)


def input_features(input_shape: int | Sequence[int | None]) -> int:
    """The feature count M of an ``input_shape`` given as M or as a shape such as (None, M)."""
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        n = int(input_shape)
    elif (
        isinstance(input_shape, (tuple, list))
        and input_shape
        and isinstance(input_shape[-1], (int, np.integer))
        and not isinstance(input_shape[-1], bool)
    ):
        n = int(input_shape[-1])
    else:
        raise ValueError(f"input_shape: expected an int or a shape like (None, 784), got {input_shape!r}")
    if n < 1:
        raise ValueError(f"input_shape: expected a positive number of features, got {input_shape!r}")
    return n


def float_array(
    a: Any,
    argument: str,
    dtype: Any,
    *,
    numpy_only: bool = False,
    copy: bool = False,
    ndim: int | None = None,
    width: int | None = None,
    owner: str = "",
) -> np.ndarray:
    """``a`` as a host array of ``dtype``, checked: numeric, of ``ndim`` dimensions with at least one
    row, ``width`` columns, and finite *after* the cast (1e5 is finite in float32 but inf in float16).

    ``numpy_only`` refuses anything but a NumPy array (weights); otherwise any array of a backend,
    or a nested list, is read to the host. ``copy`` always returns a new array (else only when
    the cast needs one). ``owner`` names the model or layer in the messages.
    """
    if numpy_only and not isinstance(a, np.ndarray):
        raise TypeError(f"{argument}: expected a NumPy array, got {type(a).__module__}.{type(a).__name__}")
    try:
        host = to_numpy(a)
    except (ValueError, TypeError) as e:
        if "bfloat16" in str(getattr(a, "dtype", "")).lower():
            raise TypeError(f"{argument}: a bfloat16 {type(a).__name__} cannot be read as a NumPy array; pass "
                            f"a float32 one (for a torch tensor: tensor.float())") from None
        raise ValueError(f"{argument}: expected a rectangular numeric array, got {e}") from None
    if not is_numeric_dtype(host.dtype):
        raise TypeError(f"{argument}: expected a numeric array, got dtype {host.dtype}")
    if ndim == 2 and host.ndim != 2:
        raise ValueError(f"{argument}: expected shape (samples, features), got {host.shape}")
    elif ndim is not None and host.ndim != ndim:
        raise ValueError(f"{argument}: expected {ndim} dimensions, got shape {host.shape}")
    if ndim == 2 and host.shape[0] < 1:
        raise ValueError(f"{argument}: expected at least one sample, got shape {host.shape}")
    if width is not None and host.shape[-1] != width:
        raise ValueError(f"{argument}: {owner} takes {width} features (shape (samples, {width})), got shape {host.shape}")
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        cast = host.astype(dtype, copy=copy)
    finite = np.isfinite(cast)
    if not finite.all():
        where = ""
        if cast.ndim == 2:
            row = int(np.nonzero(~finite.all(axis=1))[0][0])
            bad_source = not np.isfinite(host[row]).all()
            where = f" (first in row {row})"
        else:
            bad_source = not np.isfinite(host).all()
        what = "NaN or inf" if bad_source else f"values that overflow {dtype.name}"
        raise ValueError(f"{argument}: expected finite values, got {what}{where}")
    return cast
