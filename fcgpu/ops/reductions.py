"""Reductions of ``fcgpu.ops``: mean, sum, max, min (each with ``axis`` and ``keepdims``) and argmax.

``axis``: None (every axis), an integer or a tuple of integers, negative counting from the end.
Gradients: the output's gradient broadcast back over the reduced axes, divided by their size for
``mean``; for ``max`` and ``min`` shared evenly among the elements equal to the extreme (PyTorch's
``amax``/``amin``). Result dtypes are Keras's: ``mean`` of integers is float32, ``sum`` of booleans
is int32, ``argmax`` is int32.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable

import numpy as np

from ..backends.base import Array
from .core import backend_of, is_float, record, to_array

__all__ = ["mean", "sum", "max", "min", "argmax", "axes_of"]

def axes_of(axis: Any, ndim: int, what: str) -> tuple[int, ...]:
    """``axis`` as a sorted tuple of non-negative axes of an ``ndim``-d array (all of them for None)."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{what}: axis must be None, an integer or a tuple of integers in [{-ndim}, {ndim}), got {axis!r}")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _keep(g: Array, axes: tuple[int, ...], keepdims: bool, xp: Any) -> Array:
    """A reduction's gradient ``g`` with the reduced axes back (size 1), ready to broadcast."""
    return g if keepdims or not axes else xp.expand_dims(g, axes)


def _reduce(x: Any, axis: Any, keepdims: bool, what: str,
            forward: Callable[[Any, Array, tuple[int, ...]], Array],
            grad: Callable[[Any, Array, Array, Array, tuple[int, ...]], Array]) -> Any:
    backend = backend_of((x,))
    xp = backend.xp
    xv = to_array(x, backend)
    axes = axes_of(axis, xv.ndim, what)
    out = xp.asarray(forward(xp, xv, axes))

    def vjp(g: Array) -> tuple[Array]:
        return (grad(xp, xv, _keep(out, axes, keepdims, xp), _keep(g, axes, keepdims, xp), axes),)

    if keepdims:
        out = xp.reshape(out, tuple(1 if i in axes else n for i, n in enumerate(xv.shape)))
    return record(backend, out, (x,), vjp)


def _count(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
    return int(np.prod([shape[a] for a in axes])) if axes else 1


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """The mean over ``axis``; integers and booleans average to float32."""
    def forward(xp: Any, xv: Array, axes: tuple[int, ...]) -> Array:
        dtype = xv.dtype if is_float(xv.dtype) else np.float32
        return xp.mean(xv, axis=axes, dtype=dtype).astype(dtype)

    def grad(xp: Any, xv: Array, out: Array, g: Array, axes: tuple[int, ...]) -> Array:
        return xp.broadcast_to(g / _count(xv.shape, axes), xv.shape)

    return _reduce(x, axis, keepdims, "mean", forward, grad)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - keras.ops.sum
    """The sum over ``axis``; booleans and small integers sum as int32."""
    def forward(xp: Any, xv: Array, axes: tuple[int, ...]) -> Array:
        dtype = np.int32 if xv.dtype.kind == "b" or (xv.dtype.kind in "iu" and xv.dtype.itemsize < 4) else xv.dtype
        return xp.sum(xv, axis=axes, dtype=dtype)

    def grad(xp: Any, xv: Array, out: Array, g: Array, axes: tuple[int, ...]) -> Array:
        return xp.broadcast_to(g, xv.shape)

    return _reduce(x, axis, keepdims, "sum", forward, grad)


def _extreme(x: Any, axis: Any, keepdims: bool, what: str, pick: Callable[[Any], Callable[..., Array]]) -> Any:
    def forward(xp: Any, xv: Array, axes: tuple[int, ...]) -> Array:
        if xv.size == 0:
            raise ValueError(f"{what}: the array is empty")
        return pick(xp)(xv, axis=axes)

    def grad(xp: Any, xv: Array, out: Array, g: Array, axes: tuple[int, ...]) -> Array:
        hit = xv == out
        return xp.where(hit, g / xp.sum(hit, axis=axes, keepdims=True).astype(g.dtype), 0)

    return _reduce(x, axis, keepdims, what, forward, grad)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - keras.ops.max
    """The largest element over ``axis``; ties share the gradient evenly."""
    return _extreme(x, axis, keepdims, "max", lambda xp: xp.max)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 - keras.ops.min
    """The smallest element over ``axis``; ties share the gradient evenly."""
    return _extreme(x, axis, keepdims, "min", lambda xp: xp.min)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """The index (int32) of the first largest element along ``axis`` (of the flattened array for None)."""
    backend = backend_of((x,))
    xp = backend.xp
    xv = to_array(x, backend)
    if axis is None:
        out = xp.argmax(xp.reshape(xv, (-1,)))
        if keepdims:
            out = xp.reshape(out, (1,) * xv.ndim)
    else:
        (a,) = axes_of(axis, xv.ndim, "argmax")
        out = xp.argmax(xv, axis=a)
        if keepdims:
            out = xp.expand_dims(out, a)
    return record(backend, xp.asarray(out).astype(np.int32), (x,), None)
