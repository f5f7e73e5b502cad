"""The stand-in's ``ndarray``: a ``numpy.ndarray`` subclass that presents itself as a CuPy device array.

Part of ``fcgpu.testing.fake_cupy``. Also here: how NumPy calls on stand-in arrays are routed
(``device_function``), refusing plain host arrays alongside device arrays as CuPy does.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import capture
from .counting import counted, counted_method, function_kind, index_kind, note, ufunc_kind
from .device import Device


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
        with counted("to_host", "get"):
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
        with counted("to_device", "set"):
            np.copyto(self.view(np.ndarray), arr)

    def astype(
        self, dtype: Any, order: str = "K", casting: str = "unsafe", subok: bool = True, copy: bool = True
    ) -> Any:
        """``numpy.ndarray.astype``; a copy (one device operation) unless ``copy=False`` finds the dtype right."""
        convert = super().astype
        if not copy and np.dtype(dtype) == self.dtype:
            return convert(dtype, order=order, casting=casting, subok=subok, copy=False)
        with counted("copy", "astype"):
            return convert(dtype, order=order, casting=casting, subok=subok, copy=copy)

    def __getitem__(self, key: Any) -> Any:
        name, uploads = index_kind(key)
        if name is None:
            view = super().__getitem__(key)  # a view
            # Integers for every axis give a 0-d device array in CuPy, not a host scalar: reading it
            # is a device-to-host transfer (counted when it happens), as a reduction's result is.
            if isinstance(view, np.ndarray):
                return view
            return super().__getitem__((*key, Ellipsis) if isinstance(key, tuple) else (key, Ellipsis))
        if uploads:
            note("to_device", "index")
        with counted("gather", name):
            result = super().__getitem__(key)
        if name == "mask":
            note("to_host", "mask")  # CuPy reads the number of selected elements back
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        name, uploads = index_kind(key)
        if capture.active() is not None and not uploads and not (type(value) is np.ndarray and value.ndim > 0):
            target, source, k = self.view(np.ndarray), _unwrap(value, "setitem"), _unwrap(key, "setitem")
            return capture.record("setitem", lambda: np.ndarray.__setitem__(target, k, source))
        if uploads or (type(value) is np.ndarray and value.ndim > 0):
            note("to_device", "setitem")
        with counted("setitem", name or "setitem"):
            super().__setitem__(key, value)

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
    def device(self) -> Device:
        return Device(0)

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
        kind = ufunc_kind(ufunc, method)
        if capture.active() is not None and kind[0] != "gemm" and out is not None and all(o is not None for o in out):
            capture.record(kind[1], lambda: getattr(ufunc, method)(*args, **kwargs))
            return out[0] if len(out) == 1 else tuple(out)
        with counted(*kind):
            result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None and method != "at":
            return out[0] if len(out) == 1 else tuple(out)
        return _wrap(result)

    def __array_function__(self, func: Callable, types_: Iterable[type], args: tuple, kwargs: dict) -> Any:
        return _call(func, args, kwargs, f"numpy.{func.__name__}")


# Methods that launch work (or read a device array back), counted as one operation each; those that
# reduce through a ufunc (sum, max, ...) count once, not once more for the ufunc inside.
_COUNTED_METHODS: dict[str, tuple[str, str]] = {
    **{
        m: ("reduction", m)
        for m in ("sum", "prod", "max", "min", "mean", "std", "var", "argmax", "argmin", "any", "all", "cumsum")
    },
    "clip": ("ufunc", "clip"),
    "dot": ("gemm", "dot"),
    "copy": ("copy", "copy"),
    "fill": ("fill", "fill"),
    **{
        m: ("to_host", m.strip("_"))
        for m in ("__float__", "__int__", "__index__", "__bool__", "__complex__", "item", "tolist")
    },
}
for _name, (_kind, _label) in _COUNTED_METHODS.items():
    setattr(ndarray, _name, counted_method(getattr(np.ndarray, _name), _kind, _label))
del _name, _kind, _label


def _call(func: Callable, args: Sequence[Any], kwargs: dict[str, Any], what: str) -> Any:
    out = kwargs.get("out")
    if out is not None and not isinstance(out, ndarray):
        raise mixed_error(f"{what} (out=)", out)
    plain_args = _unwrap(tuple(args), what)
    plain_kwargs = {k: _unwrap(v, what) for k, v in kwargs.items()}
    name = getattr(func, "__name__", "function")
    kind = function_kind(func, name, plain_args)
    if capture.active() is not None and (kind not in (None, "gemm") and (out is not None or name == "copyto")
                                         or name == "empty_like"):
        if name == "empty_like":
            raise capture.refuse("alloc", f"cupy.{name}")
        return capture.record(name, lambda: func(*plain_args, **plain_kwargs)) or out
    if kind is None:
        result = func(*plain_args, **plain_kwargs)
    else:
        with counted(kind, name):
            result = func(*plain_args, **plain_kwargs)
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


def _absent(name: str) -> property:
    def missing(self: ndarray) -> Any:
        raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")

    return property(missing)


# numpy.ndarray's attributes that cupy.ndarray (14.2) lacks: absent from the stand-in's arrays too.
for _name in ("ctypes", "getfield", "resize", "setfield", "setflags", "to_device"):
    setattr(ndarray, _name, _absent(_name))
