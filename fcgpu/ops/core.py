"""The traced tensor of ``fcgpu.ops``: ``Tensor``, the reverse-mode graph behind it, the arithmetic
and comparison operators, and ``value_and_grad``.

A ``Tensor`` wraps an array of one backend (NumPy, CuPy or the stand-in's) and, when it was computed
from a tensor that needs a gradient, the function that maps the gradient of its value to those of
its inputs (a vector-Jacobian product). Ops given only plain arrays return plain arrays of the
active backend, as Keras's ops do; ops given a ``Tensor`` return one. Gradients follow PyTorch's
autograd, ties and boundaries included, and broadcasting is undone by summing the gradient over
the broadcast axes. Integer and boolean results carry no gradient.

NumPy cannot follow a gradient: a ``Tensor`` refuses ``numpy.asarray``, NumPy's functions and
``float()``, each with a TypeError that says so (``__array_ufunc__ = None`` leaves NumPy's, CuPy's
and the stand-in's binary operators to the tensor's reflected ones).
"""
from __future__ import annotations

import os
import traceback
import types
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..backends import Backend, get_backend
from ..backends.base import Array

__all__ = [
    "Tensor", "value_and_grad", "absolute", "add", "subtract", "multiply", "divide", "power", "negative",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
]

#: A vector-Jacobian product: the gradient of an op's output -> one gradient (or None) per input.
VJP = Callable[[Array], Sequence["Array | None"]]


def is_number(x: Any) -> bool:
    """A Python bool, int or float (weakly typed beside an array, as in Keras); NumPy scalars are arrays."""
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


class Tensor:
    """An array of one backend, traced for reverse-mode gradients.

    ``value``: the backend array; ``shape``, ``dtype``, ``ndim`` are its. Operators (+ - * / **,
    unary -, abs, comparisons, basic indexing) are ``fcgpu.ops``'s. ``requires_grad``: whether a
    gradient flows to it (only floating tensors computed from a traced input)."""

    __slots__ = ("value", "backend", "requires_grad", "_parents", "_vjp", "__weakref__")
    __array_ufunc__ = None  # NumPy, CuPy and the stand-in defer binary operators to ours
    __array_priority__ = 1000.0

    def __init__(self, value: Array, backend: Backend, requires_grad: bool = False,
                 parents: tuple[Any, ...] = (), vjp: VJP | None = None) -> None:
        self.value = value
        self.backend = backend
        self.requires_grad = bool(requires_grad) and is_float(value.dtype)
        self._parents = parents if self.requires_grad else ()
        self._vjp = vjp if self.requires_grad else None

    # -- array attributes ---------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.value.dtype)

    @property
    def ndim(self) -> int:
        return len(self.value.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        traced = ", traced" if self.requires_grad else ""
        return f"<fcgpu.ops.Tensor shape={self.shape} dtype={self.dtype.name}{traced}>"

    __hash__ = object.__hash__  # == is elementwise, as on arrays; a tensor still keys a dict

    # -- operators ----------------------------------------------------------------
    def __add__(self, other: Any) -> "Tensor": return add(self, other)
    def __radd__(self, other: Any) -> "Tensor": return add(other, self)
    def __sub__(self, other: Any) -> "Tensor": return subtract(self, other)
    def __rsub__(self, other: Any) -> "Tensor": return subtract(other, self)
    def __mul__(self, other: Any) -> "Tensor": return multiply(self, other)
    def __rmul__(self, other: Any) -> "Tensor": return multiply(other, self)
    def __truediv__(self, other: Any) -> "Tensor": return divide(self, other)
    def __rtruediv__(self, other: Any) -> "Tensor": return divide(other, self)
    def __pow__(self, other: Any) -> "Tensor": return power(self, other)
    def __rpow__(self, other: Any) -> "Tensor": return power(other, self)
    def __neg__(self) -> "Tensor": return negative(self)
    def __pos__(self) -> "Tensor": return self
    def __abs__(self) -> "Tensor": return absolute(self)
    def __eq__(self, other: Any) -> "Tensor": return equal(self, other)  # type: ignore[override]
    def __ne__(self, other: Any) -> "Tensor": return not_equal(self, other)  # type: ignore[override]
    def __lt__(self, other: Any) -> "Tensor": return less(self, other)
    def __le__(self, other: Any) -> "Tensor": return less_equal(self, other)
    def __gt__(self, other: Any) -> "Tensor": return greater(self, other)
    def __ge__(self, other: Any) -> "Tensor": return greater_equal(self, other)

    def __getitem__(self, key: Any) -> "Tensor":
        """Basic indexing (integers, slices, None, Ellipsis); the gradient lands in the selected places."""
        parts = key if isinstance(key, tuple) else (key,)
        if not all(isinstance(k, (int, np.integer, slice, type(None), type(Ellipsis))) for k in parts):
            raise TypeError(f"fcgpu.ops.Tensor: only basic indexing (integers, slices, None, ...) is traced, got {key!r}")
        x = self.value
        out = x[key]

        def vjp(g: Array) -> tuple[Array]:
            full = self.backend.xp.zeros(x.shape, x.dtype)
            full[key] = g
            return (full,)

        return record(self.backend, out, (self,), vjp)

    # -- what NumPy cannot do with it ------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "a fcgpu.ops.Tensor cannot become a NumPy array: NumPy cannot carry the gradient. Write the "
            "computation with fcgpu.ops (ops.convert_to_numpy(x) gives the values, without gradient)"
        )

    def __array_function__(self, func: Any, types: Iterable[type], args: tuple, kwargs: dict) -> Any:
        name = func.__name__
        raise TypeError(f"numpy.{name} was called on a fcgpu.ops.Tensor: NumPy cannot carry the gradient; "
                        f"use {suggest(name)}")

    def _no_scalar(self, *_: Any) -> Any:
        raise TypeError(
            "a fcgpu.ops.Tensor has no Python value inside a traced function (bool(), float(), int() or "
            "an if on a tensor): use ops.where for choices, or ops.convert_to_numpy(x) for values"
        )

    __bool__ = __float__ = __int__ = __index__ = __complex__ = _no_scalar


