"""Launches fcgpu's own GEMM kernels (``kernels/gemm.cuh``) for Dense layers, as a CuPy ``RawModule``.

CuPy's cuBLAS wrappers refuse to run while a stream is being captured into a CUDA graph, so a
training step captured as one graph multiplies with these kernels instead: ``dense_forward``
(``y = act(x @ W + b)``, optionally keeping ``z = x @ W + b``), ``input_grad`` (``dx = dz @ W.T``,
optionally times the previous layer's activation derivative) and ``weight_grad`` (``dW = x.T @ dz``
and ``db = dz.sum(0)`` in one launch). Each call is exactly one kernel launch, allocates nothing and
reads no value back to the host, so it can be captured. The backend's default path keeps cuBLAS;
``CupyBackend.own_gemm`` is this launcher on the backend's CuPy module.

This module holds the dispatch (the module's source, grid and block, argument checks); the
arithmetic is in the headers. float32 runs on the CUDA cores (256 threads a block, FMA);
float16 and bfloat16 on tensor cores (``kernels/gemm_wmma.cuh``, 128 threads, float32
accumulation), with ``dW``/``db`` either of the operands' type or float32 (mixed precision's master
gradients). Every array of one call has one dtype (but that), is C-contiguous and 2-D (1-D for
``b``, ``db``), and no output may overlap an input. Row activations (softmax) are not fused: use
linear and the row kernel after.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import kernel_sources
from ...activations.table import ACTIVATIONS, get_activation

__all__ = [
    "BLOCK_THREADS",
    "COMPILE_OPTIONS",
    "DTYPES",
    "GEMM_HEADERS",
    "TILE",
    "WMMA_HEADER",
    "GemmLauncher",
    "fused_activations",
    "grid_blocks",
    "kernel_names",
    "module_code",
]

GEMM_HEADERS = ("common.cuh", "activations.cuh", "gemm.cuh")  # float32's; 16-bit types add gemm_wmma.cuh
WMMA_HEADER = "gemm_wmma.cuh"  # needs mma.h (and its crt/mma.h: the toolkit or the nvidia-cuda-crt wheel)
TILE = 64  # kernels/gemm.cuh: FC_GEMM_TILE, the rows and columns of C a block computes
COMPILE_OPTIONS = ("--std=c++17",)  # CuPy adds its include paths (mma.h, cuda_fp16.h) and -ftz=true
_INT32_MAX = 2**31 - 1

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


def fused_activations() -> tuple[str, ...]:
    """The activations the forward epilogue and the input gradient's derivative take (not row ones)."""
    return tuple(name for name, entry in ACTIVATIONS.items() if not entry.rows)


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in DTYPES:
        raise TypeError(f"own GEMM: float32, float16 or bfloat16, got {dt}")
    return dt


@functools.lru_cache(maxsize=None)
def module_code(dtype: Any = "float32") -> str:
    """The ``RawModule`` source of one operand dtype: the headers, then its kernels (each fused activation's)."""
    dt = _dtype(dtype)
    suffix, ctype = DTYPES[dt]
    lines = [kernel_sources.read(h) for h in GEMM_HEADERS + (() if dt == np.float32 else (WMMA_HEADER,))]
    for a in fused_activations():
        functor = ACTIVATIONS[a].kernel_functor
        if dt == np.float32:
            lines.append(f"FC_GEMM_ACTIVATION_KERNELS({a}, {functor})")
        else:
            lines.append(f"FC_GEMM_WMMA_ACTIVATION_KERNELS({a}, {functor}, {ctype}, {suffix[1:]})")
    lines.append("FC_GEMM_F32_KERNELS()" if dt == np.float32 else f"FC_GEMM_WMMA_KERNELS({ctype}, {suffix[1:]})")
    return "\n".join(lines) + "\n"


def kernel_names(dtype: Any = "float32") -> tuple[str, ...]:
    """Every kernel ``module_code(dtype)`` defines."""
    dt = _dtype(dtype)
    s, acts = DTYPES[dt][0], fused_activations()
    extra = () if dt == np.float32 else (f"fcgpu_gemm_dw{s}_f32",)
    return (*(f"fcgpu_gemm_fwd_{a}{s}" for a in acts), *(f"fcgpu_gemm_dx_{a}{s}" for a in acts), f"fcgpu_gemm_dx{s}",
            f"fcgpu_gemm_dw{s}", *extra)


