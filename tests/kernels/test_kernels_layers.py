"""The layer kernels (kernels/layers.cuh) against the NumPy backend: on the host stand-in, and the
block-level ones (column reductions, warp-per-row LayerNormalization) in the block emulator."""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.backends.cupy.layer_ops import COLUMN_BLOCK, column_launch
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.testing import fake_cupy as cp
from fcgpu.testing import stand_in_backend
from support.block_emulator import emulated_backend

NP = NumpyBackend()
TOL = {np.float64: 1e-12, np.float32: 2e-5, np.float16: 2e-3}


def _close(got, want, dtype, what):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=TOL[dtype],
                               atol=TOL[dtype], err_msg=what)


def _run(be, dtype, x, dy, v, w):
    """Every layer method on backend ``be``: a list of (what, host result)."""
    f = lambda a: be.from_numpy(a)  # noqa: E731
    X, D, V, W = f(x), f(dy), f(v), f(w)
    out = lambda: be.empty(x.shape, dtype)  # noqa: E731
    col = lambda: be.empty((x.shape[1],), dtype)  # noqa: E731
    row = lambda: be.empty((x.shape[0],), dtype)  # noqa: E731
    r = []
    for args in ((None, 0.0, 0.0), (6.0, 0.1, 0.5), (1.0, 0.3, 0.0), (None, 0.3, 0.0)):
        r += [(f"relu{args}", be.relu_forward(X, *args, out())), (f"relu'{args}", be.relu_backward(X, D, *args, out()))]
    r += [("elu", be.elu_forward(X, 0.7, out())), ("elu'", be.elu_backward(X, D, 0.7, out()))]
    r += [("prelu", be.prelu_forward(X, V, out()))]
    dx, da = out(), col()
    be.prelu_backward(X, D, V, dx, da)
    r += [("prelu dx", dx), ("prelu dalpha", da)]
    r += [("noise", be.gaussian_noise(X, out(), 2**64 - 5, 2**33 + 1, 0.5, 11))]
    den = be.normalize_denominator(W, col())
    for invert in (False, True):
        r += [(f"normalize {invert}", be.normalize_forward(X, V, den, invert, out())),
              (f"normalize' {invert}", be.normalize_backward(D, den, invert, out()))]
    if dtype == np.float16:
        return [(k, be.to_numpy(a)) for k, a in r]
    m, s, mm, mv = col(), col(), f(v.copy()), f(w.copy())
    be.bn_stats(X, m, s, mm, mv, 0.9)
    r += [("bn mean", m), ("bn var", s), ("moving mean", mm), ("moving var", mv)]
    for gamma, beta in ((V, V), (None, None)):
        r += [(f"bn y {gamma is None}", be.bn_forward(X, m, s, gamma, beta, 1e-3, out()))]
        for batch in (True, False):
            a, b, dx = col(), col(), out()
            be.bn_backward(X, D, m, s, gamma, 1e-3, batch, a, b, dx)
            r += [("bn sdy", a), ("bn sdyx", b), (f"bn dx {batch} {gamma is None}", dx)]
    for gamma, beta in ((V, V), (None, V), (V, None)):
        lm, lr = row(), row()
        r += [("ln y", be.ln_forward(X, gamma, beta, 1e-3, out(), lm, lr)), ("ln mean", lm), ("ln rstd", lr)]
        a, b, dx = col(), col(), out()
        be.ln_backward(X, D, lm, lr, gamma, a, b, dx)
        r += [("ln sdy", a), ("ln sdyx", b), ("ln dx", dx)]
    return [(k, be.to_numpy(a)) for k, a in r]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 45), (33, 3)])
def test_stand_in_kernels_match_numpy(dtype, shape):
    rng = np.random.default_rng(shape[1])
    x, dy = (rng.standard_normal(shape) * 2).astype(dtype), rng.standard_normal(shape).astype(dtype)
    v, w = rng.standard_normal(shape[1]).astype(dtype), (rng.random(shape[1]) + 0.1).astype(dtype)
    want, got = _run(NP, dtype, x, dy, v, w), _run(stand_in_backend(), dtype, x, dy, v, w)
    assert [k for k, _ in want] == [k for k, _ in got]
    for (what, a), (_, b) in zip(got, want):
        _close(a, b, dtype, what)


def test_gaussian_noise_is_standard_normal_and_the_same_on_both_backends():
    x = np.zeros((400, 50))
    a = NP.gaussian_noise(x, np.empty_like(x), 3, 0, 1.0)
    b = stand_in_backend().to_numpy(stand_in_backend().gaussian_noise(cp.asarray(x), cp.zeros(x.shape), 3, 0, 1.0))
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert not np.array_equal(a, NP.gaussian_noise(x, np.empty_like(x), 3, 1, 1.0))  # another step, other noise
    # a rank's rows (offset) draw what one process draws for them
    np.testing.assert_array_equal(NP.gaussian_noise(x[100:], np.empty_like(x[100:]), 3, 0, 1.0, 100 * 50), a[100:])


@pytest.mark.parametrize("cols", [1, 33, 300])
@pytest.mark.parametrize("rows", [1, 9, 70])
def test_column_and_row_reductions_in_the_block_emulator(rows, cols):
    rng = np.random.default_rng(rows * cols)
    x = (rng.standard_normal((rows, cols)) * 3 + 1).astype(np.float32)
    dy = rng.standard_normal((rows, cols)).astype(np.float32)
    g = rng.standard_normal(cols).astype(np.float32)
    want, got = {}, {}
    for be, res in ((NP, want), (emulated_backend(), got)):
        a = be.from_numpy if be is NP else cp.asarray
        X, D, G = a(x), a(dy), a(g)
        m, s, mm, mv = (a(np.zeros(cols, np.float32)) for _ in range(4))
        be.bn_stats(X, m, s, mm, mv, 0.5)
        sdy, sdyx = a(np.zeros(cols, np.float32)), a(np.zeros(cols, np.float32))
        be.bn_backward(X, D, m, s, G, 1e-3, True, sdy, sdyx, None)
        lm, lr, y = a(np.zeros(rows, np.float32)), a(np.zeros(rows, np.float32)), a(np.zeros_like(x))
        be.ln_forward(X, G, G, 1e-3, y, lm, lr)
        la, lb, dx = a(np.zeros(cols, np.float32)), a(np.zeros(cols, np.float32)), a(np.zeros_like(x))
        be.ln_backward(X, D, lm, lr, G, la, lb, dx)
        for k, v in dict(m=m, s=s, mm=mm, mv=mv, sdy=sdy, sdyx=sdyx, y=y, lm=lm, lr=lr, la=la, lb=lb, dx=dx).items():
            res[k] = v if be is NP else v.get()
        if be is not NP:
            launches = [(x.name, x.size, x.block_size) for x in be.launches]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=3e-5, atol=3e-5, err_msg=k)
    columns = (column_launch(cols)["size"], COLUMN_BLOCK)
    assert sorted(launches) == sorted([("fcgpu_bn_stats", *columns), ("fcgpu_bn_param_grads", *columns),
                                       ("fcgpu_ln_forward", 32 * rows, 128), ("fcgpu_ln_param_grads", *columns),
                                       ("fcgpu_ln_dx", 32 * rows, 128)])  # one launch each, race-free