# -- graph ------------------------------------------------------------------------------
def is_float(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating type (the only results a gradient flows through)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype.name == "bfloat16"


def record(backend: Backend, out: Array, inputs: Sequence[Any], vjp: VJP | None) -> Any:
    """The result of an op: ``out`` itself when no input is a Tensor (outside tracing), else a
    Tensor that, if an input needs a gradient and ``out`` is floating, remembers ``vjp`` (None: an
    op through which no gradient flows)."""
    if isinstance(out, np.generic):  # NumPy's full reductions give scalars: arrays, as on the other backends
        out = backend.xp.asarray(out)
    tensors = [x for x in inputs if isinstance(x, Tensor)]
    if not tensors:
        return out
    needs = vjp is not None and any(t.requires_grad for t in tensors)
    return Tensor(out, backend, needs, tuple(inputs), vjp)


def gradients(output: Tensor, sources: Sequence[Tensor], seed: Array | None = None) -> list[Array | None]:
    """d(sum of ``output``)/d``source`` for each source (None where none flows), by one reverse
    sweep over the graph in topological order; ``seed``, the output's own gradient, defaults to ones."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(output, False)]
    while stack:  # iterative post-order DFS: a parent before the tensors computed from it
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen or not node.requires_grad:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node._parents if isinstance(p, Tensor))
    xp = output.backend.xp
    grads: dict[int, Array] = {id(output): xp.ones_like(output.value) if seed is None else seed}
    for node in reversed(order):
        g = grads.pop(id(node), None)
        if g is None or node._vjp is None:
            if g is not None:
                grads[id(node)] = g  # a leaf: kept for the caller
            continue
        for parent, pg in zip(node._parents, node._vjp(g)):
            if pg is None or not isinstance(parent, Tensor) or not parent.requires_grad:
                continue
            pg = _match(xp, pg, parent.value)
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg
    return [grads.get(id(s)) for s in sources]


def _match(xp: Any, g: Array, like: Array) -> Array:
    """``g`` as an array of ``like``'s shape and dtype."""
    g = xp.asarray(g)
    if g.dtype != like.dtype:
        g = g.astype(like.dtype)
    return g if g.shape == like.shape else xp.broadcast_to(g, like.shape)


def value_and_grad(fn: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., tuple[Array, Any]]:
    """``fn`` (written with fcgpu.ops) -> a function returning ``(fn(*args), gradient)``: the value as
    a backend array, and the gradient of its sum with respect to argument ``argnums`` (a tuple of
    gradients for a sequence), each of that argument's shape and dtype. fcgpu's own (as JAX's
    ``value_and_grad``); Keras's ops have no tape of their own."""
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(n) for n in argnums)

    def wrapped(*args: Any) -> tuple[Array, Any]:
        backend = backend_of(args)
        inputs = [Tensor(to_array(a, backend), backend, True) if i in nums else a for i, a in enumerate(args)]
        for i in nums:
            if not inputs[i].requires_grad:
                raise TypeError(f"value_and_grad: argument {i} has dtype {inputs[i].dtype}; gradients flow to floats only")
        where = f"value_and_grad({callable_name(fn)})"
        out = call_traced(fn, inputs, where)
        if not isinstance(out, Tensor) or not out.requires_grad:
            raise ValueError(not_traced(where))
        grads = gradients(out, [inputs[i] for i in nums])
        grads = [backend.xp.zeros_like(inputs[i].value) if g is None else g for i, g in zip(nums, grads)]
        return out.value, grads[0] if single else tuple(grads)

    return wrapped


