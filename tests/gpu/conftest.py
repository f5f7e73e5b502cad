"""The device suite's fixture: the real CuPy backend, or a skip saying why there is none."""
from __future__ import annotations

import pytest

import fcgpu as fc


@pytest.fixture(scope="module")
def gpu():
    try:
        backend, _ = fc.backends.resolve_backend("cupy")
    except fc.BackendUnavailable as e:
        pytest.skip(f"needs a usable CUDA device: {e}")
    return backend
