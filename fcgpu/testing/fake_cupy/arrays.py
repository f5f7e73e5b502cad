"""The stand-in's ``ndarray``: a ``numpy.ndarray`` subclass that presents itself as a CuPy device array.

Part of ``fcgpu.testing.fake_cupy``. Also here: how NumPy calls on stand-in arrays are routed
(``device_function``), refusing plain host arrays alongside device arrays as CuPy does.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .device import cuda


def mixed_error(what: str, x: object) -> TypeError:
    """The TypeError for a host array met alongside stand-in arrays (where CuPy raises one too)."""
    return TypeError(
        f"fake_cupy: {what} received a {type(x).__module__}.{type(x).__name__} alongside stand-in "
        f"device arrays; real CuPy raises TypeError here too. Move it with cupy.asarray() first "
        f"(or bring device arrays back with .get() / cupy.asnumpy())."
    )


def _unwrap(x: Any, what: str) -> Any:
    """Plain NumPy views of stand-in arrays, found recursively in lists and tuples; host arrays are refused."""
    if isinstance(x, ndarray):
        return x.view(np.ndarray)
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x  # CuPy accepts 0-d host arrays as scalars
        raise mixed_error(what, x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def _wrap(x: Any) -> Any:
    """Stand-in arrays for NumPy results; full reductions give 0-d arrays as in CuPy."""
    if isinstance(x, np.ndarray):
        return x if isinstance(x, ndarray) else x.view(ndarray)
    if isinstance(x, np.generic):
        return np.asarray(x).view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


class ndarray(np.ndarray):  # noqa: N801 - mirrors cupy.ndarray
    """A host array that presents itself as a CuPy device array."""

    __module__ = "fcgpu.testing.fake_cupy"  # where it is imported from (and named in error messages)
    __array_priority__ = 100.0

    def get(self, stream: Any = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray:
        """A host (``numpy.ndarray``) copy, as ``cupy.ndarray.get``."""
        host = self.view(np.ndarray)
        if out is not None:
            np.copyto(out, host)
            return out
        return np.array(host, order=order, copy=True)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        """Copy host data in, as ``cupy.ndarray.set``."""
        if isinstance(arr, ndarray) or not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        np.copyto(self.view(np.ndarray), arr)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "descr": self.dtype.descr,
            "data": (self.__array_interface__["data"][0], False),
            "strides": None if self.flags.c_contiguous else self.strides,
            "version": 3,
        }

    @property
    def device(self) -> "cuda.Device":
        return cuda.Device(0)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        what = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        args = [_unwrap(x, what) for x in inputs]
        out = kwargs.get("out")
        if out is not None:
            for o in out:
                if o is not None and not isinstance(o, ndarray):
                    raise mixed_error(f"{what} (out=)", o)
            kwargs["out"] = tuple(None if o is None else o.view(np.ndarray) for o in out)
        if "where" in kwargs:
            kwargs["where"] = _unwrap(kwargs["where"], what)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None and method != "at":
            return out[0] if len(out) == 1 else tuple(out)
        return _wrap(result)

    def __array_function__(self, func: Callable, types_: Iterable[type], args: tuple, kwargs: dict) -> Any:
        return _call(func, args, kwargs, f"numpy.{func.__name__}")


def _call(func: Callable, args: Sequence[Any], kwargs: dict[str, Any], what: str) -> Any:
    out = kwargs.get("out")
    if out is not None and not isinstance(out, ndarray):
        raise mixed_error(f"{what} (out=)", out)
    result = func(*_unwrap(tuple(args), what), **{k: _unwrap(v, what) for k, v in kwargs.items()})
    if out is not None:
        return out
    return _wrap(result)


def device_function(func: Callable) -> Callable:
    """``func`` (a NumPy function) taking and returning stand-in arrays, as CuPy's namesake does."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _call(func, args, kwargs, f"cupy.{getattr(func, '__name__', func)}")

    wrapper.__name__ = getattr(func, "__name__", "function")
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = f"Stand-in for cupy.{wrapper.__name__}: numpy.{wrapper.__name__} on stand-in arrays."
    return wrapper