def call_traced(fn: Callable[..., Any], args: Sequence[Any], where: str) -> Any:
    """``fn(*args)``; a NumPy or CuPy ufunc met on a Tensor is named with the line that called it."""
    try:
        return fn(*args)
    except TypeError as e:
        text = str(e)
        if "__array_ufunc__=None" not in text and not ("Unsupported type" in text and "Tensor" in text):
            raise
        here = os.path.dirname(os.path.abspath(__file__))
        frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.dirname(os.path.abspath(f.filename)) != here]
        line = f"{frames[-1].filename}:{frames[-1].lineno}" + (f" ({frames[-1].line})" if frames[-1].line else "") if frames else "?"
        raise TypeError(f"{where}: a NumPy (or CuPy) function was called on a fcgpu.ops.Tensor at {line}; NumPy "
                        f"cannot carry the gradient: write it with fcgpu.ops (ops.exp, ops.log, ops.mean, ...)") from e


def callable_name(fn: Callable[..., Any]) -> str:
    """A function's name, or its class's for another callable object."""
    return fn.__name__ if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)) else type(fn).__name__


def not_traced(where: str) -> str:
    return (f"{where}: the result does not depend on the traced input through fcgpu.ops, so no gradient "
            f"can flow (was it computed with NumPy, or from ops.convert_to_numpy?)")


# -- operands --------------------------------------------------------------------------
def backend_of(args: Iterable[Any]) -> Backend:
    """The backend of the first Tensor among ``args`` (lists searched), else the active one."""
    for a in args:
        if isinstance(a, Tensor):
            return a.backend
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Tensor):
                    return b.backend
    return get_backend()


def default_dtype(x: Any) -> np.dtype:
    """Keras's dtype for Python data: bool, int32 for integers, float32 (floatx) for floats."""
    flat = np.asarray(x)
    if flat.dtype.kind == "b":
        return np.dtype(bool)
    if flat.dtype.kind in "iu":
        return np.dtype(np.int32)
    return np.dtype(np.float32)


def to_array(x: Any, backend: Backend, dtype: Any = None) -> Array:
    """``x`` (a Tensor's value, an array of ``backend``, NumPy or Python data) as ``backend``'s array."""
    if isinstance(x, Tensor):
        if x.backend is not backend:
            raise TypeError(f"fcgpu.ops: tensors of two backends met ({x.backend.name} and {backend.name})")
        x = x.value
    elif is_number(x) or isinstance(x, (list, tuple)):
        x = np.asarray(x, dtype or default_dtype(x))
    if not backend.owns(x):
        host = np.asarray(x)
        x = backend.from_numpy(host) if host.ndim else backend.xp.asarray(host)  # from_numpy makes 0-d 1-d
    return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)


def value_of(x: Any) -> Any:
    return x.value if isinstance(x, Tensor) else x


def operands(a: Any, b: Any) -> tuple[Backend, Any, Any]:
    """(backend, a, b) as arrays of one backend; a Python number beside an array takes the array's
    dtype where it fits it (Keras's weak types: a float beside integers gives float32)."""
    backend = backend_of((a, b))
    if is_number(a) and not is_number(b):
        bv = to_array(b, backend)
        return backend, to_array(a, backend, _weak_dtype(a, bv.dtype)), bv
    av = to_array(a, backend)
    bv = to_array(b, backend, _weak_dtype(b, av.dtype) if is_number(b) else None)
    return backend, av, bv


def _weak_dtype(scalar: Any, dtype: np.dtype) -> np.dtype:
    kind = np.dtype(dtype).kind
    if isinstance(scalar, bool):
        return np.dtype(dtype)
    if isinstance(scalar, int):
        return np.dtype(dtype) if kind in "iuf" else np.dtype(np.int32)
    return np.dtype(dtype) if kind == "f" or np.dtype(dtype).name == "bfloat16" else np.dtype(np.float32)


def unbroadcast(xp: Any, g: Array, shape: tuple[int, ...]) -> Array:
    """``g`` summed over the axes along which an operand of ``shape`` was broadcast."""
    if tuple(g.shape) == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = xp.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return xp.reshape(g, shape)


