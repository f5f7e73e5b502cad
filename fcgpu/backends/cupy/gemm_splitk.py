"""Split-K weight gradient of the own GEMMs: ``dW = x.T @ dz`` and ``db = dz.sum(0)`` with the batch cut into slices.

At a large batch and narrow widths the plain weight-gradient kernel has few output tiles (B=4096,
M=784, N=10: 13 blocks of 64 x 64 on a 132-SM GPU, each looping over 4096 rows). Here the batch
(B rows) is cut into S slices of R rows; block ``s * tiles + t`` computes tile t of slice s's partial
dW (and, in the first tile row, its partial db) in float32 into a workspace, and a reduce kernel
then sums the S partials of every element in slice order 0, 1, ..., S-1 (deterministic, no
atomics) into dW and db, of the operands' type or float32 as the plain kernel writes them. Two
launches, nothing allocated: the workspace is an array the caller allocates once (outside a
captured graph), 1-D float32 of at least ``splitk_workspace_shape(B, M, N)[0]`` elements: the
partial dW (S, M, N) first, then the partial db (S, N). One workspace may serve several layers
(sized for the largest). With S = 1 the result is bit-identical to the plain kernel's; with S > 1
the sums run in another order, so the low bits differ.

The rule for S (``splitk_plan``): aim at ``TARGET_BLOCKS`` = 2 x 132 blocks (two waves of an
H100's SMs), S = min(MAX_SLICES, ceil(TARGET_BLOCKS / tiles), B // MIN_SLICE_ROWS), at least 1;
R = ceil(B / S) rounded up to a multiple of ``ROW_STEP`` (32, the tensor-core kernels' k step and
twice the float32 one), and S = ceil(B / R) again.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .gemm_args import BLOCK_THREADS, DTYPES, check_apart, check_array, check_weight_grad, grid_blocks, operand_dtype

__all__ = [
    "MAX_SLICES",
    "MIN_SLICE_ROWS",
    "REDUCE_THREADS",
    "ROW_STEP",
    "TARGET_BLOCKS",
    "splitk_kernel_names",
    "splitk_plan",
    "splitk_workspace_shape",
    "weight_grad_splitk",
]

TARGET_BLOCKS = 2 * 132  # two waves of an H100's 132 SMs
MAX_SLICES = 32
MIN_SLICE_ROWS = 128  # a slice shorter than this would spend more on its partial's store than on its sums
ROW_STEP = 32  # slices are multiples of this many rows (but the last)
REDUCE_THREADS = 256  # kernels/gemm.cuh: FC_GEMM_REDUCE_THREADS


def splitk_plan(batch: int, m: int, n: int, slices: int | None = None) -> tuple[int, int]:
    """(S, R): the slice count and rows a slice (the last one may be shorter) of dW (m, n) over
    ``batch`` rows. ``slices`` given: R = ceil(batch / slices) and S = ceil(batch / R) (at most
    ``slices``), else the rule of the module's docstring. (1, batch) for an empty batch."""
    batch, m, n = int(batch), int(m), int(n)
    if min(batch, m, n) < 0:
        raise ValueError(f"own GEMM split-K: sizes must be >= 0, got batch={batch}, m={m}, n={n}")
    if batch == 0:
        return 1, 0
    if slices is not None:
        if int(slices) < 1:
            raise ValueError(f"own GEMM split-K: slices must be >= 1, got {slices}")
        rows = -(-batch // min(int(slices), batch))
    else:
        tiles = max(1, grid_blocks(m, n))
        s = max(1, min(MAX_SLICES, -(-TARGET_BLOCKS // tiles), batch // MIN_SLICE_ROWS))
        rows = -(-(-(-batch // s)) // ROW_STEP) * ROW_STEP
    return -(-batch // rows), rows


def splitk_workspace_shape(batch: int, m: int, n: int, slices: int | None = None) -> tuple[int]:
    """The shape (S (m n + n),) of the float32 workspace ``weight_grad_splitk`` needs for x (batch, m)
    and dz (batch, n): S partial dW (m, n), then S partial db (n,)."""
    s, _ = splitk_plan(batch, m, n, slices)
    return (s * (int(m) * int(n) + int(n)),)


def splitk_kernel_names(dtype: Any) -> tuple[str, ...]:
    """The split-K kernels of ``dtype``'s module: the partials, the reduce (and, for 16-bit operands,
    the reduce into float32)."""
    dt = operand_dtype(dtype)
    s = DTYPES[dt][0]
    extra = () if dt == np.float32 else (f"fcgpu_gemm_dw_reduce{s}_f32",)
    return (f"fcgpu_gemm_dw_splitk{s}", f"fcgpu_gemm_dw_reduce{s}", *extra)


def weight_grad_splitk(launcher: Any, x: Any, dz: Any, dW: Any, db: Any | None, workspace: Any,
                       slices: int | None = None) -> Any:
    """dW (M, N) = x (B, M).T @ dz (B, N) and db (N,) = dz.sum(0) when given, through the float32
    ``workspace`` (1-D, at least ``splitk_workspace_shape(B, M, N, slices)[0]`` elements): two
    launches of ``launcher`` (a ``gemm.GemmLauncher``), the partials then their reduce. ``slices``
    forces S (see ``splitk_plan``); dW and db may be float32 for 16-bit operands. Returns dW."""
    dt, ot, batch, m, n = check_weight_grad(x, dz, dW, db)
    s, rows = splitk_plan(batch, m, n, slices)
    need = splitk_workspace_shape(batch, m, n, slices)[0]
    check_array("workspace", workspace, 1, dtypes=(np.dtype(np.float32),))
    if workspace.size < need:
        raise ValueError(f"own GEMM: workspace must have at least {need} elements (splitk_workspace_shape"
                         f"({batch}, {m}, {n})), got {workspace.size}")
    check_apart({"dW": dW, "db": db, "workspace": workspace}, {"x": x, "dz": dz})
    if batch == 0 or m == 0 or n == 0:  # no tile to launch over, or nothing summed: as the plain kernel
        return launcher.weight_grad(x, dz, dW, db)
    i32, suffix = np.int32, DTYPES[dt][0]
    launcher.kernel(f"fcgpu_gemm_dw_splitk{suffix}", dt)(
        (grid_blocks(m, n) * s,), (BLOCK_THREADS[dt],),
        (x, dz, workspace, i32(batch), i32(m), i32(n), i32(db is not None), i32(rows)), shared_mem=0)
    total = m * n + (n if db is not None else 0)
    name = f"fcgpu_gemm_dw_reduce{suffix}" + ("_f32" if ot != dt else "")
    launcher.kernel(name, dt)((-(-total // REDUCE_THREADS),), (REDUCE_THREADS,),
                              (workspace, dW, dW if db is None else db, i32(s), i32(m), i32(n), i32(db is not None)),
                              shared_mem=0)
    return dW
