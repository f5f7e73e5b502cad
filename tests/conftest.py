"""Shared fixtures: every backend-parametrised test runs on NumPy and on the CuPy backend's own code,
the latter against the host stand-in for CuPy (fcgpu.testing.fake_cupy) whose kernels are the real
kernels/*.cuh compiled for the host."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc

BACKENDS = ["numpy", "cupy-standin"]


def make_backend(name: str):
    if name == "numpy":
        return fc.backends.resolve_backend("numpy")[0]
    from fcgpu.testing import stand_in_backend

    return stand_in_backend()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Activates each backend in turn for the test's duration."""
    with fc.use_backend(make_backend(request.param)) as b:
        yield b


@pytest.fixture(autouse=True)
def _seed():
    fc.set_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
