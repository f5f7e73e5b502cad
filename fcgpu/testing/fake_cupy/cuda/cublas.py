"""The stand-in's ``cupy.cuda.cublas``: the part of cuBLAS's CuPy binding that fcgpu calls.

``gemmEx`` runs on the host memory behind the stand-in's arrays, reading the column-major operands
at the addresses, leading dimensions and CUDA data types it is given, as cuBLAS reads device
memory: inputs widened to float32 and multiplied in float32 (``CUBLAS_COMPUTE_32F``, the only
compute type here), the result rounded once into C's type. One call counts as one 'gemm'.
Constants are CuPy 14.2's (``cupy_backends/cuda/libs/cublas.pyx``).
"""
from __future__ import annotations as _annotations

import ctypes as _ctypes

import numpy as _np

from .. import capture as _capture
from ..counting import counted as _counted

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1
CUBLAS_COMPUTE_32F = 68
CUBLAS_GEMM_DEFAULT = -1

_modes: dict[int, int] = {}


def _dtype(cuda_type: int) -> _np.dtype:
    if cuda_type == 14:  # CUDA_R_16BF
        import ml_dtypes

        return _np.dtype(ml_dtypes.bfloat16)
    types = {0: _np.float32, 1: _np.float64, 2: _np.float16}  # CUDA_R_32F, CUDA_R_64F, CUDA_R_16F
    if cuda_type not in types:
        raise ValueError(f"CUBLAS_STATUS_NOT_SUPPORTED: data type {cuda_type}")
    return _np.dtype(types[cuda_type])


def _matrix(address: int, cuda_type: int, rows: int, cols: int, ld: int) -> _np.ndarray:
    """The column-major (rows, cols) matrix with leading dimension ``ld`` at ``address``."""
    dtype = _dtype(cuda_type)
    if ld < max(1, rows):
        raise ValueError(f"CUBLAS_STATUS_INVALID_VALUE: leading dimension {ld} < {rows} rows")
    if rows == 0 or cols == 0:
        return _np.zeros((rows, cols), dtype)
    nbytes = ((cols - 1) * ld + rows) * dtype.itemsize
    raw = (_ctypes.c_char * nbytes).from_address(address)
    return _np.ndarray((rows, cols), dtype, buffer=raw, strides=(dtype.itemsize, ld * dtype.itemsize))


def getPointerMode(handle: int) -> int:  # noqa: N802 - cuBLAS's names
    return _modes.get(handle, CUBLAS_POINTER_MODE_HOST)


def setPointerMode(handle: int, mode: int) -> None:  # noqa: N802
    _modes[handle] = mode


def gemmEx(  # noqa: N802, PLR0913 - cuBLAS's signature
    handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, A: int, Atype: int, lda: int,  # noqa: N803
    B: int, Btype: int, ldb: int, beta: int, C: int, Ctype: int, ldc: int, computeType: int, algo: int,  # noqa: N803
) -> None:
    """C (m, n) = alpha op(A) op(B) + beta C, column-major, alpha and beta float32 at host addresses."""
    if _capture.active() is not None:  # CuPy's cublas.setStream, called by every cuBLAS wrapper, refuses
        raise _capture.refuse("gemm", "cublasGemmEx")
    if computeType != CUBLAS_COMPUTE_32F or getPointerMode(handle) != CUBLAS_POINTER_MODE_HOST:
        raise NotImplementedError("the stand-in's gemmEx: float32 compute, host pointer mode only")
    a = _matrix(A, Atype, *((m, k) if transa == CUBLAS_OP_N else (k, m)), lda)
    b = _matrix(B, Btype, *((k, n) if transb == CUBLAS_OP_N else (n, k)), ldb)
    c = _matrix(C, Ctype, m, n, ldc)
    scale = [float(_ctypes.c_float.from_address(p).value) for p in (alpha, beta)]
    with _counted("gemm", "cublasGemmEx"):
        a32 = a.astype(_np.float32) if transa == CUBLAS_OP_N else a.T.astype(_np.float32)
        b32 = b.astype(_np.float32) if transb == CUBLAS_OP_N else b.T.astype(_np.float32)
        result = _np.float32(scale[0]) * (a32 @ b32)
        if scale[1] != 0.0:
            result += _np.float32(scale[1]) * c.astype(_np.float32)
        c[...] = result.astype(c.dtype)
