"""A host stand-in for the part of CuPy that fcgpu uses, so the CuPy backend's own code runs without a GPU.

``fcgpu.backends.cupy_backend.CupyBackend(fake_cupy)`` runs unchanged against this module:

- ``ndarray`` is a ``numpy.ndarray`` subclass, so NumPy operations on it produce stand-in arrays.
  Like a ``cupy.ndarray`` it has ``.get()`` (a host copy), ``.set()`` and a
  ``__cuda_array_interface__``, and it refuses to be mixed with a plain ``numpy.ndarray`` in a
  ufunc or array function (CuPy raises ``TypeError`` there as well).
- Module functions that CuPy mirrors (``asarray``, ``asnumpy``, ``empty``, ``zeros``,
  ``matmul(out=)``, ``sum``, ``exp``, ``where``, ...) return stand-in arrays; any other NumPy
  function is reached through a module ``__getattr__`` that wraps it the same way.
  ``asarray`` of host data copies, as a host-to-device transfer does.
- ``ElementwiseKernel`` follows CuPy's ``ElementwiseKernel.__call__``: it parses the parameter
  lists, resolves type placeholders (``T``) from the array arguments (a clash raises
  ``TypeError``), broadcasts the non-raw arrays, allocates missing outputs, casts each scalar
  argument to its parameter type (the one place that happens), and supports ``raw`` arguments,
  ``i``, ``_ind.size()``, ``size=``, ``bool``/``int64``-typed parameters and outputs that are
  also read. The operation and the preamble (fcgpu's ``kernels/*.cuh``) are compiled by the
  host C++ compiler and run in a loop over the elements that indexes every argument through its
  strides, so views and broadcast rows are read in place, never copied.
  Libraries are cached by a hash of their source in ``$FCGPU_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/fcgpu/host-kernels`` (``~/.cache/...``); writes are atomic (temp + rename)
  so concurrent test processes share the cache safely.
- ``cuda.runtime`` answers for one device named ``'host stand-in'``.

What it does NOT reproduce (checked elsewhere or only on a real GPU):

- GPU rounding: CuPy compiles with ``-ftz=true`` (float32 denormals flush to zero), NVCC fuses
  multiply-adds, and device ``expf``/``tanhf``/``log1pf`` differ from glibc by a few ulp. The host
  build keeps denormals, uses ``-ffp-contract=off`` and glibc's math.
- float16 is GCC's ``_Float16`` and bfloat16 a small host struct, not CUDA's ``__half`` /
  ``__nv_bfloat16`` or CuPy's ``float16`` class: code that compiles here can still fail to compile
  for the device (the NVRTC compile gate in ``fcgpu.testing.cuda_compile`` covers that).
- Concurrency: the loop is sequential, so data races, ``atomicAdd`` and block/warp behaviour are
  invisible; CUDA built-ins (``threadIdx``, ``__syncthreads``, ``__ldg``, ...) do not exist.
- Streams, events, asynchronous execution, the memory pool, multiple devices and peer access.
- ``ReductionKernel``, ``RawKernel``, ``RawModule``, ``cupy.fuse`` and ``cupyx`` are absent.
- ``isinstance(x, numpy.ndarray)`` is true for a stand-in array, and ``numpy.asarray(x)``
  silently returns a host view where CuPy raises ``TypeError``; code that type-checks against the
  real ``cupy.ndarray`` class does not recognise these arrays.
- Full reductions return 0-d arrays as in CuPy, but Python operators on 0-d arrays follow NumPy.
- Kernel compilation errors come from g++, not NVRTC, and are raised on the first call with
  each new type combination (as CuPy does), not at construction.
"""
from __future__ import annotations

import builtins
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

API_VERSION = "14.2.0"  # the CuPy release whose behaviour this module mirrors
__version__ = f"{API_VERSION}+host-stand-in"

DEVICE_NAME = "host stand-in"
_MAXDIM = 64

# --------------------------------------------------------------------------------------------
# ndarray
# --------------------------------------------------------------------------------------------


