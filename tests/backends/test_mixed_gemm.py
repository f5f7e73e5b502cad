"""Mixed precision's weight gradient: half operands, a float32 product in float32 (issue 18, 3).

``cupy.matmul(half.T, half, out=float32)`` computes in half and copies (CuPy 14.2,
``_core/_routines_linalg.pyx``), so the CuPy backend takes cuBLAS's gemmEx instead; the NumPy
backend and the stand-in must give what that gives: a finite float32 gradient above 65504.
"""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.layers.context import TRAINING
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.mixed_precision import bfloat16
from fcgpu.testing import count_device_ops, fake_cupy, stand_in_backend

HALVES = ["float16", "bfloat16"]


def _dtype(name):
    return bfloat16() if name == "bfloat16" else np.dtype(name)


def _operands(name, rows=4, m=2, n=3, value=200.0):
    rng = np.random.default_rng(0)
    a = (value + rng.standard_normal((rows, m))).astype(_dtype(name))
    b = (value + rng.standard_normal((rows, n))).astype(_dtype(name))
    return a, b


@pytest.mark.parametrize("backend", ["numpy", "stand-in"])
@pytest.mark.parametrize("half", HALVES)
def test_a_weight_gradient_above_65504_is_finite_float32_computed_in_float32(backend, half):
    a, b = _operands(half)  # the true a.T @ b is about 160000
    exact = a.astype(np.float64).T @ b.astype(np.float64)
    be = NumpyBackend() if backend == "numpy" else stand_in_backend()
    out = be.zeros((2, 3), np.float32)
    be.matmul_at_b(be.from_numpy(a), be.from_numpy(b), out)
    got = be.to_numpy(out)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, exact, rtol=2e-7)  # float32 sums of exact products, no half rounding


def test_the_mixed_weight_gradient_is_one_gemm_on_the_stand_in():
    be = stand_in_backend()
    a, b = (be.from_numpy(x) for x in _operands("float16"))
    out = be.zeros((2, 3), np.float32)
    with count_device_ops() as ops:
        be.matmul_at_b(a, b, out)
    assert ops.calls == [("gemm", "cublasGemmEx")]


@pytest.mark.parametrize("half", HALVES)
def test_stand_in_matmul_into_float32_rounds_to_half_and_copies_as_cupy_does(half):
    """What the old path did on a GPU: the stand-in now shows it (a half product, then a copy)."""
    a, b = (fake_cupy.asarray(x) for x in _operands(half, value=3.01))
    out = fake_cupy.empty((2, 3), np.float32)
    with count_device_ops() as ops:
        fake_cupy.matmul(a.T, b, out=out)
    assert ops.calls == [("gemm", "matmul"), ("copy", "copyto")]
    product = fake_cupy.matmul(a.T, b)
    assert product.dtype == _dtype(half)  # CuPy's promoted type, not ml_dtypes' float32
    np.testing.assert_array_equal(out.get(), product.get().astype(np.float32))
    big = [fake_cupy.asarray(x) for x in _operands("float16")]
    with np.errstate(over="ignore"):
        assert np.isinf(fake_cupy.matmul(big[0].T, big[1], out=out).get()).all()


def test_stand_in_gemm_ex_reads_strided_column_major_operands():
    from fcgpu.testing.fake_cupy.cuda import cublas

    rng = np.random.default_rng(1)
    a = fake_cupy.asarray(rng.standard_normal((5, 7)).astype(np.float16))  # C (5, 7): column-major (7, 5), ld 7
    b = fake_cupy.asarray(rng.standard_normal((5, 3)).astype(np.float16))
    c = fake_cupy.zeros((4, 3), np.float32)  # C-ordered (4, 3) rows of a.T[:4] @ b
    ptr = lambda x: x.__cuda_array_interface__["data"][0]  # noqa: E731
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    cublas.gemmEx(1, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T, 3, 4, 5, one.__array_interface__["data"][0], ptr(b), 2, 3,
                  ptr(a), 2, 7, zero.__array_interface__["data"][0], ptr(c), 0, 3, cublas.CUBLAS_COMPUTE_32F, -1)
    want = a.get().astype(np.float32)[:, :4].T @ b.get().astype(np.float32)
    np.testing.assert_allclose(c.get(), want, rtol=1e-6)


def test_a_mixed_float16_dense_step_keeps_a_large_weight_gradient_finite():
    for backend in ("numpy", stand_in_backend()):
        with fc.use_backend(backend):
            layer = fc.Dense(3, dtype="mixed_float16")
            layer.build(2)
        x = np.full((64, 2), 40.0, np.float32)
        layer.forward(x, TRAINING)
        layer.backward(np.full((64, 3), 40.0, np.float16))  # the gradient is 64 x 1600 = 102400
        grad = fc.to_numpy(layer.kernel_grad)
        assert grad.dtype == np.float32 and np.isfinite(grad).all(), backend
        np.testing.assert_allclose(grad, 102400.0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_training_step_takes_each_weight_gradient_in_one_gemm_and_no_copy(policy):
    from fcgpu.bench.launches import launches_per_step

    report = launches_per_step((20, 16, 4), batch=8, loss="softmax_cross_entropy", optimizer="adam", dtype=policy)
    calls = report.step_calls
    assert calls.count(("gemm", "cublasGemmEx")) == 2  # dW1, dW2: float32 products of half operands
    assert ("copy", "copyto") not in calls  # no half product copied into float32 (17 ops a step on real CuPy before)
    # mixed_float16: the overflow check is one kernel (fcgpu_loss_scale_check) deciding on the device,
    # read by the guarded update: no host read a step (one a step before, issue 18, item 8)
    assert report.per_step.total == (14 if policy == "mixed_float16" else 13)
    assert sum(report.per_step.transfers.values()) == 0
