"""Checks of the own GEMM kernels (fcgpu.backends.cupy.gemm) against the NumPy backend, for any launcher.

Each check draws operands, runs one launcher call on NaN-guarded device arrays (a stray read
poisons a result, a stray write spoils a guard) and compares with the NumPy backend within a bound
of the float32 summation error, ``2 (K + 2) eps32 sum |a_k b_k|`` per output, times the largest
slope of the activation, plus the rounding of the output to its dtype. For float16 and bfloat16 the
reference is the NumPy backend on the float32 values of the same 16-bit operands.
"""
from __future__ import annotations

import numpy as np

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.numpy.backend import NumpyBackend

NP = NumpyBackend()
EPS = float(np.finfo(np.float32).eps)
GUARD = 64  # NaN cells before and after every array
SLOPE = {"selu": 1.76, "elu": 1.0, "gelu": 1.13, "gelu_approximate": 1.13, "silu": 1.1}  # max |act'| (else 1)


def unit_roundoff(dtype) -> float:
    """Half an ulp at 1 for the output dtype (float32's with 8 ulp of activation error allowed)."""
    return 8 * EPS if np.dtype(dtype) == np.float32 else float(np.finfo(np.dtype(dtype)).eps)


_GUARDED: dict[int, tuple] = {}  # id(view) -> (view, its buffer with the guard cells); cleared by each check


def guarded(cp, data, dtype=np.float32):
    """A device copy of ``data`` (cast to ``dtype``) inside NaN guard cells (see ``guards_intact``)."""
    data = np.asarray(data).astype(dtype)
    buf = cp.full(data.size + 2 * GUARD, np.nan, dtype)
    view = buf[GUARD:GUARD + data.size].reshape(data.shape)
    cp.copyto(view, cp.asarray(data))
    _GUARDED[id(view)] = (view, buf)
    return view


def host(a) -> np.ndarray:
    """A float32 host copy of a stand-in or CuPy array."""
    return np.array(a.get() if hasattr(a, "get") else a).astype(np.float32)


def guards_intact(a) -> bool:
    buf = host(_GUARDED[id(a)][1])
    return bool(np.isnan(buf[:GUARD]).all() and np.isnan(buf[-GUARD:]).all())