def _mixed_error(what: str, x: object) -> TypeError:
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
        raise _mixed_error(what, x)
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
                    raise _mixed_error(f"{what} (out=)", o)
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
        raise _mixed_error(f"{what} (out=)", out)
    result = func(*_unwrap(tuple(args), what), **{k: _unwrap(v, what) for k, v in kwargs.items()})
    if out is not None:
        return out
    return _wrap(result)


def _device_function(func: Callable) -> Callable:
    """``func`` (a NumPy function) taking and returning stand-in arrays, as CuPy's namesake does."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _call(func, args, kwargs, f"cupy.{getattr(func, '__name__', func)}")

    wrapper.__name__ = getattr(func, "__name__", "function")
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = f"Stand-in for cupy.{wrapper.__name__}: numpy.{wrapper.__name__} on stand-in arrays."
    return wrapper


# --------------------------------------------------------------------------------------------
# module functions
# --------------------------------------------------------------------------------------------

float16 = np.float16
float32 = np.float32
float64 = np.float64
int8, int16, int32, int64 = np.int8, np.int16, np.int32, np.int64
uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64
bool_ = np.bool_
dtype = np.dtype
newaxis = None
inf, nan, pi, e = np.inf, np.nan, np.pi, np.e


def asarray(a: Any, dtype: Any = None, order: str | None = None, *, blocking: bool = False) -> ndarray:
    """A stand-in array: device arrays pass through (cast if asked); host data is copied, as a transfer does."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return np.array(a, dtype=dtype, order=order or "K", copy=True).view(ndarray)


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", ndmin: int = 0) -> ndarray:
    if isinstance(obj, ndarray):
        obj = obj.view(np.ndarray)
    else:
        copy = True  # host data always moves
    return np.array(obj, dtype=dtype, copy=copy, order=order, ndmin=ndmin).view(ndarray)


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise _mixed_error("cupy.ascontiguousarray", a) if isinstance(a, np.ndarray) else TypeError(
            f"Unsupported type {type(a)}"
        )
    return np.ascontiguousarray(a.view(np.ndarray), dtype=dtype).view(ndarray)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray:
    """A host ``numpy.ndarray``: a copy of a stand-in array, or ``numpy.asarray`` of anything else."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    if out is not None:
        np.copyto(out, a)
        return out
    return np.asarray(a, order=order)


def get_array_module(*args: Any) -> types.ModuleType:
    """This module if any argument is a stand-in array, else NumPy (as ``cupy.get_array_module``)."""
    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[__name__]
    return np


def _creation(func: Callable) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> ndarray:
        return func(*args, **kwargs).view(ndarray)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = f"Stand-in for cupy.{func.__name__}."
    return wrapper


empty = _creation(np.empty)
zeros = _creation(np.zeros)
ones = _creation(np.ones)
full = _creation(np.full)
arange = _creation(np.arange)
linspace = _creation(np.linspace)
eye = _creation(np.eye)
empty_like = _device_function(np.empty_like)
zeros_like = _device_function(np.zeros_like)
ones_like = _device_function(np.ones_like)
full_like = _device_function(np.full_like)

matmul = _device_function(np.matmul)
dot = _device_function(np.dot)


def _sum_half_in_float(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    # cupy.sum reduces float16 with a float accumulator ('e->e' with a float intermediate);
    # np.sum would accumulate in float16 (4096 ones sum to 2048).
    if dtype is None and getattr(a, "dtype", None) == np.float16:
        wide = np.sum(a, axis=axis, dtype=np.float32, keepdims=keepdims)
        if out is None:
            return wide.astype(np.float16)
        np.copyto(out, wide, casting="same_kind")
        return out
    return np.sum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)


_sum_half_in_float.__name__ = "sum"
sum = _device_function(_sum_half_in_float)  # noqa: A001 - mirrors cupy.sum
max = _device_function(np.max)  # noqa: A001
min = _device_function(np.min)  # noqa: A001
amax = _device_function(np.amax)
amin = _device_function(np.amin)
mean = _device_function(np.mean)
exp = _device_function(np.exp)
log = _device_function(np.log)
log1p = _device_function(np.log1p)
sqrt = _device_function(np.sqrt)
tanh = _device_function(np.tanh)
abs = _device_function(np.abs)  # noqa: A001
maximum = _device_function(np.maximum)
minimum = _device_function(np.minimum)
where = _device_function(np.where)
isfinite = _device_function(np.isfinite)
isnan = _device_function(np.isnan)
clip = _device_function(np.clip)
copyto = _device_function(np.copyto)
argmax = _device_function(np.argmax)
concatenate = _device_function(np.concatenate)
stack = _device_function(np.stack)
allclose = _device_function(np.allclose)
array_equal = _device_function(np.array_equal)

_NOT_MIRRORED = {"random", "linalg", "fft", "testing", "ma", "lib", "polynomial", "char", "rec", "ctypeslib"}
_CUPY_ONLY = {"ReductionKernel", "RawKernel", "RawModule", "fuse", "memoize", "get_default_memory_pool", "cuda_stream"}


def __getattr__(name: str) -> Any:
    """Any other NumPy function, taking and returning stand-in arrays; NumPy types and constants as they are."""
    if name in _CUPY_ONLY:
        raise AttributeError(f"cupy.{name} is not provided by fcgpu's host stand-in for CuPy (see fake_cupy's docstring)")
    if name.startswith("__") or name in _NOT_MIRRORED:
        raise AttributeError(f"module 'fake_cupy' has no attribute {name!r} (not part of the stand-in)")
    try:
        value = getattr(np, name)
    except AttributeError:
        raise AttributeError(f"module 'fake_cupy' has no attribute {name!r}") from None
    if isinstance(value, (type, np.dtype, int, float, str)):
        return value
    if isinstance(value, np.ufunc) or callable(value):
        wrapped = _device_function(value)
        globals()[name] = wrapped
        return wrapped
    raise AttributeError(f"module 'fake_cupy' has no attribute {name!r} (not part of the stand-in)")


# --------------------------------------------------------------------------------------------
# cuda
# --------------------------------------------------------------------------------------------


class _Runtime:
    """``cupy.cuda.runtime`` for one device, the host."""

    CUDA_VERSION = 13000

    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802 - CUDA's names
        return 1

    @staticmethod
    def getDevice() -> int:  # noqa: N802
        return 0

    @staticmethod
    def setDevice(device: int) -> None:  # noqa: N802
        if device != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: the stand-in has one device (0), got {device}")

    @staticmethod
    def getDeviceProperties(device: int) -> dict[str, Any]:  # noqa: N802
        _Runtime.setDevice(device)
        return {
            "name": DEVICE_NAME.encode(),
            "major": 0,
            "minor": 0,
            "totalGlobalMem": 0,
            "multiProcessorCount": 1,
            "warpSize": 32,
        }

    @staticmethod
    def runtimeGetVersion() -> int:  # noqa: N802
        return _Runtime.CUDA_VERSION

    @staticmethod
    def driverGetVersion() -> int:  # noqa: N802
        return _Runtime.CUDA_VERSION

    @staticmethod
    def deviceSynchronize() -> None:  # noqa: N802
        """Kernels run synchronously on the host, so there is nothing to wait for."""


class _Device:
    def __init__(self, device: int | None = 0) -> None:
        self.id = 0 if device is None else int(device)
        _Runtime.setDevice(self.id)

    compute_capability = "00"

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass

    def __enter__(self) -> "_Device":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


cuda = types.SimpleNamespace(
    runtime=_Runtime(),
    Device=_Device,
    is_available=lambda: True,
    get_device_id=lambda: 0,
)

# --------------------------------------------------------------------------------------------
# ElementwiseKernel
# --------------------------------------------------------------------------------------------

_HOST_CTYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.int8): "signed char",
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int16): "short",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.int32): "int",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.int64): "long long",
    np.dtype(np.uint64): "unsigned long long",
    np.dtype(np.float16): "float16",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

try:  # bfloat16 exists in NumPy only through ml_dtypes
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: np.dtype | None = np.dtype(_ml_dtypes.bfloat16)
    _HOST_CTYPES[_BFLOAT16] = "bfloat16"
except ImportError:  # pragma: no cover - ml_dtypes is part of the verify extra
    _BFLOAT16 = None


def _get_dtype(name: str) -> np.dtype:
    """A parameter's explicit type, named as NumPy names dtypes (CuPy does the same: 'float' is float64)."""
    if name == "bfloat16" and _BFLOAT16 is not None:
        return _BFLOAT16
    try:
        return np.dtype(name)
    except TypeError:
        raise ValueError(f"Unknown type in kernel parameter: {name!r}") from None


