"""The own GEMM kernels on a real GPU (``pytest -m gpu``; skipped without a device): the same checks
the block emulator runs (tests/support/gemm_checks.py), on the device's rounding, plus what only a
device can show: the results repeat bit for bit, and a capture of the three launches into a CUDA
graph replays them (cuBLAS refuses to be captured; these kernels are why a captured step can exist).
"""
from __future__ import annotations

import numpy as np
import pytest

from support.gemm_checks import check_forward, check_input_grad, check_weight_grad, host

pytestmark = pytest.mark.gpu
SHAPES = [(1, 1, 1), (7, 3, 17), (129, 65, 130), (1000, 17, 3), (4096, 1024, 65), (129, 1024, 1024), (33, 1024, 130)]


@pytest.fixture(scope="module")
def own(gpu):
    return gpu.own_gemm


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_the_three_kernels_match_numpy_on_the_device(gpu, own, shape, dtype):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    for act in ("relu", "gelu", "sigmoid"):
        check_forward(own, gpu.cp, shape, act, keep=True, dtype=dtype)
    check_input_grad(own, gpu.cp, shape, None, dtype=dtype)
    check_input_grad(own, gpu.cp, shape, "tanh", dtype=dtype)
    check_weight_grad(own, gpu.cp, shape, dtype=dtype)
    if dtype != "float32":
        check_weight_grad(own, gpu.cp, shape, dtype=dtype, out_dtype=np.float32)


def test_results_repeat_bit_for_bit_and_the_launches_can_be_captured(gpu, own):
    cp = gpu.cp
    rng = np.random.default_rng(3)
    x = cp.asarray(rng.standard_normal((1000, 130)).astype(np.float32))
    w = cp.asarray(rng.standard_normal((130, 65)).astype(np.float32))
    b = cp.asarray(rng.standard_normal(65).astype(np.float32))
    y, dx = cp.empty((1000, 65), np.float32), cp.empty((1000, 130), np.float32)
    dw, db = cp.empty((130, 65), np.float32), cp.empty(65, np.float32)

    def step():
        own.dense_forward(x, w, b, "relu", y)
        own.weight_grad(x, y, dw, db)
        own.input_grad(y, w, dx)

    step()
    first = [host(a).tobytes() for a in (y, dx, dw, db)]
    step()
    assert [host(a).tobytes() for a in (y, dx, dw, db)] == first
    for a in (y, dx, dw, db):
        a.fill(0)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        step()
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert [host(a).tobytes() for a in (y, dx, dw, db)] == first


# -- the dropout epilogues and split-K on the device -----------------------------------------------------
SEED, STEP, OFFSET, RATE = 0x1234_5678_9ABC, 41, 3_000_000_007, 0.3


def _bits(a) -> bytes:
    return (a.get() if hasattr(a, "get") else np.asarray(a)).tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_the_dropout_epilogues_draw_the_elementwise_kernels_mask_on_the_device(gpu, own, dtype):
    """yd and the masked input gradient bit for bit what the backend's elementwise dropout kernels give
    for the plain GEMM's output (step + ctr[0] from a device counter)."""
    dtype = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    cp, rng = gpu.cp, np.random.default_rng(7)
    x = cp.asarray(rng.standard_normal((1000, 130)).astype(dtype))
    w = cp.asarray((rng.standard_normal((130, 65)) / 12).astype(dtype))
    b = cp.asarray(rng.standard_normal(65).astype(dtype))
    ctr = cp.asarray(np.array([3, 0], np.int64))
    y, yd, y0 = (cp.empty((1000, 65), dtype) for _ in range(3))
    own.dense_forward(x, w, b, "relu", y, dropout=(SEED, STEP, ctr, OFFSET, RATE), dropped=yd)
    own.dense_forward(x, w, b, "relu", y0)
    want = cp.empty_like(y0)
    gpu.dropout_forward(y0, want, SEED, STEP + 3, RATE, OFFSET)
    assert _bits(y) == _bits(y0) and _bits(yd) == _bits(want)
    dx, g, masked = (cp.empty((1000, 130), dtype) for _ in range(3))
    for act in (None, "relu"):
        own.input_grad(y, w, dx, act, x if act else None, dropout=(SEED, STEP, ctr, OFFSET, RATE))
        own.input_grad(y, w, g)
        gpu.dropout_forward(g, masked, SEED, STEP + 3, RATE, OFFSET)
        if act:
            gpu.act_backward(x, masked, act, masked)
        assert _bits(dx) == _bits(masked), act


def test_a_captured_dropout_epilogue_reads_the_counter_at_each_replay(gpu, own):
    cp = gpu.cp
    x, w = cp.ones((129, 65), np.float32), cp.ones((65, 130), np.float32)
    y, yd = cp.empty((129, 130), np.float32), cp.empty((129, 130), np.float32)
    ctr = cp.zeros(2, np.int64)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        own.dense_forward(x, w, None, "linear", y, dropout=(SEED, STEP, ctr, 0, RATE), dropped=yd)
        graph = stream.end_capture()
    masks = []
    for step in (0, 1):
        ctr[0] = step
        graph.launch(stream)
        stream.synchronize()
        want = cp.empty_like(y)
        gpu.dropout_forward(y, want, SEED, STEP + step, RATE, 0)
        assert _bits(yd) == _bits(want)
        masks.append(host(yd) == 0)
    assert (masks[0] != masks[1]).any()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_splitk_on_the_device(gpu, own, dtype):
    """B=4096, 784 -> 10: within the float32 bound of float64 NumPy, repeatable bit for bit, one slice
    bit for bit the plain kernel, and its two launches capturable."""
    from fcgpu.backends.cupy.gemm_splitk import splitk_workspace_shape

    cp, rng = gpu.cp, np.random.default_rng(11)
    xh, dzh = rng.standard_normal((4096, 784)).astype(dtype), rng.standard_normal((4096, 10)).astype(dtype)
    x, dz = cp.asarray(xh), cp.asarray(dzh)
    dw, db = cp.empty((784, 10), np.float32), cp.empty(10, np.float32)
    ws = cp.empty(splitk_workspace_shape(4096, 784, 10), np.float32)
    own.weight_grad_splitk(x, dz, dw, db, ws)
    x64, dz64 = xh.astype(np.float64), dzh.astype(np.float64)
    eps = float(np.finfo(np.float32).eps)
    assert (np.abs(host(dw) - x64.T @ dz64) <= 2 * 4200 * eps * (np.abs(x64).T @ np.abs(dz64)) + 1e-30).all()
    assert (np.abs(host(db) - dz64.sum(0)) <= 2 * 4200 * eps * np.abs(dz64).sum(0) + 1e-30).all()
    first = _bits(dw) + _bits(db)
    dw.fill(0)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        own.weight_grad_splitk(x, dz, dw, db, ws)
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert _bits(dw) + _bits(db) == first
    dw1, db1 = cp.empty_like(dw), cp.empty_like(db)
    ws1 = cp.empty(splitk_workspace_shape(4096, 784, 10, slices=1), np.float32)
    own.weight_grad_splitk(x, dz, dw1, db1, ws1, slices=1)
    own.weight_grad(x, dz, dw, db)
    assert _bits(dw1) + _bits(db1) == _bits(dw) + _bits(db)