def as_dtype(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` rounded to ``dtype`` and back to float32: the operand values the kernel sees."""
    return np.asarray(a).astype(dtype).astype(np.float32)


def kept_values(act, shape, rng, dtype=np.float32):
    """What the forward pass of ``act`` keeps for its backward: y = act(z), or z itself."""
    z = (rng.standard_normal(shape) * 2).astype(np.float32)
    if ACTIVATIONS[act].backward_from != "z":
        z = NP.bias_act_forward(z, None, act, np.empty_like(z))
    return as_dtype(z, dtype)


def close(got, want, tol, what):
    bad = ~(np.abs(got - want) <= tol)
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[0]}: " \
                          f"{got[bad][0]} vs {want[bad][0]} (tol {tol[bad][0] if np.ndim(tol) else tol})"


def check_forward(launcher, cp, shape, act, bias=True, keep=False, seed=0, dtype=np.float32):
    batch, m, n = shape
    _GUARDED.clear()
    rng = np.random.default_rng(seed)
    x = as_dtype(rng.standard_normal((batch, m)), dtype)
    w = as_dtype(rng.standard_normal((m, n)) / np.sqrt(m), dtype)
    b = as_dtype(rng.standard_normal(n), dtype) if bias else None
    z_ref = NP.matmul(x, w, np.empty((batch, n), np.float32))
    keep_ref = np.empty_like(z_ref) if keep else None
    y_ref = NP.bias_act_forward(z_ref.copy(), b, act, np.empty_like(z_ref), keep=keep_ref)
    y, z = guarded(cp, np.zeros((batch, n)), dtype), guarded(cp, np.zeros((batch, n)), dtype)
    launcher.dense_forward(guarded(cp, x, dtype), guarded(cp, w, dtype), None if b is None else guarded(cp, b, dtype),
                           act, y, z if keep else None)
    scale = np.abs(x).astype(np.float64) @ np.abs(w) + (0 if b is None else np.abs(b))
    tol_z = 2 * (m + 2) * EPS * scale + 1e-30
    u = unit_roundoff(dtype)
    tiny = 1e-30 if np.dtype(dtype) == np.float32 else float(np.finfo(np.dtype(dtype)).smallest_subnormal)
    if keep:
        close(host(z), keep_ref, tol_z + u * np.abs(keep_ref) + tiny, f"z ({act}, {shape}, {np.dtype(dtype)})")
    slope = SLOPE.get(act, 1.0)
    tol_y = slope * (2 * tol_z + (0 if np.dtype(dtype) == np.float32 else u * np.abs(z_ref))) + u * np.abs(y_ref) + tiny
    close(host(y), y_ref, tol_y, f"y ({act}, {shape}, {np.dtype(dtype)})")
    assert guards_intact(y) and guards_intact(z), "a write outside the output"


def check_input_grad(launcher, cp, shape, act, seed=0, dtype=np.float32):
    batch, m, n = shape
    _GUARDED.clear()
    rng = np.random.default_rng(seed + 1)
    dz = as_dtype(rng.standard_normal((batch, n)), dtype)
    w = as_dtype(rng.standard_normal((m, n)) / np.sqrt(n), dtype)
    g_ref = NP.matmul_a_bt(dz, w, np.empty((batch, m), np.float32))
    tol = 2 * (n + 2) * EPS * (np.abs(dz).astype(np.float64) @ np.abs(w).T) + 1e-30
    u = unit_roundoff(dtype)
    tiny = 1e-30 if np.dtype(dtype) == np.float32 else float(np.finfo(np.dtype(dtype)).smallest_subnormal)
    dx = guarded(cp, np.zeros((batch, m)), dtype)
    if act is None:
        launcher.input_grad(guarded(cp, dz, dtype), guarded(cp, w, dtype), dx)
        want = g_ref
        tol = tol + (0 if np.dtype(dtype) == np.float32 else u * np.abs(want) + tiny)
    else:
        kept = kept_values(act, (batch, m), rng, dtype)
        launcher.input_grad(guarded(cp, dz, dtype), guarded(cp, w, dtype), dx, act, guarded(cp, kept, dtype))
        want = NP.act_backward(kept, g_ref.copy(), act, np.empty_like(g_ref))
        tol = SLOPE.get(act, 1.0) * 2 * tol + u * np.abs(want) + tiny
    close(host(dx), want, tol, f"dx ({act}, {shape}, {np.dtype(dtype)})")
    assert guards_intact(dx), "a write outside dx"


def check_weight_grad(launcher, cp, shape, bias=True, seed=0, dtype=np.float32, out_dtype=None):
    batch, m, n = shape
    out_dtype = dtype if out_dtype is None else out_dtype
    _GUARDED.clear()
    rng = np.random.default_rng(seed + 2)
    x = as_dtype(rng.standard_normal((batch, m)), dtype)
    dz = as_dtype(rng.standard_normal((batch, n)), dtype)
    dw_ref = NP.matmul_at_b(x, dz, np.empty((m, n), np.float32))
    db_ref = NP.sum_rows(dz, np.empty(n, np.float32))
    dw, db = guarded(cp, np.zeros((m, n)), out_dtype), guarded(cp, np.zeros(n), out_dtype)
    launcher.weight_grad(guarded(cp, x, dtype), guarded(cp, dz, dtype), dw, db if bias else None)
    u = 0.0 if np.dtype(out_dtype) == np.float32 else unit_roundoff(out_dtype)
    tiny = 1e-30 if np.dtype(out_dtype) == np.float32 else float(np.finfo(np.dtype(out_dtype)).smallest_subnormal)
    tol_w = 2 * (batch + 2) * EPS * (np.abs(x).T.astype(np.float64) @ np.abs(dz)) + u * np.abs(dw_ref) + tiny
    close(host(dw), dw_ref, tol_w, f"dW {shape} {np.dtype(dtype)}->{np.dtype(out_dtype)}")
    if bias:
        tol_b = 2 * (batch + 2) * EPS * np.abs(dz).sum(0) + u * np.abs(db_ref) + tiny
        close(host(db), db_ref, tol_b, f"db {shape} {np.dtype(dtype)}->{np.dtype(out_dtype)}")
    else:
        assert (host(db) == 0).all(), "db written without a bias"
    assert guards_intact(dw) and guards_intact(db), "a write outside dW or db"