class ParameterInfo:
    """One entry of an ElementwiseKernel parameter list, parsed as CuPy parses it."""

    def __init__(self, param: str, is_const: bool) -> None:
        self.name: str = ""
        self.dtype: np.dtype | None = None
        self.ctype: str = ""
        self.raw = False
        self.is_const = is_const
        s = param.split()
        if len(s) < 2:
            raise Exception(f"Syntax error: {param}")  # the exception class CuPy raises
        t, self.name = s[-2:]
        if len(t) == 1:
            self.ctype = t
        else:
            self.dtype = _get_dtype(t)
            self.ctype = _HOST_CTYPES.get(self.dtype, "")
            if not self.ctype:
                raise TypeError(f"fake_cupy: parameter type {t!r} is not supported by the stand-in")
        for word in s[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise Exception(f'Unknown keyword "{word}"')

    def __repr__(self) -> str:
        return f"<ParameterInfo name={self.name!r} ctype={self.ctype!r} raw={self.raw} const={self.is_const}>"


def _get_param_info(s: str, is_const: bool) -> tuple[ParameterInfo, ...]:
    if not s.strip():
        return ()
    return tuple(ParameterInfo(p, is_const) for p in s.strip().split(","))


def _decide_params_type(
    in_params: Sequence[ParameterInfo],
    out_params: Sequence[ParameterInfo],
    in_dtypes: Sequence[np.dtype | None],
    out_dtypes: Sequence[np.dtype],
) -> tuple[tuple[np.dtype, ...], tuple[np.dtype, ...], tuple[tuple[str, np.dtype], ...]]:
    """(in types, out types, type map) from the arrays' dtypes, with CuPy's rules and messages."""
    type_dict: dict[str, np.dtype] = {}
    # Outputs first, then inputs, as CuPy resolves them; a scalar input (None) decides nothing.
    for p, a in (*zip(out_params, out_dtypes), *zip(in_params, in_dtypes)):
        if a is None:
            continue
        if p.dtype is not None:
            if a != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a} {p.dtype}")
        elif p.ctype in type_dict:
            if type_dict[p.ctype] != a:
                raise TypeError(f"Type is mismatched. {p.name} {a} {type_dict[p.ctype]} {p.ctype}")
        else:
            type_dict[p.ctype] = a
    missing = [p.name for p in (*in_params, *out_params) if p.dtype is None and p.ctype not in type_dict]
    if missing:
        # CuPy fails here with a bare KeyError on the placeholder
        raise TypeError(f"the type of {', '.join(missing)} is not determined: no array argument has its placeholder type")
    in_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in in_params)
    out_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in out_params)
    return in_types, out_types, tuple(sorted(type_dict.items()))


