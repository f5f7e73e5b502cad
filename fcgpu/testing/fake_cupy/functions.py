"""The stand-in's module functions: what ``cupy.<name>`` is for the names fcgpu uses.

Part of ``fcgpu.testing.fake_cupy``, whose ``__init__`` re-exports every name here. Dtypes and
constants are NumPy's; functions take and return stand-in arrays; ``forward_numpy`` serves any
other NumPy function through the package's module ``__getattr__``.
"""
from __future__ import annotations

import sys
import types
from typing import Any, Callable

import numpy as np

from .arrays import device_function, mixed_error, ndarray
from . import capture
from .counting import counted
from .cupy_names import CUPY_NUMPY_NAMES

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
    with counted("to_device", "asarray"):
        return np.array(a, dtype=dtype, order=order or "K", copy=True).view(ndarray)


class _HostDLPack:
    """A stand-in "device" DLPack array seen as the host array it is (the stand-in's device memory
    is host memory), so NumPy can import it without a copy."""

    def __init__(self, x: Any) -> None:
        self._x = x

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._x.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def from_dlpack(x: Any) -> ndarray:
    """A device array sharing ``x``'s memory (no copy), as cupy.from_dlpack: ``x`` must report a CUDA
    device (DLPack device type 2); CuPy refuses host arrays here too."""
    device = x.__dlpack_device__()
    if int(device[0]) != 2:
        raise TypeError(f"cupy.from_dlpack: expected a CUDA array (DLPack device type 2), got device {tuple(device)}")
    return np.from_dlpack(_HostDLPack(x)).view(ndarray)


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", ndmin: int = 0) -> ndarray:
    if isinstance(obj, ndarray):
        obj = obj.view(np.ndarray)
        copies = copy or (dtype is not None and np.dtype(dtype) != obj.dtype)
        kind = "copy" if copies else None
    else:
        copy, kind = True, "to_device"  # host data always moves
    if kind is None:
        return np.array(obj, dtype=dtype, copy=copy, order=order, ndmin=ndmin).view(ndarray)
    with counted(kind, "array"):
        return np.array(obj, dtype=dtype, copy=copy, order=order, ndmin=ndmin).view(ndarray)


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise mixed_error("cupy.ascontiguousarray", a) if isinstance(a, np.ndarray) else TypeError(
            f"Unsupported type {type(a)}"
        )
    host = a.view(np.ndarray)
    if host.flags.c_contiguous and (dtype is None or np.dtype(dtype) == host.dtype):
        return a
    with counted("copy", "ascontiguousarray"):
        return np.ascontiguousarray(host, dtype=dtype).view(ndarray)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: np.ndarray | None = None) -> np.ndarray:
    """A host ``numpy.ndarray``: a copy of a stand-in array, or ``numpy.asarray`` of anything else."""
    if isinstance(a, ndarray):
        with counted("to_host", "asnumpy"):
            return a.get(order=order, out=out)
    if out is not None:
        np.copyto(out, a)
        return out
    return np.asarray(a, order=order)


def get_array_module(*args: Any) -> types.ModuleType:
    """The stand-in module if any argument is a stand-in array, else NumPy (as ``cupy.get_array_module``)."""
    for a in args:
        if isinstance(a, ndarray):
            return sys.modules[__package__]
    return np


def _creation(func: Callable) -> Callable:
    fills = func is not np.empty  # every creation function but empty writes the new array

    def wrapper(*args: Any, **kwargs: Any) -> ndarray:
        if capture.active() is not None:
            raise capture.refuse("alloc", f"cupy.{func.__name__}")
        if not fills:
            return func(*args, **kwargs).view(ndarray)
        with counted("fill", func.__name__):
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
empty_like = device_function(np.empty_like)
zeros_like = device_function(np.zeros_like)
ones_like = device_function(np.ones_like)
full_like = device_function(np.full_like)

_gemm = device_function(np.matmul)