def grid_blocks(rows: int, cols: int) -> int:
    """Blocks of a launch whose output is (rows, cols): one per 64 x 64 tile."""
    return -(-int(rows) // TILE) * -(-int(cols) // TILE)


def _pointer_range(a: Any) -> tuple[int, int]:
    start = int(a.__cuda_array_interface__["data"][0])
    return start, start + int(a.nbytes)


def _check(name: str, a: Any, ndim: int, shape: tuple[int, ...] | None = None, dtypes: tuple = ()) -> np.dtype:
    """``a``'s dtype, after checking it is one of ``dtypes`` (any own-GEMM dtype when empty), its
    dimensions, shape and C-contiguity."""
    if a is None:
        raise TypeError(f"own GEMM: {name} is required")
    dt = np.dtype(a.dtype)
    if dtypes and dt not in dtypes:
        raise TypeError(f"own GEMM: {name} must be {' or '.join(str(d) for d in dtypes)}, got {dt}")
    _dtype(dt)
    if a.ndim != ndim:
        raise ValueError(f"own GEMM: {name} must be {ndim}-D, got shape {tuple(a.shape)}")
    if shape is not None and tuple(a.shape) != shape:
        raise ValueError(f"own GEMM: {name} must have shape {shape}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"own GEMM: {name} must be C-contiguous")
    if any(d > _INT32_MAX for d in a.shape):
        raise ValueError(f"own GEMM: {name}'s dimensions must fit in int32, got {tuple(a.shape)}")
    return dt


def _check_apart(outputs: dict[str, Any], inputs: dict[str, Any], in_place: tuple[str, str] | None = None) -> None:
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


class GemmLauncher:
    """The own-GEMM kernels on CuPy module ``cp`` (real CuPy, or a stand-in with ``RawModule``)."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._modules: dict[np.dtype, Any] = {}
        self._kernels: dict[str, Any] = {}

    def module(self, dtype: Any = np.float32) -> Any:
        """The ``RawModule`` of operand ``dtype``, compiled on first use (once per launcher and dtype)."""
        dt = _dtype(dtype)
        m = self._modules.get(dt)
        if m is None:
            m = self._modules[dt] = self.cp.RawModule(code=module_code(dt), options=COMPILE_OPTIONS)
        return m

    def kernel(self, name: str, dtype: Any = np.float32) -> Any:
        """Kernel ``name`` of ``dtype``'s module (one of ``kernel_names(dtype)``)."""
        k = self._kernels.get(name)
        if k is None:
            if name not in kernel_names(dtype):
                raise KeyError(f"own GEMM: no kernel {name!r} for {np.dtype(dtype)}")
            k = self._kernels[name] = self.module(dtype).get_function(name)
        return k

    def _launch(self, kind: str, dt: np.dtype, rows: int, cols: int, args: tuple) -> None:
        blocks = grid_blocks(rows, cols)
        if blocks == 0:
            return
        name = f"fcgpu_gemm_{kind}"
        self.kernel(name, dt)((blocks,), (BLOCK_THREADS[dt],), args, shared_mem=0)

    @staticmethod
    def _fused(activation: Any, what: str) -> str:
        entry = get_activation(activation)
        if entry.rows:
            raise ValueError(f"own GEMM: {what} {entry.name!r} is a row activation, not fused into the GEMM; "
                             "use 'linear' and its row kernel after")
        return entry.name

    def dense_forward(self, x: Any, W: Any, b: Any | None, activation: Any, out: Any, z_out: Any | None = None) -> Any:
        """out (B, N) = act(x (B, M) @ W (M, N) + b (N,)); z_out (B, N) = x @ W + b too when given."""
        act = self._fused(activation, "activation")
        dt = _check("x", x, 2)
        _check("W", W, 2, dtypes=(dt,))
        batch, m = x.shape
        if W.shape[0] != m:
            raise ValueError(f"own GEMM: x {tuple(x.shape)} @ W {tuple(W.shape)}: inner dimensions differ")
        n = W.shape[1]
        if b is not None:
            _check("b", b, 1, (n,), (dt,))
        _check("out", out, 2, (batch, n), (dt,))
        if z_out is not None:
            _check("z_out", z_out, 2, (batch, n), (dt,))
        _check_apart({"out": out, "z_out": z_out}, {"x": x, "W": W, "b": b})
        i32 = np.int32
        self._launch(f"fwd_{act}{DTYPES[dt][0]}", dt, batch, n, (
            x, W, x if b is None else b, out, out if z_out is None else z_out,
            i32(batch), i32(m), i32(n), i32(b is not None), i32(z_out is not None),
        ))
        return out

    def input_grad(self, dz: Any, W: Any, out: Any, act_prev: Any | None = None, kept_prev: Any | None = None) -> Any:
        """out (B, M) = dz (B, N) @ W (M, N).T, times act_prev'(kept_prev) when act_prev is given
        (kept_prev (B, M): the previous layer's y, or its z for an activation whose backward reads z;
        out may be kept_prev itself)."""
        dt = _check("dz", dz, 2)
        _check("W", W, 2, dtypes=(dt,))
        batch, n = dz.shape
        if W.shape[1] != n:
            raise ValueError(f"own GEMM: dz {tuple(dz.shape)} @ W.T for W {tuple(W.shape)}: inner dimensions differ")
        m = W.shape[0]
        _check("out", out, 2, (batch, m), (dt,))
        prev = None if act_prev is None else self._fused(act_prev, "act_prev")
        if prev == "linear":
            prev = None
        i32, suffix = np.int32, DTYPES[dt][0]
        if prev is None:
            _check_apart({"out": out}, {"dz": dz, "W": W})
            self._launch(f"dx{suffix}", dt, batch, m, (dz, W, out, i32(batch), i32(n), i32(m)))
            return out
        if kept_prev is None:
            raise TypeError(f"own GEMM: act_prev {prev!r} needs kept_prev (what the previous layer's forward kept)")
        _check("kept_prev", kept_prev, 2, (batch, m), (dt,))
        # out may be kept_prev itself: the previous layer's y becomes its dz, once this layer's dW has read it.
        _check_apart({"out": out}, {"dz": dz, "W": W, "kept_prev": kept_prev}, in_place=("out", "kept_prev"))
        self._launch(f"dx_{prev}{suffix}", dt, batch, m, (dz, W, kept_prev, out, i32(batch), i32(n), i32(m)))
        return out

    def weight_grad(self, x: Any, dz: Any, dW: Any, db: Any | None = None) -> Any:
        """dW (M, N) = x (B, M).T @ dz (B, N); db (N,) = dz.sum(0) in the same launch when given.
        For float16/bfloat16 operands dW and db may be float32 (summed in float32 either way)."""
        dt = _check("x", x, 2)
        _check("dz", dz, 2, dtypes=(dt,))
        batch, m = x.shape
        if dz.shape[0] != batch:
            raise ValueError(f"own GEMM: x {tuple(x.shape)} and dz {tuple(dz.shape)} have different batches")
        n = dz.shape[1]
        outs = (dt,) if dt == np.float32 else (dt, np.dtype(np.float32))
        ot = _check("dW", dW, 2, (m, n), outs)
        if db is not None:
            _check("db", db, 1, (n,), (ot,))
        _check_apart({"dW": dW, "db": db}, {"x": x, "dz": dz})
        if batch == 0 or m == 0:  # no tile to launch over, or nothing summed
            dW.fill(0)
            if db is not None:
                db.fill(0) if batch == 0 else self.cp.sum(dz, axis=0, out=db)
            return dW
        i32 = np.int32
        name = f"dw{DTYPES[dt][0]}" + ("_f32" if ot != dt else "")
        self._launch(name, dt, m, n, (x, dz, dW, dW if db is None else db, i32(batch), i32(m), i32(n),
                                      i32(db is not None)))
        return dW