def suggest(name: str) -> str:
    """The fcgpu.ops function to use instead of NumPy's ``name``."""
    from . import catalogue  # the list of names lives with the package (no cycle: catalogue imports nothing)

    aliases = {"true_divide": "divide", "amax": "max", "amin": "min", "concat": "concatenate", "asarray": "convert_to_tensor",
               "array": "convert_to_tensor", "absolute": "abs", "copy": "convert_to_tensor"}
    name = aliases.get(name, name)
    return f"fcgpu.ops.{name}" if name in catalogue.NAMES else "the fcgpu.ops functions (" + ", ".join(catalogue.NAMES) + ")"


# -- arithmetic -------------------------------------------------------------------------
def _binary(a: Any, b: Any, forward: Callable[[Any, Array, Array], Array],
            grads: Callable[[Any, Array, Array, Array, Array], tuple[Array | None, Array | None]]) -> Any:
    backend, av, bv = operands(a, b)
    xp = backend.xp
    out = forward(xp, av, bv)

    def vjp(g: Array) -> tuple[Array | None, Array | None]:
        ga, gb = grads(xp, av, bv, out, g)
        return (None if ga is None else unbroadcast(xp, ga, av.shape), None if gb is None else unbroadcast(xp, gb, bv.shape))

    return record(backend, out, (a, b), vjp)


def add(x1: Any, x2: Any) -> Any:
    """x1 + x2, broadcast."""
    return _binary(x1, x2, lambda xp, a, b: xp.add(a, b), lambda xp, a, b, o, g: (g, g))


def subtract(x1: Any, x2: Any) -> Any:
    """x1 - x2, broadcast."""
    return _binary(x1, x2, lambda xp, a, b: xp.subtract(a, b), lambda xp, a, b, o, g: (g, -g))


def multiply(x1: Any, x2: Any) -> Any:
    """x1 * x2, broadcast."""
    return _binary(x1, x2, lambda xp, a, b: xp.multiply(a, b), lambda xp, a, b, o, g: (g * b, g * a))


def _true_divide(xp: Any, a: Array, b: Array) -> Array:
    if not is_float(a.dtype) and not is_float(b.dtype):  # Keras: integer / integer is a float
        a = a.astype(np.float32)
    return xp.divide(a, b)


def divide(x1: Any, x2: Any) -> Any:
    """x1 / x2 (true division: integers divide to float32), broadcast."""
    return _binary(x1, x2, _true_divide, lambda xp, a, b, o, g: (g / b, -g * o / b))


def _power_grads(xp: Any, a: Array, b: Array, out: Array, g: Array) -> tuple[Array, Array]:
    # PyTorch's: d/da is 0 where the exponent is 0; d/db is 0 where the base is 0 and the exponent >= 0.
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** negative: inf, as PyTorch's
        ga = xp.where(b == 0, 0, g * b * xp.power(a, b - 1))
        log_a = xp.log(xp.where((a == 0) & (b >= 0), 1, a))
    return ga, g * out * log_a


def power(x1: Any, x2: Any) -> Any:
    """x1 ** x2, broadcast."""
    return _binary(x1, x2, lambda xp, a, b: xp.power(a, b), _power_grads)


def negative(x: Any) -> Any:
    """-x."""
    backend = backend_of((x,))
    xv = to_array(x, backend)
    return record(backend, backend.xp.negative(xv), (x,), lambda g: (-g,))


def absolute(x: Any) -> Any:
    """|x|; the gradient is sign(x) (0 at 0, as PyTorch's)."""
    backend = backend_of((x,))
    xv = to_array(x, backend)
    xp = backend.xp
    return record(backend, xp.abs(xv), (x,), lambda g: (g * xp.sign(xv),))


def _compare(name: str, pick: Callable[[Any], Callable[[Array, Array], Array]]) -> Callable[[Any, Any], Any]:
    def op(x1: Any, x2: Any) -> Any:
        backend, av, bv = operands(x1, x2)
        return record(backend, pick(backend.xp)(av, bv), (x1, x2), None)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name}(x1, x2), broadcast: a boolean array (no gradient)."
    return op


equal = _compare("equal", lambda xp: xp.equal)
not_equal = _compare("not_equal", lambda xp: xp.not_equal)
less = _compare("less", lambda xp: xp.less)
less_equal = _compare("less_equal", lambda xp: xp.less_equal)
greater = _compare("greater", lambda xp: xp.greater)
greater_equal = _compare("greater_equal", lambda xp: xp.greater_equal)
