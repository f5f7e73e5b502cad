"""A host stand-in for the part of CuPy that fcgpu uses, so the CuPy backend's own code runs without a GPU.

``fcgpu.backends.cupy.backend.CupyBackend(fake_cupy)`` runs unchanged against this module:

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
- ``count_device_ops()`` counts, inside a ``with`` block, the device operations a GPU would launch
  (kernels, GEMMs, ufuncs, reductions, fills, copies, gathers) and the host<->device transfers.

What it does NOT reproduce (checked elsewhere or only on a real GPU):

- GPU rounding: CuPy compiles with ``-ftz=true`` (float32 denormals flush to zero), NVCC fuses
  multiply-adds, and device ``expf``/``tanhf``/``log1pf`` differ from glibc by a few ulp. The host
  build keeps denormals, uses ``-ffp-contract=off`` and glibc's math.
- float16 is GCC's ``_Float16`` and bfloat16 a small host struct, not CUDA's ``__half`` /
  ``__nv_bfloat16`` or CuPy's ``float16`` class: code that compiles here can still fail to compile
  for the device (the NVRTC compile gate in ``support.cuda_compile`` covers that).
- Concurrency: the loop is sequential, so data races, ``atomicAdd`` and block/warp behaviour are
  invisible; CUDA built-ins (``threadIdx``, ``__syncthreads``, ``__ldg``, ...) do not exist. The
  block-level kernels (``kernels/blocks.cuh``: warp-per-row softmax, block-reduced loss sums) run
  their sequential equivalent here; their block code runs in the repository's block emulator
  (``tests/support/block_emulator``) and on the GPU.
- cuBLAS: ``cuda.cublas.gemmEx`` (the mixed-precision weight gradient) multiplies on the host
  in float32; ``cupy.matmul(out=)`` follows CuPy's rule (the product in the inputs' promoted type,
  then a copy into ``out`` of another type).
- Streams' ordering (all runs in order), events, asynchronous execution, the memory pool, peer
  access; several devices (``FCGPU_FAKE_CUPY_DEVICES``) are all the host, told apart only by the
  current-device number.
- NCCL's own algorithms: ``cuda.nccl`` (``fcgpu.testing.fake_nccl``; a submodule, imported as
  ``from cupy.cuda import nccl`` imports CuPy's) runs its collectives over
  MPI on the host buffers behind the device arrays.
- CUDA graph updates, child graphs and capture modes (capture itself is modelled: ``capture``).
- ``ReductionKernel``, ``RawKernel``, ``RawModule``, ``cupy.fuse`` and ``cupyx`` are absent.
- ``isinstance(x, numpy.ndarray)`` is true for a stand-in array, and ``numpy.asarray(x)``
  silently returns a host view where CuPy raises ``TypeError``; code that type-checks against the
  real ``cupy.ndarray`` class does not recognise these arrays.
- Full reductions return 0-d arrays as in CuPy, but Python operators on 0-d arrays follow NumPy.
- Kernel compilation errors come from g++, not NVRTC, and are raised on the first call with
  each new type combination (as CuPy does), not at construction.

The package, by concern (every public name is re-exported here; this module's ``__getattr__``
forwards any other NumPy name as ``functions.forward_numpy`` describes):

- ``arrays``: ``ndarray`` and the routing of NumPy calls on it; ``functions``: the module
  functions; ``device`` and ``cuda``: ``cuda`` (runtime, Device, the null stream; the submodule ``cuda.nccl`` is ``fcgpu.testing.fake_nccl``).
- ``kernel``: ``ElementwiseKernel`` and ``precompile``; ``params``: parameter parsing and type
  resolution; ``host_source``: the host C++ (``host_runtime.h`` and the generated loop) and the
  launch; ``host_library``: compiler, cache and loading; ``recording``: ``KernelCall`` and
  ``record_kernel_calls``, shared with the compile gate; ``counting``: ``count_device_ops``, every
  device operation and host<->device transfer counted as a GPU would launch it.
"""
from __future__ import annotations

from typing import Any as _Any

from .arrays import ndarray
from . import cuda
from .device import DEVICE_NAME
from .functions import forward_numpy as _forward_numpy
from .functions import (
    abs, allclose, amax, amin, arange, argmax, array, array_equal, asarray, ascontiguousarray, asnumpy, bool_,
    clip, concatenate, copyto, count_nonzero, dot, dtype, e, empty, empty_like, exp, eye, float16, float32,
    float64, from_dlpack, full, full_like, get_array_module, inf, int8, int16, int32, int64, isfinite, isnan,
    linspace, log, log1p, matmul, max, maximum, mean, min, minimum, nan, newaxis, ones, ones_like, pi, sqrt,
    stack, sum, tanh, uint8, uint16, uint32, uint64, where, zeros, zeros_like,
)
from .counting import TRANSFER_KINDS, DeviceOps, OpCounts, count_device_ops
from .host_library import HostCompileError, cache_dir, compile_host_library, host_compiler
from .host_source import host_kernel_source
from .kernel import ElementwiseKernel, precompile
from .params import ParameterInfo
from .recording import KernelCall, record_kernel_calls

# Names of the stand-in's own tooling, which CuPy does not have (every other public name here is
# CuPy's, at the same path: tests/testing/test_real_cupy.py checks it against the real module).
STAND_IN_TOOLS = frozenset({
    "API_VERSION", "DEVICE_NAME", "DeviceOps", "HostCompileError", "KernelCall", "OpCounts", "ParameterInfo",
    "STAND_IN_TOOLS", "TRANSFER_KINDS", "cache_dir", "compile_host_library", "count_device_ops", "host_compiler",
    "host_kernel_source", "precompile", "record_kernel_calls",  # then its submodules:
    "arrays", "capture", "counting", "cupy_names", "device", "functions", "host_library", "host_source", "kernel",
    "params", "recording",
})

API_VERSION = "14.2.0"  # the CuPy release whose behaviour this module mirrors
__version__ = f"{API_VERSION}+host-stand-in"


def __getattr__(name: str) -> _Any:
    """Any other NumPy function, taking and returning stand-in arrays; NumPy types and constants as they are."""
    return _forward_numpy(name, globals())
