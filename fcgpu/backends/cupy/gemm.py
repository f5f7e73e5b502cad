"""Launches fcgpu's own GEMM kernels (``kernels/gemm.cuh``) for Dense layers, as a CuPy ``RawModule``.

CuPy's cuBLAS wrappers refuse to run while a stream is being captured into a CUDA graph, so a
training step captured as one graph multiplies with these kernels instead: ``dense_forward``
(``y = act(x @ W + b)``, optionally keeping ``z = x @ W + b``), ``input_grad`` (``dx = dz @ W.T``,
optionally times the previous layer's activation derivative) and ``weight_grad`` (``dW = x.T @ dz``
and ``db = dz.sum(0)`` in one launch). Each call is exactly one kernel launch, allocates nothing and
reads no value back to the host, so it can be captured. The backend's default path keeps cuBLAS;
``CupyBackend.own_gemm`` is this launcher on the backend's CuPy module.

Dropout in the epilogues: ``dense_forward(..., dropout=GemmDropout(seed, step, ctr, offset, rate),
dropped=yd)`` also writes ``yd = dropout(y)`` (y kept for the Dense's backward), and
``input_grad(..., dropout=...)`` applies the previous layer's Dropout backward to ``dz @ W.T`` before
its activation derivative; element (r, c) of the (rows, cols) output masked by word
``offset + r * cols + c`` of the Philox stream of (seed, step + ``ctr[0]``) (``ctr`` a device int64
array, a captured step's counter; ``None``: the step alone), bit for bit as the elementwise
``fcgpu_bias_<act>_dropout_fwd`` / ``fcgpu_<act>_dropout_bwd`` kernels (and their ``_dev`` variants).
Still one launch. ``weight_grad_splitk`` (``gemm_splitk``) is the weight gradient with the batch cut
into slices, for large batches and narrow layers: two launches through a caller's workspace.

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
from typing import Any, NamedTuple

import numpy as np

from . import kernel_sources
from .gemm_args import BLOCK_THREADS, DTYPES, TILE, check_apart, check_array, check_weight_grad, grid_blocks, operand_dtype
from .gemm_splitk import splitk_kernel_names, weight_grad_splitk
from ..philox import dropout_constants
from ...activations.table import ACTIVATIONS, get_activation

__all__ = [
    "BLOCK_THREADS",
    "COMPILE_OPTIONS",
    "DTYPES",
    "GEMM_HEADERS",
    "TILE",
    "WMMA_HEADER",
    "GemmDropout",
    "GemmLauncher",
    "fused_activations",
    "grid_blocks",
    "kernel_names",
    "module_code",
]

# float32's headers (random.cuh: the dropout epilogues' Philox); 16-bit types add gemm_wmma.cuh
GEMM_HEADERS = ("common.cuh", "activations.cuh", "random.cuh", "gemm.cuh")
WMMA_HEADER = "gemm_wmma.cuh"  # needs mma.h (and its crt/mma.h: the toolkit or the nvidia-cuda-crt wheel)
COMPILE_OPTIONS = ("--std=c++17",)  # CuPy adds its include paths (mma.h, cuda_fp16.h) and -ftz=true
_UINT64_MAX = 2**64 - 1
_INT64_MAX = 2**63 - 1


class GemmDropout(NamedTuple):
    """A Dropout fused into a GEMM epilogue: the Philox ``seed`` and ``step``, ``ctr`` (a device int64
    array whose ``ctr[0]`` is added to the step at run time, as a captured step's counter; ``None``: the
    step alone), ``offset`` (the stream index of the output's first element) and the ``rate`` in [0, 1).
    A plain tuple in this order works too."""

    seed: int
    step: int
    ctr: Any
    offset: int
    rate: float


def fused_activations() -> tuple[str, ...]:
    """The activations the forward epilogue and the input gradient's derivative take (not row ones)."""
    return tuple(name for name, entry in ACTIVATIONS.items() if not entry.rows)


@functools.lru_cache(maxsize=None)
def module_code(dtype: Any = "float32") -> str:
    """The ``RawModule`` source of one operand dtype: the headers, then its kernels (each fused activation's)."""
    dt = operand_dtype(dtype)
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
    dt = operand_dtype(dtype)
    s, acts = DTYPES[dt][0], fused_activations()
    extra = () if dt == np.float32 else (f"fcgpu_gemm_dw{s}_f32",)
    return (*(f"fcgpu_gemm_fwd_{a}{s}" for a in acts), *(f"fcgpu_gemm_dx_{a}{s}" for a in acts), f"fcgpu_gemm_dx{s}",
            f"fcgpu_gemm_dw{s}", *extra, *(f"fcgpu_gemm_fwd_drop_{a}{s}" for a in acts),
            *(f"fcgpu_gemm_dx_drop_{a}{s}" for a in acts), *splitk_kernel_names(dt))


def _dropout_args(dropout: Any) -> tuple:
    """The kernels' trailing dropout arguments (seed, step, ctr, offset, threshold, scale) of a
    ``GemmDropout`` (or a 5-tuple in its order), checked."""
    try:
        seed, step, ctr, offset, rate = dropout
    except (TypeError, ValueError):
        raise TypeError("own GEMM: dropout must be GemmDropout(seed, step, ctr, offset, rate) or a 5-tuple in "
                        f"that order, got {dropout!r}") from None
    for name, v, top in (("seed", seed, _UINT64_MAX), ("step", step, _UINT64_MAX), ("offset", offset, _INT64_MAX)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= int(v) <= top:
            raise ValueError(f"own GEMM: dropout {name} must be an integer in [0, {top}], got {v!r}")
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"own GEMM: dropout rate must be in [0, 1), got {rate!r}")
    if ctr is not None:
        check_array("dropout ctr", ctr, 1, dtypes=(np.dtype(np.int64),))
        if ctr.size < 1:
            raise ValueError("own GEMM: dropout ctr must have at least 1 element (ctr[0] is added to the step), "
                             "got 0")
    threshold, scale = dropout_constants(float(rate))
    return (np.uint64(seed), np.uint64(step), ctr, np.int64(offset), np.uint32(threshold), np.float64(scale))


class GemmLauncher:
    """The own-GEMM kernels on CuPy module ``cp`` (real CuPy, or a stand-in with ``RawModule``)."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._modules: dict[np.dtype, Any] = {}
        self._kernels: dict[str, Any] = {}

    def module(self, dtype: Any = np.float32) -> Any:
        """The ``RawModule`` of operand ``dtype``, compiled on first use (once per launcher and dtype)."""
        dt = operand_dtype(dtype)
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

    def dense_forward(self, x: Any, W: Any, b: Any | None, activation: Any, out: Any, z_out: Any | None = None, *,
                      dropout: GemmDropout | tuple | None = None, dropped: Any | None = None) -> Any:
        """out (B, N) = act(x (B, M) @ W (M, N) + b (N,)); z_out (B, N) = x @ W + b too when given.

        With ``dropout`` (a ``GemmDropout``) also ``dropped`` (B, N) = dropout(out), element (r, c) by
        stream index offset + r * N + c, as ``fcgpu_bias_<act>_dropout_fwd`` draws it; out keeps the
        undropped y for the Dense's backward. Returns ``dropped`` then, else ``out``."""
        act = self._fused(activation, "activation")
        if (dropout is None) != (dropped is None):
            raise TypeError("own GEMM: dropout and dropped go together (the dropout's output needs both), got "
                            f"dropout={'None' if dropout is None else 'given'}, "
                            f"dropped={'None' if dropped is None else 'given'}")
        dt = check_array("x", x, 2)
        check_array("W", W, 2, dtypes=(dt,))
        batch, m = x.shape
        if W.shape[0] != m:
            raise ValueError(f"own GEMM: x {tuple(x.shape)} @ W {tuple(W.shape)}: inner dimensions differ")
        n = W.shape[1]
        if b is not None:
            check_array("b", b, 1, (n,), (dt,))
        check_array("out", out, 2, (batch, n), (dt,))
        if z_out is not None:
            check_array("z_out", z_out, 2, (batch, n), (dt,))
        if dropped is not None:
            check_array("dropped", dropped, 2, (batch, n), (dt,))
        drop = () if dropout is None else _dropout_args(dropout)
        check_apart({"out": out, "z_out": z_out, "dropped": dropped},
                    {"x": x, "W": W, "b": b, "dropout ctr": drop[2] if drop else None})
        i32 = np.int32
        head = (x, W, x if b is None else b, out, out if z_out is None else z_out)
        tail = (i32(batch), i32(m), i32(n), i32(b is not None), i32(z_out is not None))
        if dropout is None:
            self._launch(f"fwd_{act}{DTYPES[dt][0]}", dt, batch, n, head + tail)
            return out
        self._launch(f"fwd_drop_{act}{DTYPES[dt][0]}", dt, batch, n, head + (dropped,) + tail + drop)
        return dropped

    def input_grad(self, dz: Any, W: Any, out: Any, act_prev: Any | None = None, kept_prev: Any | None = None, *,
                   dropout: GemmDropout | tuple | None = None) -> Any:
        """out (B, M) = dz (B, N) @ W (M, N).T, times act_prev'(kept_prev) when act_prev is given
        (kept_prev (B, M): the previous layer's y, or its z for an activation whose backward reads z;
        out may be kept_prev itself).

        With ``dropout`` (a ``GemmDropout``: the previous layer's Dropout, as its forward drew it) the
        product goes through that Dropout's backward first, element (r, c) by stream index
        offset + r * M + c, then act_prev' (if any): ``fcgpu_<act>_dropout_bwd`` of the product."""
        dt = check_array("dz", dz, 2)
        check_array("W", W, 2, dtypes=(dt,))
        batch, n = dz.shape
        if W.shape[1] != n:
            raise ValueError(f"own GEMM: dz {tuple(dz.shape)} @ W.T for W {tuple(W.shape)}: inner dimensions differ")
        m = W.shape[0]
        check_array("out", out, 2, (batch, m), (dt,))
        prev = None if act_prev is None else self._fused(act_prev, "act_prev")
        if prev == "linear":
            prev = None
        i32, suffix = np.int32, DTYPES[dt][0]
        if dropout is not None:
            return self._input_grad_dropout(dz, W, out, prev, kept_prev, _dropout_args(dropout))
        if prev is None:
            check_apart({"out": out}, {"dz": dz, "W": W})
            self._launch(f"dx{suffix}", dt, batch, m, (dz, W, out, i32(batch), i32(n), i32(m)))
            return out
        if kept_prev is None:
            raise TypeError(f"own GEMM: act_prev {prev!r} needs kept_prev (what the previous layer's forward kept)")
        check_array("kept_prev", kept_prev, 2, (batch, m), (dt,))
        # out may be kept_prev itself: the previous layer's y becomes its dz, once this layer's dW has read it.
        check_apart({"out": out}, {"dz": dz, "W": W, "kept_prev": kept_prev}, in_place=("out", "kept_prev"))
        self._launch(f"dx_{prev}{suffix}", dt, batch, m, (dz, W, kept_prev, out, i32(batch), i32(n), i32(m)))
        return out

    def _input_grad_dropout(self, dz: Any, W: Any, out: Any, prev: str | None, kept_prev: Any | None,
                            drop: tuple) -> Any:
        """``input_grad`` with the previous Dropout's backward (``prev`` None: the linear kernel, kept unread)."""
        dt = np.dtype(dz.dtype)
        batch, n = dz.shape
        m = W.shape[0]
        if prev is not None and kept_prev is None:
            raise TypeError(f"own GEMM: act_prev {prev!r} needs kept_prev (what the previous layer's forward kept)")
        if kept_prev is not None:
            check_array("kept_prev", kept_prev, 2, (batch, m), (dt,))
        kept = out if prev is None or kept_prev is None else kept_prev
        check_apart({"out": out}, {"dz": dz, "W": W, "kept_prev": None if kept is out else kept,
                                   "dropout ctr": drop[2]}, in_place=("out", "kept_prev"))
        self._launch(f"dx_drop_{prev or 'linear'}{DTYPES[dt][0]}", dt, batch, m,
                     (dz, W, kept, out, np.int32(batch), np.int32(n), np.int32(m)) + drop)
        return out

    def weight_grad_splitk(self, x: Any, dz: Any, dW: Any, db: Any | None, workspace: Any,
                           slices: int | None = None) -> Any:
        """dW (M, N) = x (B, M).T @ dz (B, N) and db (N,) = dz.sum(0) (when given) split over the batch:
        partials into ``workspace`` (float32, 1-D, at least ``gemm_splitk.splitk_workspace_shape(B, M,
        N)[0]`` elements, allocated once by the caller), then their ordered reduce: two launches, no
        allocation. ``slices`` forces the slice count (else ``gemm_splitk.splitk_plan``'s rule)."""
        return weight_grad_splitk(self, x, dz, dW, db, workspace, slices)

    def weight_grad(self, x: Any, dz: Any, dW: Any, db: Any | None = None) -> Any:
        """dW (M, N) = x (B, M).T @ dz (B, N); db (N,) = dz.sum(0) in the same launch when given.
        For float16/bfloat16 operands dW and db may be float32 (summed in float32 either way)."""
        dt, ot, batch, m, n = check_weight_grad(x, dz, dW, db)
        check_apart({"dW": dW, "db": db}, {"x": x, "dz": dz})
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