_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` whose operation runs on the host, compiled by the C++ compiler."""

    def __init__(
        self,
        in_params: str,
        out_params: str,
        operation: str,
        name: str = "kernel",
        reduce_dims: bool = True,
        preamble: str = "",
        no_return: bool = False,
        return_tuple: bool = False,
        **kwargs: Any,
    ) -> None:
        if not _VALID_NAME.match(name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        self.in_params_text = in_params
        self.out_params_text = out_params
        self.in_params = _get_param_info(in_params, True)
        self.out_params = _get_param_info(out_params, False)
        self.params = self.in_params + self.out_params
        self.nin = len(self.in_params)
        self.nout = len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation = operation
        self.name = name
        self.__name__ = name
        self.reduce_dims = reduce_dims
        self.preamble = preamble
        self.no_return = no_return
        self.return_tuple = return_tuple
        self.kwargs = kwargs
        if "i" in [p.name for p in self.params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self._libs: dict[tuple, Callable] = {}

    def __call__(self, *args: Any, size: int = -1, stream: Any = None, block_size: int = 128) -> Any:
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        values: list[Any] = []
        for p, a in zip(self.params, args):
            if isinstance(a, ndarray):
                values.append(a)
            elif isinstance(a, np.ndarray) and a.ndim > 0:
                raise TypeError(f"Unsupported type {type(a)} for kernel argument {p.name!r} (a host array)")
            elif isinstance(a, (bool, int, float, complex, np.generic, np.ndarray)):
                values.append(np.asarray(a))  # a 0-d host value: a scalar argument
            else:
                raise TypeError(f"Unsupported type {type(a)} for kernel argument {p.name!r}")
        out_args = values[self.nin :]
        for a in out_args:
            if not isinstance(a, ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")

        # Broadcast every non-raw array, outputs included, as CuPy does.
        nonraw = [a for p, a in zip(self.params, values) if isinstance(a, ndarray) and not p.raw]
        if size != -1:
            if nonraw:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
            shape: tuple[int, ...] = (int(size),)
        else:
            if not nonraw:
                raise ValueError("Loop size is undecided.")
            shape = np.broadcast_shapes(*(a.shape for a in nonraw))

        in_dtypes = tuple(a.dtype if isinstance(a, ndarray) else None for a in values[: self.nin])
        out_dtypes = tuple(a.dtype for a in out_args)
        in_types, out_types, type_map = _decide_params_type(self.in_params, self.out_params, in_dtypes, out_dtypes)

        if not out_args:
            for p in self.out_params:
                if p.raw and size == -1:
                    raise ValueError("Output array size is Undecided")
            allocate = np.zeros if any(not run for _, run in _recorders) else np.empty
            out_args = [allocate(shape, t).view(ndarray) for t in out_types]
        else:
            for p, a in zip(self.out_params, out_args):
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
        if self.no_return:
            ret: Any = None
        elif not self.return_tuple and self.nout == 1:
            ret = out_args[0]
        else:
            ret = tuple(out_args)
        if 0 in shape:
            return ret

        # The one place a scalar argument takes its parameter's type.
        in_args = list(values[: self.nin])
        for k, (a, t) in enumerate(zip(in_args, in_types)):
            if not isinstance(a, ndarray):
                in_args[k] = _cast_scalar(a, t, self.in_params[k].name)

        args_all = in_args + out_args
        kinds = tuple("s" if not isinstance(a, ndarray) else ("r" if p.raw else "a") for p, a in zip(self.params, args_all))
        execute = True
        if _recorders:
            call = _describe_call(self, kinds, args_all, shape)
            for calls, run in _recorders:
                calls.append(call)
                execute = execute and run
        if execute:
            _launch(self._lib_for(kinds, type_map), self.name, self.params, args_all, shape)
        return ret

    def _lib_for(self, kinds: tuple[str, ...], type_map: tuple[tuple[str, np.dtype], ...]) -> Callable:
        key = (kinds, type_map)
        fn = self._libs.get(key)
        if fn is None:
            source = host_kernel_source(self.params, kinds, type_map, self.operation, self.preamble)
            fn = self._libs[key] = _load(source, self.name)
        return fn


@dataclass(frozen=True)
class KernelCall:
    """What one ElementwiseKernel call handed the device, for checking which variants CuPy would compile.

    Per parameter: ``kinds`` 'a' (an array broadcast to the loop shape), 'r' (a raw array) or
    's' (a scalar, already cast to its parameter type); ``dtypes`` the NumPy dtype names;
    ``shapes``/``strides`` (bytes) as the kernel indexes them, ``None`` for scalars.
    """

    name: str
    in_params: str
    out_params: str
    operation: str
    preamble: str
    kinds: tuple[str, ...]
    dtypes: tuple[str, ...]
    loop_shape: tuple[int, ...]
    shapes: tuple[tuple[int, ...] | None, ...]
    strides: tuple[tuple[int, ...] | None, ...]


_recorders: list[tuple[list[KernelCall], bool]] = []


@contextlib.contextmanager
def record_kernel_calls(execute: bool = True) -> Iterator[list[KernelCall]]:
    """Collect a ``KernelCall`` for every ElementwiseKernel call made inside the block.

    With ``execute=False`` kernels are not compiled or run (outputs they allocate are zeros),
    so a caller's sequence of kernel calls can be listed without a C++ compiler.
    """
    calls: list[KernelCall] = []
    entry = (calls, execute)
    _recorders.append(entry)
    try:
        yield calls
    finally:
        for k, e in enumerate(_recorders):
            if e is entry:
                del _recorders[k]
                break


def _describe_call(kernel: "ElementwiseKernel", kinds: tuple[str, ...], args: Sequence[Any], shape: tuple[int, ...]) -> KernelCall:
    shapes: list[tuple[int, ...] | None] = []
    strides: list[tuple[int, ...] | None] = []
    for kind, a in zip(kinds, args):
        if kind == "s":
            shapes.append(None)
            strides.append(None)
        else:
            view = a.view(np.ndarray) if kind == "r" else np.broadcast_to(a.view(np.ndarray), shape)
            shapes.append(tuple(view.shape))
            strides.append(tuple(view.strides))
    return KernelCall(
        name=kernel.name,
        in_params=kernel.in_params_text,
        out_params=kernel.out_params_text,
        operation=kernel.operation,
        preamble=kernel.preamble,
        kinds=kinds,
        dtypes=tuple(str(a.dtype) for a in args),
        loop_shape=tuple(shape),
        shapes=tuple(shapes),
        strides=tuple(strides),
    )


def _cast_scalar(a: np.ndarray, t: np.dtype, name: str) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):
            return np.asarray(a.item() if a.dtype.kind != "V" else a, dtype=t)
    except (OverflowError, ValueError, TypeError) as e:
        raise TypeError(f"kernel argument {name!r}: cannot convert {a!r} to {t}: {e}") from None


# --------------------------------------------------------------------------------------------
# host code generation, compilation and launch
# --------------------------------------------------------------------------------------------

_HOST_RUNTIME = r"""
// Host versions of the CuPy pieces an ElementwiseKernel body sees: CArray, CIndexer, float16.
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#define FCGPU_HOST_STAND_IN 1
#define FC_MAXDIM %(maxdim)d

typedef _Float16 float16;

struct bfloat16 {
    uint16_t bits;
    bfloat16() : bits(0) {}
    bfloat16(float f) {
        uint32_t u; memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { bits = uint16_t((u >> 16) | 0x40u); return; }
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        bits = uint16_t(u >> 16);
    }
    bfloat16(double d) : bfloat16(float(d)) {}
    bfloat16(int v) : bfloat16(float(v)) {}
    operator float() const { uint32_t u = uint32_t(bits) << 16; float f; memcpy(&f, &u, 4); return f; }
};

typedef ptrdiff_t fc_index_t[FC_MAXDIM];

template <typename T> struct CArray {
    char* data_;
    int ndim_;
    ptrdiff_t size_;
    ptrdiff_t shape_[FC_MAXDIM];
    ptrdiff_t strides_[FC_MAXDIM];
    int* oob_;
    T dummy_;

    // Element at the loop's multi-index (non-raw arguments), through the strides.
    T& operator[](const fc_index_t& idx) const {
        char* p = data_;
        for (int d = 0; d < ndim_; ++d) p += idx[d] * strides_[d];
        return *reinterpret_cast<T*>(p);
    }
    // Element at a flat C-order index (raw arguments); out-of-range reads are reported, not performed.
    T& operator[](ptrdiff_t i) const {
        if (i < 0 || i >= size_) { *oob_ = 1; return const_cast<T&>(dummy_); }
        char* p = data_;
        for (int d = ndim_ - 1; d >= 0; --d) {
            p += (i %% shape_[d]) * strides_[d];
            i /= shape_[d];
        }
        return *reinterpret_cast<T*>(p);
    }
    ptrdiff_t size() const { return size_; }
    int ndim() const { return ndim_; }
    const ptrdiff_t* shape() const { return shape_; }
    const ptrdiff_t* strides() const { return strides_; }
    T* data() const { return reinterpret_cast<T*>(data_); }
};

struct CIndexer {
    ptrdiff_t size_;
    int ndim_;
    ptrdiff_t shape_[FC_MAXDIM];
    fc_index_t index_;
    void set(ptrdiff_t i) {
        for (int d = ndim_ - 1; d >= 0; --d) {
            index_[d] = i %% shape_[d];
            i /= shape_[d];
        }
    }
    const fc_index_t& get() const { return index_; }
    ptrdiff_t size() const { return size_; }
    int ndim() const { return ndim_; }
};

template <typename T> static CArray<T> fc_make_array(void* data, const long long*& m, int* oob) {
    CArray<T> a;
    a.data_ = static_cast<char*>(data);
    a.ndim_ = int(*m++);
    a.size_ = 1;
    for (int d = 0; d < a.ndim_; ++d) { a.shape_[d] = ptrdiff_t(*m++); a.size_ *= a.shape_[d]; }
    for (int d = 0; d < a.ndim_; ++d) a.strides_[d] = ptrdiff_t(*m++);
    a.oob_ = oob;
    a.dummy_ = T();
    return a;
}
"""


def host_kernel_source(
    params: Sequence[ParameterInfo],
    kinds: Sequence[str],
    type_map: Sequence[tuple[str, np.dtype]],
    operation: str,
    preamble: str,
) -> str:
    """C++ for the host: CuPy's kernel layout (typedefs, preamble, per-element references, operation) in a loop.

    ``kinds`` has one letter per parameter: 'a' a broadcast array, 'r' a raw array, 's' a scalar.
    """
    lines = [_HOST_RUNTIME % {"maxdim": _MAXDIM}]
    lines += [f"typedef {_HOST_CTYPES[np.dtype(t)]} {name};" for name, t in type_map]
    lines.append(preamble)
    lines.append('extern "C" int fcgpu_host_kernel(void* const* fc_args, const long long* fc_meta) {')
    lines.append("    int fc_oob = 0;")
    lines.append("    const long long* fc_m = fc_meta;")
    lines.append("    CIndexer _ind;")
    lines.append("    _ind.ndim_ = int(*fc_m++);")
    lines.append("    _ind.size_ = 1;")
    lines.append("    for (int d = 0; d < _ind.ndim_; ++d) { _ind.shape_[d] = ptrdiff_t(*fc_m++); _ind.size_ *= _ind.shape_[d]; }")
    refs = []
    for k, (p, kind) in enumerate(zip(params, kinds)):
        const = "const " if p.is_const else ""
        if kind == "s":
            lines.append(f"    {const}{p.ctype} {p.name} = *static_cast<const {p.ctype}*>(fc_args[{k}]);")
        else:
            var = p.name if kind == "r" else f"_raw_{p.name}"
            lines.append(f"    {const}CArray<{p.ctype}> {var} = fc_make_array<{p.ctype}>(fc_args[{k}], fc_m, &fc_oob);")
            if kind == "a":
                refs.append(f"        {const}{p.ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
    lines.append("    for (ptrdiff_t i = 0; i < _ind.size(); ++i) {")
    lines.append("        _ind.set(i);")
    lines += refs
    lines.append(f"        {operation};")
    lines.append("    }")
    lines.append("    return fc_oob;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _launch(fn: Callable, name: str, params: Sequence[ParameterInfo], args: Sequence[Any], shape: tuple[int, ...]) -> None:
    meta: list[int] = [len(shape), *shape]
    ptrs = (ctypes.c_void_p * len(args))()
    keep = []
    for k, (p, a) in enumerate(zip(params, args)):
        if isinstance(a, ndarray):
            view = a.view(np.ndarray) if p.raw else np.broadcast_to(a.view(np.ndarray), shape)
            meta += [view.ndim, *view.shape, *view.strides]
            ptrs[k] = view.__array_interface__["data"][0]
        else:
            keep.append(a)
            ptrs[k] = a.__array_interface__["data"][0]
    meta_arr = np.asarray(meta, dtype=np.int64)
    status = fn(ptrs, meta_arr.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong)))
    if status:
        raise IndexError(f"fake_cupy: kernel {name!r} indexed a raw array out of its bounds")


# -- compilation ------------------------------------------------------------------------------

_CXX_FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-w"]
_lock = threading.Lock()
_loaded: dict[str, Callable] = {}


class HostCompileError(RuntimeError):
    """The host C++ compiler rejected a kernel; the message holds the compiler's output and the source."""


def cache_dir() -> Path:
    """Where compiled host kernels are kept: $FCGPU_CACHE_DIR, else $XDG_CACHE_HOME/fcgpu, else ~/.cache/fcgpu."""
    explicit = os.environ.get("FCGPU_CACHE_DIR")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "fcgpu"
    path = root / "host-kernels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
        probe.close()
    except OSError:
        path = Path(tempfile.gettempdir()) / f"fcgpu-host-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"
        path.mkdir(parents=True, exist_ok=True)
    return path


def host_compiler() -> str:
    """The C++ compiler used for host kernels: $CXX, else g++, else c++."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise HostCompileError(
        "fake_cupy runs kernels by compiling them for the host, but no C++ compiler was found "
        "(set CXX or install g++)"
    )


def compile_host_library(source: str) -> Path:
    """A shared library built from ``source``, cached by the hash of source, compiler and flags."""
    cxx = host_compiler()
    digest = hashlib.sha256("\0".join([source, cxx, *_CXX_FLAGS]).encode()).hexdigest()[:32]
    directory = cache_dir()
    lib = directory / f"k{digest}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(source)
        out = Path(tmp) / "kernel.so"
        proc = subprocess.run([cxx, *_CXX_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            numbered = "\n".join(f"{n + 1:4d}  {line}" for n, line in enumerate(source.splitlines()))
            raise HostCompileError(
                f"the host compiler ({cxx}) rejected a kernel:\n{proc.stderr.strip()}\n--- source ---\n{numbered}"
            )
        os.replace(out, lib)  # atomic: concurrent processes see either nothing or a whole library
    return lib


def precompile(calls: Iterable[KernelCall], workers: int = 2) -> int:
    """Build the host libraries for recorded kernel calls in parallel (g++ runs as separate processes).

    Calls then find their library in the cache instead of compiling one after another; returns how
    many distinct libraries were needed.
    """
    from concurrent.futures import ThreadPoolExecutor

    sources: dict[str, str] = {}
    for c in calls:
        k = ElementwiseKernel(c.in_params, c.out_params, c.operation, c.name, preamble=c.preamble)
        nin = k.nin
        dts = [np.dtype(d) if d != "bfloat16" else _BFLOAT16 for d in c.dtypes]
        in_dtypes = tuple(dt if kind != "s" else None for kind, dt in zip(c.kinds[:nin], dts[:nin]))
        _, _, type_map = _decide_params_type(k.in_params, k.out_params, in_dtypes, tuple(dts[nin:]))
        src = host_kernel_source(k.params, c.kinds, type_map, k.operation, k.preamble)
        sources[hashlib.sha256(src.encode()).hexdigest()] = src
    with ThreadPoolExecutor(builtins.max(1, workers)) as pool:
        list(pool.map(compile_host_library, sources.values()))
    return len(sources)


def _load(source: str, name: str) -> Callable:
    key = hashlib.sha256(source.encode()).hexdigest()
    with _lock:
        fn = _loaded.get(key)
        if fn is None:
            try:
                lib = ctypes.CDLL(str(compile_host_library(source)))
            except HostCompileError as e:
                raise HostCompileError(f"kernel {name!r}: {e}") from None
            fn = lib.fcgpu_host_kernel
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_longlong)]
            fn.restype = ctypes.c_int
            _loaded[key] = fn
    return fn
