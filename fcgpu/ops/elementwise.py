"""Elementwise ``fcgpu.ops``: the math (abs, square, sqrt, exp, log, log1p), the two-argument
choices (maximum, minimum, clip, where) and the activations (sigmoid, relu, softmax, log_softmax).

Each takes Tensors or backend arrays (or Python numbers) and returns what ``core.record`` says: a
plain backend array outside tracing, else a Tensor with its gradient, as PyTorch's autograd
computes it (ties and boundaries included). Integer inputs to the float functions are computed in
float32, as Keras does.
"""
from __future__ import annotations

import builtins
from typing import Any, Callable

import numpy as np

from ..backends import Backend
from ..backends.base import Array
from .core import absolute, backend_of, is_float, is_number, operands, record, to_array, unbroadcast

__all__ = ["abs", "square", "sqrt", "exp", "log", "log1p", "maximum", "minimum", "clip", "where", "sigmoid",
           "relu", "softmax", "log_softmax"]

abs = absolute  # noqa: A001 - keras.ops.abs


def _unary(x: Any, floats: bool) -> tuple[Backend, Any, Array]:
    """(backend, xp, x as an array); ``floats``: integers and booleans become float32."""
    backend = backend_of((x,))
    xv = to_array(x, backend)
    if floats and not is_float(xv.dtype):
        xv = xv.astype(np.float32)
    return backend, backend.xp, xv


def square(x: Any) -> Any:
    """x * x; gradient 2 x."""
    backend, xp, xv = _unary(x, floats=False)
    if xv.dtype.kind == "b":
        xv = xv.astype(np.int32)
    return record(backend, xp.square(xv), (x,), lambda g: (g * 2 * xv,))


def sqrt(x: Any) -> Any:
    """sqrt(x); gradient 1 / (2 sqrt(x)) (inf at 0, as PyTorch's)."""
    backend, xp, xv = _unary(x, floats=True)
    out = xp.sqrt(xv)

    def vjp(g: Array) -> tuple[Array]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (g / (2 * out),)

    return record(backend, out, (x,), vjp)


def exp(x: Any) -> Any:
    """e ** x."""
    backend, xp, xv = _unary(x, floats=True)
    out = xp.exp(xv)
    return record(backend, out, (x,), lambda g: (g * out,))


def log(x: Any) -> Any:
    """Natural logarithm; gradient 1 / x."""
    backend, xp, xv = _unary(x, floats=True)
    return record(backend, xp.log(xv), (x,), lambda g: (g / xv,))


def log1p(x: Any) -> Any:
    """log(1 + x), accurate near 0; gradient 1 / (1 + x)."""
    backend, xp, xv = _unary(x, floats=True)
    return record(backend, xp.log1p(xv), (x,), lambda g: (g / (1 + xv),))


def _choose(x1: Any, x2: Any, pick: Callable[[Any], Callable[[Array, Array], Array]], first: Callable[[Array, Array], Array]) -> Any:
    """maximum / minimum: the gradient goes to the chosen operand, half to each on a tie (PyTorch's)."""
    backend, av, bv = operands(x1, x2)
    xp = backend.xp
    out = pick(xp)(av, bv)

    def vjp(g: Array) -> tuple[Array, Array]:
        tie = av == bv
        ga = xp.where(tie, g / 2, xp.where(first(av, bv), g, 0))
        gb = xp.where(tie, g / 2, xp.where(first(av, bv), 0, g))
        return unbroadcast(xp, ga, av.shape), unbroadcast(xp, gb, bv.shape)

    return record(backend, out, (x1, x2), vjp)


def maximum(x1: Any, x2: Any) -> Any:
    """The larger of x1 and x2, elementwise and broadcast."""
    return _choose(x1, x2, lambda xp: xp.maximum, lambda a, b: a > b)


def minimum(x1: Any, x2: Any) -> Any:
    """The smaller of x1 and x2, elementwise and broadcast."""
    return _choose(x1, x2, lambda xp: xp.minimum, lambda a, b: a < b)


