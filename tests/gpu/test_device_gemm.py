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
