"""The CUDA kernels' own code (kernels/*.cuh), compiled for the host, against the NumPy backend.

Each kernel runs through the CuPy backend on the host stand-in (fcgpu.testing.fake_cupy), whose
ElementwiseKernel compiles the same preamble and operation with g++; the NumPy backend's method
of the same name is the reference (support.kernel_checks has the inputs, edge cases and
the ulp comparison). The same checks run on a real GPU, with the GPU tolerances, under
``pytest -m gpu``; tests/gpu/test_device.py has the checks that only a device can answer.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import fcgpu as fc

from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.numpy.backend import NumpyBackend
from support import kernel_checks as kc
from fcgpu.testing import stand_in_backend

DTYPES = [np.float32, np.float64, np.float16]
dtype_ids = [np.dtype(d).name for d in DTYPES]
NP = NumpyBackend()


@pytest.fixture(scope="module")
def cp():
    return stand_in_backend()


@dataclasses.dataclass(frozen=True)
class Target:
    backend: Any
    tol: kc.Tolerances


@pytest.fixture(scope="module", params=["stand-in", pytest.param("gpu", marks=pytest.mark.gpu)])
def target(request):
    """Where the kernels run: compiled for the host (host tolerances), or on a real GPU (-m gpu)."""
    if request.param == "stand-in":
        return Target(stand_in_backend(), kc.HOST)
    try:
        return Target(fc.backends.resolve_backend("cupy")[0], kc.GPU)
    except fc.BackendUnavailable as e:
        pytest.skip(f"needs a usable CUDA device: {e}")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_forward(target, act, dtype, with_bias, rng) -> None:
    kc.check_forward(target.backend, act, dtype, with_bias, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_backward(target, act, dtype, rng) -> None:
    kc.check_backward(target.backend, act, dtype, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("targets", ["ids", "probs"])
def test_softmax_xent_grad(target, dtype, targets, rng) -> None:
    kc.check_softmax_xent_grad(target.backend, dtype, targets, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_bce_logits(target, dtype, rng) -> None:
    kc.check_bce_logits(target.backend, dtype, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_bce_prob(target, dtype, rng) -> None:
    kc.check_bce_prob(target.backend, dtype, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_mse_grad(target, dtype, rng) -> None:
    kc.check_mse_grad(target.backend, dtype, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", kc.SGD_CASES, ids=lambda c: f"mu{c['momentum']}-wd{c['weight_decay']}-nesterov{c['nesterov']}")
def test_sgd_update(target, dtype, case, rng) -> None:
    kc.check_sgd(target.backend, dtype, case, rng, target.tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", kc.ADAM_CASES, ids=lambda c: f"wd{c['weight_decay']}-step{c['step']}-decoupled{c['decoupled']}")
def test_adam_update(target, dtype, case, rng) -> None:
    kc.check_adam(target.backend, dtype, case, rng, target.tol)


# -- conventions and properties both backends share ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_forward_in_place(cp, act, dtype, rng) -> None:
    z = kc.sample(rng, dtype, (7, 9))
    dz = cp.from_numpy(z)
    bias = cp.from_numpy(np.linspace(-1, 1, 9).astype(dtype))
    assert cp.bias_act_forward(dz, bias, act, dz) is dz
    fresh = cp.bias_act_forward(cp.from_numpy(z), bias, act, cp.empty(z.shape, dtype))
    np.testing.assert_array_equal(cp.to_numpy(dz), cp.to_numpy(fresh))


def test_relu_conventions(cp) -> None:
    """relu(NaN) = NaN as np.maximum; relu'(0) = 0 as PyTorch; dz = 0 where y = 0 even for dy = inf."""
    z = np.array([[np.nan, -0.0, 0.0, -1.0, 2.0, np.inf, -np.inf]], np.float32)
    got = cp.to_numpy(cp.bias_act_forward(cp.from_numpy(z), None, "relu", cp.empty(z.shape, np.float32)))
    np.testing.assert_array_equal(got, [[np.nan, 0.0, 0.0, 0.0, 2.0, np.inf, 0.0]])
    y = np.array([[0.0, 0.0, 1.0]], np.float32)
    dy = np.array([[5.0, np.inf, 3.0]], np.float32)
    got = cp.to_numpy(cp.act_backward(cp.from_numpy(y), cp.from_numpy(dy), "relu", cp.empty(y.shape, np.float32)))
    np.testing.assert_array_equal(got, [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(got, NP.act_backward(y, dy, "relu", np.empty_like(y)))


def test_sigmoid_is_stable_for_any_input(cp) -> None:
    z = np.array([[-1e4, -745.0, -104.0, -88.0, 0.0, 88.0, 1e4, np.inf, -np.inf]], np.float32)
    got = cp.to_numpy(cp.bias_act_forward(cp.from_numpy(z), None, "sigmoid", cp.empty(z.shape, np.float32)))
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    assert got[0, 0] == 0.0 and got[0, 6] == 1.0 and got[0, 4] == 0.5
    truth = 1 / (1 + np.exp(-z.astype(np.float64).clip(-700, 700)))
    kc.assert_ulp(got, truth.astype(np.float32), 2, "sigmoid vs float64 truth")


def test_the_comparison_catches_a_wrong_kernel(cp, rng) -> None:
    """A kernel one ulp off, or with a NaN NumPy does not have, fails the check."""
    a = np.array([1.0, 2.0, np.nan], np.float32)
    b = a.copy()
    b[0] = np.nextafter(b[0], np.float32(2))
    with pytest.raises(AssertionError, match="1 ulp apart"):
        kc.assert_ulp(b, a, 0, "x")
    kc.assert_ulp(b, a, 1, "x")
    with pytest.raises(AssertionError, match="NaN on one side"):
        kc.assert_ulp(np.array([np.nan], np.float32), np.array([0.0], np.float32), 10, "x")
    assert kc.ulp_distance(np.float32([0.0]), np.float32([-0.0]))[0] == 0


@pytest.mark.parametrize("backend_name", ["numpy", "cupy-standin"])
def test_half_hyperparameters(backend_name) -> None:
    b = NP if backend_name == "numpy" else stand_in_backend()
    p = b.from_numpy(np.ones(3, np.float16))
    m, v = b.zeros((3,), np.float16), b.zeros((3,), np.float16)
    with np.errstate(all="ignore"):
        b.adam_update(p, b.from_numpy(np.array([0.0, 1e-3, 1.0], np.float16)), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    assert np.all(np.isfinite(b.to_numpy(p)))
    # a zero gradient leaves the weight alone; the others move by about lr (Adam's first step)
    np.testing.assert_allclose(b.to_numpy(p).astype(np.float64), [1.0, 1.0 - 1e-3, 1.0 - 1e-3], rtol=0, atol=2e-4)


def test_a_kernel_with_the_wrong_convention_fails_its_check(rng) -> None:
    """relu'(0) = 1 instead of PyTorch's 0: the backward check must reject it."""
    from fcgpu.backends.cupy import kernel_sources
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.testing import fake_cupy

    broken = CupyBackend(fake_cupy)
    broken._kernels["fcgpu_relu_bwd"] = fake_cupy.ElementwiseKernel(
        "T y, T dy", "T dz", "dz = y >= T(0) ? dy : T(0)", "fcgpu_relu_bwd_wrong", preamble=kernel_sources.preamble()
    )
    with pytest.raises(AssertionError, match="relu backward"):
        kc.check_backward(broken, "relu", np.float32, rng, kc.HOST)


def test_a_softmax_row_kernel_without_the_max_shift_fails_its_check(rng) -> None:
    """exp(z) / sum without subtracting the row's max overflows for large logits: the check must see it."""
    from fcgpu.backends.cupy import kernel_sources
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.testing import fake_cupy

    preamble = kernel_sources.preamble() + """
template <typename T, typename Z, typename Y> FC_FN void fc_unshifted_softmax(const Z& z, Y& y, long long row, long long n) {
    typedef typename fc_acc<T>::type A;
    A sum = A(0);
    for (long long c = 0; c < n; ++c) sum += fc_exp(A(z[row * n + c]));
    for (long long c = 0; c < n; ++c) y[row * n + c] = T(fc_exp(A(z[row * n + c])) / sum);
}
"""
    broken = CupyBackend(fake_cupy)
    broken._kernels["fcgpu_softmax_fwd"] = fake_cupy.ElementwiseKernel(
        "raw T z, int64 ncols", "raw T y", "if (i % 32 == 0) fc_unshifted_softmax<T>(z, y, i / 32, ncols)",  # launched a warp a row
        "fcgpu_softmax_unshifted", preamble=preamble
    )
    with pytest.raises(AssertionError, match="softmax forward"):
        kc.check_forward(broken, "softmax", np.float32, False, rng, kc.HOST)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_gpu_tolerances_accept_the_host_results(cp, dtype, rng) -> None:
    """The GPU profile only widens the host one; its FMA slack terms run here too (no warnings, no NaN)."""
    for case in kc.ADAM_CASES:
        kc.check_adam(cp, dtype, case, rng, kc.GPU)
    for case in kc.SGD_CASES:
        kc.check_sgd(cp, dtype, case, rng, kc.GPU)
    # Every activation's GPU budget covers the host's results; inputs unflushed, as the host reads them.
    gpu_budgets = dataclasses.replace(kc.GPU, flushes_inputs=False)
    for act in ACTIVATIONS:
        kc.check_forward(cp, act, dtype, True, rng, gpu_budgets)
        kc.check_backward(cp, act, dtype, rng, gpu_budgets)
