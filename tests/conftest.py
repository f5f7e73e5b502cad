"""Shared fixtures.

Every test that takes the ``backend`` fixture runs three times:
- on NumPy;
- on the CuPy backend's own code against the host stand-in for CuPy (fcgpu.testing.fake_cupy),
  whose ElementwiseKernel runs the real kernels/*.cuh compiled for the host;
- on the real CuPy backend, marked ``gpu``: skipped with the reason when no CUDA device is usable,
  and selected alone on a GPU machine with ``pytest -m gpu``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

# Keras 3 (the tests' oracle for Keras behaviour) on PyTorch's CPU build, which the test extra brings.
os.environ.setdefault("KERAS_BACKEND", "torch")

import fcgpu as fc

BACKENDS = ["numpy", "cupy-standin", pytest.param("cupy", marks=pytest.mark.gpu)]


def make_backend(name: str):
    if name == "numpy":
        return fc.backends.resolve_backend("numpy")[0]
    if name == "cupy":
        try:
            return fc.backends.resolve_backend("cupy")[0]
        except fc.BackendUnavailable as e:
            pytest.skip(f"real-GPU variant: {e}")
    from fcgpu.testing import stand_in_backend

    return stand_in_backend()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Activates each backend in turn for the test's duration."""
    with fc.use_backend(make_backend(request.param)) as b:
        yield b


@pytest.fixture(scope="module")
def gpu():
    """The real CuPy backend for the device suite (tests/gpu/), or a skip saying why there is none."""
    try:
        backend, _ = fc.backends.resolve_backend("cupy")
    except fc.BackendUnavailable as e:
        pytest.skip(f"needs a usable CUDA device: {e}")
    return backend


@pytest.fixture
def backend_named():
    """``make_backend`` for tests that use two backends at once (moving between them), by the
    same names the ``backend`` fixture runs under: 'numpy', 'cupy-standin', 'cupy'."""
    return make_backend


@pytest.fixture(autouse=True)
def _seed():
    fc.set_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the cached CuPy probe so a test can present its own 'cupy' module (monkeypatch puts
    the real probe state back afterwards)."""
    monkeypatch.setattr(fc.backends, "_probe", fc.backends._Probe())
