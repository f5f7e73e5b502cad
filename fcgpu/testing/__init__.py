"""Running fcgpu's CuPy code path without a GPU.

``fake_cupy`` is a host stand-in for the part of CuPy that fcgpu uses (its ElementwiseKernel runs
the real ``kernels/*.cuh`` compiled for the host); ``stand_in_backend()`` is fcgpu's CuPy backend
built on it. ``fcgpu.testing.cuda_compile`` compiles every kernel exactly as CuPy would generate it,
with NVRTC, for real GPU architectures.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import fake_cupy

if TYPE_CHECKING:
    from ..backends.cupy_backend import CupyBackend

__all__ = ["fake_cupy", "stand_in_backend"]


@functools.lru_cache(maxsize=None)
def stand_in_backend() -> "CupyBackend":
    """fcgpu's CuPy backend running on ``fake_cupy`` (one shared instance, so kernels are built once)."""
    from ..backends.cupy_backend import CupyBackend

    return CupyBackend(fake_cupy)
