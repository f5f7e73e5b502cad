"""The own GEMMs' shared definitions (``gemm.py`` and ``gemm_splitk.py``): dtypes, tile, block sizes, argument checks.

Every array of a launch is checked here before it goes to a kernel: its dtype (one of ``DTYPES``),
dimensions, shape, C-contiguity and int32 dimensions, and that no output overlaps an input or
another output (blocks read inputs while others write). Errors name the argument, what was
expected and what was given.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BLOCK_THREADS", "DTYPES", "INT32_MAX", "TILE", "check_apart", "check_array", "check_weight_grad", "grid_blocks",
           "operand_dtype"]

TILE = 64  # kernels/gemm.cuh: FC_GEMM_TILE, the rows and columns of C a block computes
INT32_MAX = 2**31 - 1

try:  # bfloat16 exists in NumPy (and CuPy) only through ml_dtypes
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: tuple = ((np.dtype(_ml_dtypes.bfloat16), ("_bf16", "fc_bf16")),)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency of the verify extra
    _BFLOAT16 = ()
# dtype -> (kernel name suffix, C type); float32 has no suffix.
DTYPES: dict[np.dtype, tuple[str, str]] = {
    np.dtype(np.float32): ("", "float"),
    np.dtype(np.float16): ("_f16", "fc_half"),
    **dict(_BFLOAT16),
}
BLOCK_THREADS = {dt: (256 if dt == np.float32 else 128) for dt in DTYPES}  # FC_GEMM_THREADS, FC_WMMA_THREADS


def operand_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype, after checking the own GEMMs take it (float32, float16, bfloat16)."""
    dt = np.dtype(dtype)
    if dt not in DTYPES:
        raise TypeError(f"own GEMM: float32, float16 or bfloat16, got {dt}")
    return dt


def grid_blocks(rows: int, cols: int) -> int:
    """Blocks of a launch whose output is (rows, cols): one per 64 x 64 tile."""
    return -(-int(rows) // TILE) * -(-int(cols) // TILE)


def _pointer_range(a: Any) -> tuple[int, int]:
    start = int(a.__cuda_array_interface__["data"][0])
    return start, start + int(a.nbytes)


def check_array(name: str, a: Any, ndim: int, shape: tuple[int, ...] | None = None, dtypes: tuple = ()) -> np.dtype:
    """``a``'s dtype, after checking it is one of ``dtypes`` (any own-GEMM dtype when empty), its
    dimensions, shape and C-contiguity."""
    if a is None:
        raise TypeError(f"own GEMM: {name} is required")
    dt = np.dtype(a.dtype)
    if dtypes and dt not in dtypes:
        raise TypeError(f"own GEMM: {name} must be {' or '.join(str(d) for d in dtypes)}, got {dt}")
    if not dtypes:
        operand_dtype(dt)
    if a.ndim != ndim:
        raise ValueError(f"own GEMM: {name} must be {ndim}-D, got shape {tuple(a.shape)}")
    if shape is not None and tuple(a.shape) != shape:
        raise ValueError(f"own GEMM: {name} must have shape {shape}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"own GEMM: {name} must be C-contiguous")
    if any(d > INT32_MAX for d in a.shape):
        raise ValueError(f"own GEMM: {name}'s dimensions must fit in int32, got {tuple(a.shape)}")
    return dt


def check_apart(outputs: dict[str, Any], inputs: dict[str, Any], in_place: tuple[str, str] | None = None) -> None:
    """No output overlaps an input or another output: blocks read inputs while others write. The
    pair ``in_place`` may be the very same array (each element read and then written by one thread)."""
    items = [(n, a) for n, a in {**inputs, **outputs}.items() if a is not None and a.size]
    for i, (n1, a1) in enumerate(items):
        for n2, a2 in items[i + 1:]:
            if n1 not in outputs and n2 not in outputs:
                continue
            s1, e1 = _pointer_range(a1)
            s2, e2 = _pointer_range(a2)
            if in_place and {n1, n2} == set(in_place) and (s1, e1) == (s2, e2):
                continue
            if s1 < e2 and s2 < e1:
                raise ValueError(f"own GEMM: {n1} and {n2} overlap in memory")


def check_weight_grad(x: Any, dz: Any, dW: Any, db: Any | None) -> tuple[np.dtype, np.dtype, int, int, int]:
    """(operand dtype, dW's dtype, B, M, N) of a weight gradient dW (M, N) = x (B, M).T @ dz (B, N)
    with db (N,) or None, checked: one operand dtype, dW and db of it or (16-bit operands) float32."""
    dt = check_array("x", x, 2)
    check_array("dz", dz, 2, dtypes=(dt,))
    batch, m = x.shape
    if dz.shape[0] != batch:
        raise ValueError(f"own GEMM: x {tuple(x.shape)} and dz {tuple(dz.shape)} have different batches")
    n = dz.shape[1]
    outs = (dt,) if dt == np.float32 else (dt, np.dtype(np.float32))
    ot = check_array("dW", dW, 2, (m, n), outs)
    if db is not None:
        check_array("db", db, 1, (n,), (ot,))
    return dt, ot, batch, m, n
