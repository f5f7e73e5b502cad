"""Running fcgpu's CuPy code path without a GPU, for users' own CI as for fcgpu's.

- ``fake_cupy``: a host stand-in for the part of CuPy that fcgpu uses; its ElementwiseKernel runs
  the real ``kernels/*.cuh`` compiled for the host (its docstring lists what it does not reproduce);
  ``fake_nccl`` the same for NCCL.
- ``stand_in_backend()``: fcgpu's CuPy backend built on it.
- ``count_device_ops()`` (from ``fake_cupy.counting``): the device operations and host<->device
  transfers a block makes on the stand-in, counted as a GPU would launch them.

What checks fcgpu's own kernels (the NVRTC compile gate, the kernel checks against the NumPy
backend, the block emulator) is not shipped: it lives with the tests, in ``tests/support/``; the
launch counter of a training step and the cost model are the benchmark's (``fcgpu.bench``).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import fake_cupy
from .fake_cupy import DeviceOps, OpCounts, count_device_ops

if TYPE_CHECKING:
    from ..backends.cupy.backend import CupyBackend

__all__ = ["DeviceOps", "OpCounts", "count_device_ops", "fake_cupy", "stand_in_backend"]


@functools.lru_cache(maxsize=None)
def stand_in_backend() -> "CupyBackend":
    """fcgpu's CuPy backend running on ``fake_cupy`` (one shared instance, so kernels are built once)."""
    from ..backends.cupy.backend import CupyBackend

    return CupyBackend(fake_cupy)
