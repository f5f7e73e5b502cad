"""Counting device operations as a GPU would launch them: ``count_device_ops`` and its hooks.

Part of ``fcgpu.testing.fake_cupy``. Every place of the stand-in that would launch work on a real
GPU (an ElementwiseKernel call, a ufunc or reduction on a device array, a module function such as
``matmul`` or ``zeros``, ``astype``, a gather or a ``__setitem__``) or move data between host and
device (``asnumpy``, ``.get()``, ``float()`` of a device array, ``asarray`` of host data) runs
inside ``counted(kind, name)``. One call counts once: whatever a counted operation does inside
(the stand-in's ``asarray`` casting through ``astype``, NumPy's own ufuncs) is not counted again.
Views (slices, ``reshape``, ``.T``), ``empty`` and metadata reads launch nothing and are not counted.

Kinds: 'kernel' (ElementwiseKernel, named after the kernel), 'gemm', 'reduction', 'ufunc',
'fill', 'copy', 'gather', 'setitem', 'function' (a forwarded NumPy function not classified
below); transfers are 'to_host' and 'to_device' and are kept apart from the device operations.
A boolean-mask gather also counts a 'to_host' (CuPy reads the number of selected elements back).
Not modelled: one counted GEMM or reduction can be more than one kernel on a GPU (cuBLAS split-K,
two-pass reductions), and allocations from CuPy's memory pool are not counted (they launch nothing).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from . import capture
from .recording import registered

__all__ = ["DeviceOps", "OpCounts", "TRANSFER_KINDS", "count_device_ops", "counted", "counted_method", "note",
           "ufunc_kind", "function_kind", "index_kind"]

TRANSFER_KINDS: tuple[str, ...] = ("to_host", "to_device")

# cupy.<name> functions by what they launch; a NumPy ufunc is 'ufunc', anything else 'function'.
_FUNCTION_KINDS: dict[str, str | None] = {
    **dict.fromkeys(("matmul", "dot", "tensordot", "inner", "outer", "vdot", "einsum"), "gemm"),
    **dict.fromkeys(("sum", "prod", "max", "min", "amax", "amin", "mean", "std", "var", "argmax", "argmin",
                     "count_nonzero", "any", "all", "allclose", "array_equal", "nansum", "nanmax", "nanmin",
                     "nanmean", "average", "cumsum", "cumprod", "ptp", "median", "norm"), "reduction"),
    **dict.fromkeys(("zeros", "ones", "full", "arange", "linspace", "eye", "identity", "zeros_like", "ones_like",
                     "full_like"), "fill"),
    **dict.fromkeys(("copyto", "concatenate", "stack", "hstack", "vstack", "copy", "tile", "repeat"), "copy"),
    **dict.fromkeys(("take", "take_along_axis", "compress"), "gather"),
    **dict.fromkeys(("where", "clip", "round", "around"), "ufunc"),
    # Views, metadata and allocation without initialisation: nothing is launched.
    **dict.fromkeys(("empty", "empty_like", "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze",
                     "expand_dims", "broadcast_to", "broadcast_arrays", "atleast_1d", "atleast_2d", "atleast_3d",
                     "shape", "ndim", "size", "result_type", "can_cast", "may_share_memory", "shares_memory",
                     "split", "array_split", "diagonal", "real", "imag", "get_array_module"), None),
}


class OpCounts:
    """Counts of ``(kind, name)`` pairs, read as device operations (``total``, ``by_kind``, ``names``)
    and host<->device transfers (``transfers``)."""

    def __init__(self, counts: Mapping[tuple[str, str], int] | None = None) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        for key, n in (counts or {}).items():
            if n:
                self._counts[key] += n

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """Every ``(kind, name)`` pair counted, transfers included."""
        return Counter(self._counts)

    def _tally(self, part: int, transfers: bool) -> Counter[str]:
        """Counts by kind (``part`` 0) or name (1), of the transfers or of the device operations."""
        found: Counter[str] = Counter()
        for key, n in self._counts.items():
            if (key[0] in TRANSFER_KINDS) == transfers:
                found[key[part]] += n
        return found

    @property
    def total(self) -> int:
        """Device operations (transfers excluded)."""
        return sum(self.by_kind.values())

    @property
    def by_kind(self) -> Counter[str]:
        """Device operations by kind ('kernel', 'gemm', 'reduction', 'ufunc', ...)."""
        return self._tally(0, False)

    @property
    def names(self) -> Counter[str]:
        """Device operations by kernel or function name ('fcgpu_sgd', 'matmul', 'subtract', ...)."""
        return self._tally(1, False)

    @property
    def transfers(self) -> Counter[str]:
        """Host<->device transfers: 'to_host' and 'to_device'."""
        return self._tally(0, True)

    def summary(self) -> str:
        """One line: the total, the kinds, and the transfers."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0])))
        moves = ", ".join(f"{n} {k}" for k, n in sorted(self.transfers.items())) or "none"
        return f"{self.total} device ops ({kinds or 'none'}); transfers: {moves}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpCounts) and self._counts == other._counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary()})"