def matmul(a: Any, b: Any, out: Any = None, **kwargs: Any) -> Any:
    """``cupy.matmul``: CuPy 14.2 (``_core/_routines_linalg.pyx``, ``matmul``: ``ret_dtype =
    numpy.promote_types(a.dtype, b.dtype)``; unless ``out`` is C-contiguous of that dtype, ``dot``
    into a temporary, then ``elementwise_copy`` into ``out``) computes the product in the inputs'
    promoted dtype: half inputs with a float32 ``out`` give a half product, copied (one more kernel).
    ml_dtypes' bfloat16 matmul answers in float32; CuPy's in bfloat16, so the product is rounded."""
    promoted = np.promote_types(a.dtype, b.dtype)
    if out is not None and out.dtype == promoted and out.flags.c_contiguous:
        return _gemm(a, b, out=out, **kwargs)
    product = _gemm(a, b, **kwargs)
    if product.dtype != promoted:
        product = product.view(np.ndarray).astype(promoted).view(ndarray)
    if out is None:
        return product
    globals()["copyto"](out, product, casting="unsafe")
    return out


dot = device_function(np.dot)


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
sum = device_function(_sum_half_in_float)  # noqa: A001 - mirrors cupy.sum
max = device_function(np.max)  # noqa: A001
min = device_function(np.min)  # noqa: A001
amax = device_function(np.amax)
amin = device_function(np.amin)
mean = device_function(np.mean)
exp = device_function(np.exp)
log = device_function(np.log)
log1p = device_function(np.log1p)
sqrt = device_function(np.sqrt)
tanh = device_function(np.tanh)
abs = device_function(np.abs)  # noqa: A001
maximum = device_function(np.maximum)
minimum = device_function(np.minimum)
where = device_function(np.where)
isfinite = device_function(np.isfinite)
isnan = device_function(np.isnan)
clip = device_function(np.clip)
copyto = device_function(np.copyto)
argmax = device_function(np.argmax)
concatenate = device_function(np.concatenate)
stack = device_function(np.stack)
allclose = device_function(np.allclose)
array_equal = device_function(np.array_equal)


def _count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> Any:
    # cupy.count_nonzero returns a 0-d device array where NumPy returns a Python int.
    return np.asarray(np.count_nonzero(a, axis=axis, keepdims=keepdims))


_count_nonzero.__name__ = "count_nonzero"
count_nonzero = device_function(_count_nonzero)

_NOT_MIRRORED = {"random", "linalg", "fft", "testing", "ma", "lib", "polynomial", "char", "rec", "ctypeslib"}
_CUPY_ONLY = {"ReductionKernel", "RawKernel", "RawModule", "fuse", "memoize", "get_default_memory_pool", "cuda_stream"}


def forward_numpy(name: str, namespace: dict[str, Any]) -> Any:
    """``cupy.<name>`` for a name not defined here: NumPy's function on stand-in arrays, or NumPy's type or constant.

    A wrapped function is stored in ``namespace`` (the stand-in module's), so the next lookup finds
    it there; names CuPy has but the stand-in lacks raise ``AttributeError`` saying so.
    """
    if name in _CUPY_ONLY:
        raise AttributeError(f"cupy.{name} is not provided by fcgpu's host stand-in for CuPy (see fake_cupy's docstring)")
    if name.startswith("__") or name in _NOT_MIRRORED:
        raise AttributeError(f"module 'fake_cupy' has no attribute {name!r} (not part of the stand-in)")
    if name not in CUPY_NUMPY_NAMES:  # NumPy has it, CuPy 14.2 does not: neither does the stand-in
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (NumPy has it, CuPy 14.2 does not)")
    try:
        value = getattr(np, name)
    except AttributeError:
        raise AttributeError(f"module 'fake_cupy' has no attribute {name!r}") from None
    if isinstance(value, (type, np.dtype, int, float, str)):
        return value
    if isinstance(value, np.ufunc) or callable(value):
        wrapped = device_function(value)
        namespace[name] = wrapped
        return wrapped
    raise AttributeError(f"module 'fake_cupy' has no attribute {name!r} (not part of the stand-in)")

