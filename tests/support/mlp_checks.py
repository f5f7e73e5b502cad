"""Checks of the fused MLP forward (fcgpu.backends.cupy.fused_mlp) against the NumPy backend, for any launcher.

``check_layers`` draws a chain's operands, runs one forward on NaN-guarded device arrays keeping
every layer's y and z, and compares each layer with the NumPy backend's Dense forward (matmul, then
bias_act_forward) of the input the kernel kept, within the own GEMM checks' bound
(``support.gemm_checks``): the float32 summation error of that layer alone, times the activation's
largest slope, plus the rounding of the output to its dtype. Used by the block-emulator tests
(tests/kernels/test_fused_mlp.py) and the device suite (tests/gpu/test_device_fused_mlp.py).
"""
from __future__ import annotations

import numpy as np

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy.gemm import GemmLauncher
from support.gemm_checks import EPS, NP, SLOPE, close, host, unit_roundoff

GUARD = 64  # NaN cells before and after every array


class Guarded:
    """Device copies inside NaN guard cells; ``intact()`` says no write landed outside any of them."""

    def __init__(self, cp, dtype=np.float32) -> None:
        self.cp, self.dtype, self.buffers = cp, dtype, []

    def __call__(self, data) -> object:
        data = np.asarray(data).astype(self.dtype)
        buf = self.cp.full(data.size + 2 * GUARD, np.nan, self.dtype)
        view = buf[GUARD:GUARD + data.size].reshape(data.shape)
        self.cp.copyto(view, self.cp.asarray(data))
        self.buffers.append(buf)
        return view

    def intact(self) -> bool:
        return all(np.isnan(host(b)[:GUARD]).all() and np.isnan(host(b)[-GUARD:]).all() for b in self.buffers)


def draw(batch, widths, seed=0, bias=True, dtype=np.float32):
    """x (batch, widths[0]), each layer's W (scaled to keep activations of order 1) and b (or None),
    as float32 arrays of values of ``dtype``."""
    rng = np.random.default_rng(seed)

    def values(a):
        return np.asarray(a).astype(dtype).astype(np.float32)

    x = values(rng.standard_normal((batch, widths[0])))
    ws = [values(rng.standard_normal((m, n)) * (1.5 / np.sqrt(m))) for m, n in zip(widths, widths[1:])]
    biases = bias if isinstance(bias, (list, tuple)) else [bias] * len(ws)
    bs = [values(rng.standard_normal(n)) if has else None for n, has in zip(widths[1:], biases)]
    return x, ws, bs


def run_fused(launcher, cp, batch, widths, acts, seed=0, bias=True, keep=True, dtype=np.float32):
    """The fused forward on guarded arrays: (out, kept y's, kept z's, the host operands, the guards)."""
    x, ws, bs = draw(batch, widths, seed, bias, dtype)
    g = Guarded(cp, dtype)
    out = g(np.zeros((batch, widths[-1])))
    ys = [g(np.zeros((batch, n))) if keep and i < len(acts) - 1 else None for i, n in enumerate(widths[1:])]
    zs = [g(np.zeros((batch, n))) if keep else None for n in widths[1:]]
    launcher.forward(g(x), [g(w) for w in ws], [None if b is None else g(b) for b in bs], acts, out,
                     keep=list(zip(ys, zs)) if keep else None)
    return out, ys, zs, (x, ws, bs), g


def check_layers(launcher, cp, batch, widths, acts, seed=0, bias=True, dtype=np.float32):
    """Every layer against the NumPy backend's Dense forward of the input the kernel kept (float32
    operands; for float16 and bfloat16 the float32 values of the 16-bit ones, each output rounded)."""
    out, ys, zs, (x, ws, bs), g = run_fused(launcher, cp, batch, widths, acts, seed, bias, dtype=dtype)
    u = 8 * EPS if np.dtype(dtype) == np.float32 else unit_roundoff(dtype)
    tiny = 1e-30 if np.dtype(dtype) == np.float32 else float(np.finfo(np.dtype(dtype)).smallest_subnormal)
    h = x
    for i, (w, b, act) in enumerate(zip(ws, bs, acts)):
        n = w.shape[1]
        z_ref = NP.matmul(h, w, np.empty((batch, n), np.float32))
        keep_ref = np.empty_like(z_ref)
        y_ref = NP.bias_act_forward(z_ref.copy(), b, act, np.empty_like(z_ref), keep=keep_ref)
        scale = np.abs(h).astype(np.float64) @ np.abs(w) + (0 if b is None else np.abs(b))
        tol_z = 2 * (w.shape[0] + 2) * EPS * scale + 1e-30
        what = f"layer {i} ({act}, batch {batch}, widths {widths})"
        close(host(zs[i]), keep_ref, tol_z + u * np.abs(keep_ref) + tiny, f"z of {what} ({np.dtype(dtype)})")
        y = host(out if i == len(acts) - 1 else ys[i])
        if ACTIVATIONS[act].rows:  # softmax of the same float logits: a row's sum of exps, 16 ulp, one rounding
            tol_y = (16 * EPS + u) * np.abs(y_ref) + 2 * np.abs(y_ref) * tol_z.max(1, keepdims=True) + tiny
        else:
            tol_y = SLOPE.get(act, 1.0) * 2 * tol_z + u * np.abs(y_ref) + tiny
        close(y, y_ref, tol_y, f"y of {what} ({np.dtype(dtype)})")
        h = y
    assert g.intact(), "a write outside an output"
    return out


def own_gemm_chain(cp, x, ws, bs, acts, dtype=np.float32) -> np.ndarray:
    """The same forward as one own-GEMM launch a layer (softmax: linear, then the NumPy backend's row softmax)."""
    gemm = GemmLauncher(cp)
    h = cp.asarray(x.astype(dtype))
    for w, b, act in zip(ws, bs, acts):
        y = cp.zeros((h.shape[0], w.shape[1]), dtype)
        rows = ACTIVATIONS[act].rows
        gemm.dense_forward(h, cp.asarray(w.astype(dtype)), None if b is None else cp.asarray(b.astype(dtype)),
                           "linear" if rows else act, y)
        if rows:
            y = cp.asarray(NP.bias_act_forward(host(y), None, act, np.empty(y.shape, np.float32)))
        h = y
    return host(h)
