"""Array ops of ``fcgpu.ops``: conversion (convert_to_tensor, convert_to_numpy, cast), shape
(shape, reshape, expand_dims, squeeze, stack, concatenate) and construction (one_hot, ones_like,
zeros_like).

Shape ops pass the gradient back reshaped or split; ``cast`` passes it between float types (none
flows into or out of integers and booleans); constructions carry none.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends.base import Array
from .core import Tensor, backend_of, default_dtype, is_float, is_number, record, to_array
from .reductions import axes_of

__all__ = ["convert_to_tensor", "convert_to_numpy", "cast", "shape", "reshape", "expand_dims", "squeeze", "stack",
           "concatenate", "one_hot", "ones_like", "zeros_like"]


def _dtype(dtype: Any, what: str) -> np.dtype:
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{what}: unknown dtype {dtype!r}") from None


def convert_to_tensor(x: Any, dtype: Any = None, sparse: bool | None = None) -> Any:
    """``x`` as an array of the active backend (a Tensor stays one, cast to ``dtype`` if given).
    Python data takes Keras's dtypes: float32 for floats, int32 for integers."""
    if sparse:
        raise ValueError("convert_to_tensor: fcgpu has no sparse tensors")
    if isinstance(x, Tensor):
        return x if dtype is None else cast(x, dtype)
    backend = backend_of((x,))
    if dtype is None and (is_number(x) or isinstance(x, (list, tuple))):
        dtype = default_dtype(x)
    return to_array(x, backend, None if dtype is None else _dtype(dtype, "convert_to_tensor"))


def convert_to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of ``x``'s values (of a Tensor: without its gradient, as Keras detaches)."""
    value = x.value if isinstance(x, Tensor) else x
    backend = x.backend if isinstance(x, Tensor) else backend_of((x,))
    if isinstance(value, np.ndarray) and not backend.owns(value):
        return np.array(value)
    return np.array(backend.to_numpy(to_array(value, backend)))


def cast(x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype``; the gradient is cast back between float types."""
    backend = backend_of((x,))
    xv = to_array(x, backend)
    target = _dtype(dtype, "cast")
    out = xv if xv.dtype == target else xv.astype(target)
    return record(backend, out, (x,), (lambda g: (g,)) if is_float(xv.dtype) else None)


def shape(x: Any) -> tuple[int, ...]:
    """``x``'s shape, a tuple of ints."""
    return tuple(int(n) for n in to_array(x, backend_of((x,))).shape)


def _reshaped(x: Any, fn: Any) -> Any:
    backend = backend_of((x,))
    xv = to_array(x, backend)
    out = fn(backend.xp, xv)
    return record(backend, out, (x,), lambda g: (backend.xp.reshape(g, xv.shape),))


def reshape(x: Any, newshape: int | Sequence[int]) -> Any:
    """``x`` with shape ``newshape`` (one entry may be -1)."""
    target = (int(newshape),) if isinstance(newshape, (int, np.integer)) else tuple(int(n) for n in newshape)
    return _reshaped(x, lambda xp, xv: xp.reshape(xv, target))


def expand_dims(x: Any, axis: int | Sequence[int]) -> Any:
    """``x`` with a new axis of size 1 at ``axis`` (a position in the result)."""
    def fn(xp: Any, xv: Array) -> Array:
        ndim = xv.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1)
        return xp.expand_dims(xv, axes_of(axis, ndim, "expand_dims"))

    return _reshaped(x, fn)


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> Any:
    """``x`` without its size-1 axes (those of ``axis`` only, each of which must have size 1)."""
    def fn(xp: Any, xv: Array) -> Array:
        if axis is None:
            return xp.reshape(xv, tuple(n for n in xv.shape if n != 1))
        axes = axes_of(axis, xv.ndim, "squeeze")
        wide = [a for a in axes if xv.shape[a] != 1]
        if wide:
            raise ValueError(f"squeeze: axis {wide[0]} has size {xv.shape[wide[0]]}, not 1 (shape {tuple(xv.shape)})")
        return xp.reshape(xv, tuple(n for i, n in enumerate(xv.shape) if i not in axes))

    return _reshaped(x, fn)


def _joined(xs: Sequence[Any], axis: int, what: str, stacked: bool) -> Any:
    if isinstance(xs, (Tensor, np.ndarray)) or not isinstance(xs, (list, tuple)) or not xs:
        raise TypeError(f"{what}: expected a non-empty list or tuple of tensors, got {type(xs).__name__}")
    backend = backend_of(xs)
    xp = backend.xp
    values = [to_array(x, backend) for x in xs]
    ndim = values[0].ndim + (1 if stacked else 0)
    (a,) = axes_of(axis, ndim, what)
    out = xp.stack(values, axis=a) if stacked else xp.concatenate(values, axis=a)

    def vjp(g: Array) -> list[Array]:
        if stacked:
            return [xp.take(g, i, axis=a) for i in range(len(values))]
        edges = np.cumsum([v.shape[a] for v in values])[:-1].tolist()
        return xp.split(g, edges, axis=a)

    return record(backend, out, tuple(xs), vjp)


def stack(xs: Sequence[Any], axis: int = 0) -> Any:
    """The arrays of ``xs`` (one shape) stacked along a new axis ``axis``."""
    return _joined(xs, axis, "stack", stacked=True)


def concatenate(xs: Sequence[Any], axis: int = 0) -> Any:
    """The arrays of ``xs`` joined along the existing axis ``axis``."""
    return _joined(xs, axis, "concatenate", stacked=False)


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = None, sparse: bool = False) -> Any:
    """Class ids ``x`` (integers, any shape) as one-hot vectors along a new axis ``axis`` (float32
    unless ``dtype``); an id outside [0, num_classes) gives a row of zeros, as Keras's."""
    if sparse:
        raise ValueError("one_hot: fcgpu has no sparse tensors")
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be a positive integer, got {num_classes!r}")
    backend = backend_of((x,))
    xp = backend.xp
    ids = to_array(x, backend)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected integer class ids, got dtype {ids.dtype} (use ops.cast(x, 'int32'))")
    (a,) = axes_of(axis, ids.ndim + 1, "one_hot")
    hot = xp.expand_dims(ids, -1) == xp.arange(int(num_classes), dtype=ids.dtype)
    out = xp.moveaxis(hot, -1, a).astype(_dtype(dtype or np.float32, "one_hot"))
    return record(backend, out, (x,), None)


def _like(x: Any, dtype: Any, fill: int) -> Any:
    backend = backend_of((x,))
    xv = to_array(x, backend)
    target = xv.dtype if dtype is None else _dtype(dtype, "ones_like" if fill else "zeros_like")
    out = backend.xp.full(xv.shape, fill, dtype=target)
    return record(backend, out, (x,), None)


def ones_like(x: Any, dtype: Any = None) -> Any:
    """An array of ones of ``x``'s shape (and dtype, unless ``dtype``); no gradient."""
    return _like(x, dtype, 1)


def zeros_like(x: Any, dtype: Any = None) -> Any:
    """An array of zeros of ``x``'s shape (and dtype, unless ``dtype``); no gradient."""
    return _like(x, dtype, 0)
