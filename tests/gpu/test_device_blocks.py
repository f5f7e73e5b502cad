"""Issue 18 on a real GPU: the block-level kernels, the mixed-precision weight gradient and NCCL's
import, checked where the host cannot check them (``pytest -m gpu``; skipped without a device)."""
from __future__ import annotations

import numpy as np
import pytest

from fcgpu.backends.numpy.backend import NumpyBackend

pytestmark = pytest.mark.gpu
NP = NumpyBackend()


@pytest.mark.parametrize("cols", [1, 10, 1000, 100_000])
def test_warp_rows_and_block_sums_match_numpy_and_repeat_bit_for_bit(gpu, cols):
    rng = np.random.default_rng(cols)
    z = (rng.standard_normal((64, cols)) * 3).astype(np.float32)
    labels = rng.integers(0, cols, 64)
    want, want_acc = np.zeros_like(z), np.zeros(2)
    NP.softmax_xent_step(z, labels, 1 / 64, 1.0, True, want, want_acc)
    out, acc = gpu.zeros(z.shape, np.float32), gpu.zeros((2,), np.float64)
    gpu.softmax_xent_step(gpu.from_numpy(z), gpu.from_numpy(labels), 1 / 64, 1.0, True, out, acc)
    np.testing.assert_allclose(gpu.to_numpy(out), want, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(gpu.to_numpy(acc), want_acc, rtol=1e-5)
    y = rng.standard_normal(z.shape).astype(np.float32)
    sums = []
    for _ in range(3):
        acc = gpu.zeros((2,), np.float64)
        gpu.mse_step(gpu.from_numpy(z), gpu.from_numpy(y), 1.0, 1.0, gpu.zeros(z.shape, np.float32), acc)
        sums.append(gpu.to_numpy(acc).tobytes())
    assert len(set(sums)) == 1  # one partial a block, added in block order: deterministic
    np.testing.assert_allclose(np.frombuffer(sums[0])[0], float(((z.astype(np.float64) - y) ** 2).sum()), rtol=1e-5)


def test_mixed_weight_gradient_above_65504_is_finite_on_the_device(gpu):
    a = np.full((64, 2), 40.0, np.float16)
    b = np.full((64, 3), 40.0, np.float16)
    out = gpu.zeros((2, 3), np.float32)
    gpu.matmul_at_b(gpu.from_numpy(a), gpu.from_numpy(b), out)
    np.testing.assert_array_equal(gpu.to_numpy(out), np.full((2, 3), 102400.0, np.float32))


def test_nccl_is_importable_where_data_parallel_needs_it(gpu):
    nccl = gpu.nccl_module()
    assert hasattr(nccl, "available")