def clip(x: Any, x_min: Any, x_max: Any) -> Any:
    """x clipped to [x_min, x_max] (numbers or arrays, no gradient to them); gradient 1 where
    x_min <= x <= x_max, else 0 (PyTorch's clamp)."""
    backend, xp, xv = _unary(x, floats=False)
    if xv.dtype.kind == "b":
        xv = xv.astype(np.int32)
    lo = to_array(x_min, backend, xv.dtype if is_number(x_min) else None)
    hi = to_array(x_max, backend, xv.dtype if is_number(x_max) else None)
    out = xp.minimum(xp.maximum(xv, lo), hi)
    if out.dtype != xv.dtype and is_float(xv.dtype):
        out = out.astype(xv.dtype)
    return record(backend, out, (x,), lambda g: (unbroadcast(xp, xp.where((xv >= lo) & (xv <= hi), g, 0), xv.shape),))


def where(condition: Any, x1: Any = None, x2: Any = None) -> Any:
    """x1 where ``condition`` holds, else x2 (broadcast together); the gradient goes to the operand
    chosen. With neither x1 nor x2: the indices of the true elements (a tuple of arrays, no gradient)."""
    backend = backend_of((condition, x1, x2))
    xp = backend.xp
    cond = to_array(condition, backend)
    if cond.dtype.kind != "b":
        cond = cond != 0
    if x1 is None and x2 is None:
        return tuple(xp.nonzero(cond))
    if x1 is None or x2 is None:
        raise ValueError("where: give both x1 and x2, or neither")
    _, av, bv = operands(x1, x2)
    out = xp.where(cond, av, bv)

    def vjp(g: Array) -> tuple[None, Array, Array]:
        return None, unbroadcast(xp, xp.where(cond, g, 0), av.shape), unbroadcast(xp, xp.where(cond, 0, g), bv.shape)

    return record(backend, out, (condition, x1, x2), vjp)


def sigmoid(x: Any) -> Any:
    """1 / (1 + e ** -x), computed without overflow for any x; gradient s (1 - s)."""
    backend, xp, xv = _unary(x, floats=True)
    e = xp.exp(-xp.abs(xv))
    out = xp.where(xv >= 0, 1 / (1 + e), e / (1 + e)).astype(xv.dtype)
    return record(backend, out, (x,), lambda g: (g * out * (1 - out),))


def relu(x: Any) -> Any:
    """max(x, 0); gradient 1 where x > 0 (0 at 0, as PyTorch's)."""
    backend, xp, xv = _unary(x, floats=False)
    out = xp.maximum(xv, xp.zeros((), xv.dtype))
    return record(backend, out, (x,), lambda g: (xp.where(xv > 0, g, 0),))


def _check_axis(axis: Any, ndim: int, what: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < builtins.max(ndim, 1):
        raise ValueError(f"{what}: axis must be an integer in [{-ndim}, {ndim}), got {axis!r}")
    return int(axis)


def softmax(x: Any, axis: int = -1) -> Any:
    """exp(x) / sum(exp(x)) along ``axis``, from x - max for stability."""
    backend, xp, xv = _unary(x, floats=True)
    axis = _check_axis(axis, xv.ndim, "softmax")
    e = xp.exp(xv - xp.max(xv, axis=axis, keepdims=True))
    out = e / xp.sum(e, axis=axis, keepdims=True)
    return record(backend, out, (x,), lambda g: (out * (g - xp.sum(g * out, axis=axis, keepdims=True)),))


def log_softmax(x: Any, axis: int = -1) -> Any:
    """x - logsumexp(x) along ``axis``; gradient g - softmax(x) sum(g)."""
    backend, xp, xv = _unary(x, floats=True)
    axis = _check_axis(axis, xv.ndim, "log_softmax")
    shifted = xv - xp.max(xv, axis=axis, keepdims=True)
    out = shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    return record(backend, out, (x,), lambda g: (g - xp.exp(out) * xp.sum(g, axis=axis, keepdims=True),))