class DeviceOps(OpCounts):
    """What a ``count_device_ops`` block saw; ``calls`` lists every ``(kind, name)`` in order, transfers included."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def add(self, kind: str, name: str) -> None:
        """Count one operation."""
        self.calls.append((kind, name))
        self._counts[(kind, name)] += 1


_open: list[DeviceOps] = []
_depth = 0  # counted operations running now; only the outermost one counts


@contextlib.contextmanager
def count_device_ops() -> Iterator[DeviceOps]:
    """Count the device operations and transfers made on stand-in arrays inside the block.

    Blocks may nest (each sees everything inside it); the object yielded keeps its counts after the block.
    """
    with registered(_open, DeviceOps()) as ops:
        yield ops


class counted:  # noqa: N801 - used as a context manager, like contextlib's lower-case ones
    """``with counted(kind, name):`` around one operation: counted once, when it completes, unless it
    runs inside another counted operation; nothing it calls is counted."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __enter__(self) -> None:
        global _depth
        if _depth == 0 and capture.active() is not None:  # what no recording hook took: refused
            raise capture.refuse(self.kind, self.name)
        _depth += 1

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        global _depth
        _depth -= 1
        if exc_type is None:
            note(self.kind, self.name)


capture.counter.append(counted)


def note(kind: str, name: str) -> None:
    """Count one operation now (a transfer a counted operation implies), unless inside another."""
    if _depth == 0 and capture.active() is not None:
        raise capture.refuse(kind, name)
    if _depth == 0:
        for ops in _open:
            ops.add(kind, name)


def counted_method(base: Callable, kind: str, name: str) -> Callable:
    """``base`` (an ``ndarray`` method) counted as one ``kind`` operation named ``name``."""

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if _depth == 0 and capture.active() is not None and (name == "fill" or out is not None):
            plain, kw = self.view(np.ndarray), {**kwargs, "out": None if out is None else out.view(np.ndarray)}
            capture.record(name, lambda: base(plain, *args, **{k: v for k, v in kw.items() if k in kwargs}))
            return out
        with counted(kind, name):
            return base(self, *args, **kwargs)

    method.__name__ = method.__qualname__ = getattr(base, "__name__", name)
    method.__doc__ = getattr(base, "__doc__", None)
    return method


def function_kind(func: Callable, name: str, args: tuple = ()) -> str | None:
    """What ``cupy.<name>`` (``func``, the NumPy function behind it) launches on ``args``; None for nothing."""
    if name == "copyto" and len(args) > 1 and np.ndim(args[1]) == 0:
        return "fill"
    if name in _FUNCTION_KINDS:
        return _FUNCTION_KINDS[name]
    return "ufunc" if isinstance(func, np.ufunc) else "function"


def ufunc_kind(ufunc: np.ufunc, method: str) -> tuple[str, str]:
    """(kind, name) of ``ufunc``'s ``method`` on device arrays: a GEMM for matmul, a reduction for
    reduce/accumulate/reduceat ('add.reduce'), else one elementwise 'ufunc' launch."""
    if method in ("reduce", "accumulate", "reduceat"):
        return "reduction", f"{ufunc.__name__}.{method}"
    return ("gemm" if ufunc is np.matmul else "ufunc"), ufunc.__name__ + ("" if method == "__call__" else f".{method}")


def index_kind(key: Any) -> tuple[str | None, bool]:
    """(None for a view, else the operation's name: 'gather' or 'mask'; whether index data moves to
    the device) for ``a[key]``: an array or list index gathers, a boolean one also reads its count back."""
    keys = key if isinstance(key, tuple) else (key,)
    name, host_index = None, False
    for k in keys:
        if isinstance(k, list) or (isinstance(k, np.ndarray) and (k.ndim > 0 or type(k) is not np.ndarray)):
            host_index = host_index or isinstance(k, list) or type(k) is np.ndarray
            is_mask = np.asarray(k).dtype == np.bool_ if isinstance(k, list) else k.dtype == np.bool_
            name = "mask" if is_mask else (name or "gather")
    return name, host_index
