"""The fused MLP forward on a real GPU (``pytest -m gpu``; skipped without a device): the layer checks
the block emulator runs (tests/support/mlp_checks.py), on the device's rounding and tensor cores,
plus what only a device can show: the results repeat bit for bit, and the one launch can be
captured into a CUDA graph and replayed.
"""
from __future__ import annotations

import numpy as np
import pytest

from support.gemm_checks import host
from support.mlp_checks import check_layers, draw

pytestmark = pytest.mark.gpu
CHAINS = [
    (1, (1, 1), ("linear",)),
    (7, (7, 33, 5), ("relu", "tanh")),
    (1000, (128, 128, 128, 10), ("gelu", "relu", "softmax")),
    (4099, (64, 100, 3), ("sigmoid", "softmax")),
    (1000, (17, 65, 1), ("silu", "sigmoid")),
]


@pytest.fixture(scope="module")
def fused(gpu):
    return gpu.fused_mlp


@pytest.mark.parametrize("batch,widths,acts", CHAINS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_each_layer_matches_numpy_on_the_device(gpu, fused, batch, widths, acts, dtype):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    check_layers(fused, gpu.cp, batch, widths, acts, seed=batch, dtype=dtype)


def test_results_repeat_bit_for_bit_and_the_launch_can_be_captured(gpu, fused):
    cp = gpu.cp
    x, ws, bs = draw(1000, (100, 128, 64, 10), seed=3)
    x, ws, bs = cp.asarray(x), [cp.asarray(w) for w in ws], [cp.asarray(b) for b in bs]
    out, z0 = cp.empty((1000, 10), np.float32), cp.empty((1000, 128), np.float32)

    def step():
        fused.forward(x, ws, bs, ("gelu", "tanh", "softmax"), out, keep=[(None, z0), (None, None), (None, None)])

    step()
    first = [host(a).tobytes() for a in (out, z0)]
    step()
    assert [host(a).tobytes() for a in (out, z0)] == first
    out.fill(0)
    z0.fill(0)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        step()
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert [host(a).tobytes() for a in (out, z0)] == first
