"""Running fcgpu's CuPy code path without a GPU.

- ``fake_cupy``: a host stand-in for the part of CuPy that fcgpu uses; its ElementwiseKernel runs
  the real ``kernels/*.cuh`` compiled for the host (its docstring lists what it does not reproduce).
- ``stand_in_backend()``: fcgpu's CuPy backend built on it; ``warm_stand_in()`` compiles its
  kernels in parallel ahead of use.
- ``fcgpu.testing.cuda_compile``: every kernel exactly as CuPy would generate it, compiled by NVRTC
  for sm_80 and sm_90 (``python -m fcgpu.testing.cuda_compile``); its parts live in
  ``fcgpu.testing.compile_gate``.
- ``fcgpu.testing.kernel_checks``: each kernel against the NumPy backend in ulp, with host and GPU
  tolerances.
- ``count_device_ops()`` (from ``fake_cupy.counting``): the device operations and host<->device
  transfers a block makes on the stand-in, counted as a GPU would launch them.
- ``launches_per_step()`` (``fcgpu.testing.launches``): the device operations of one training
  step inside ``fit``, by kind, with per-epoch and per-call work apart (``fcgpu bench --launches``).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Sequence

from . import fake_cupy
from .fake_cupy import DeviceOps, OpCounts, count_device_ops
from .launches import LaunchReport, launches_per_step

if TYPE_CHECKING:
    from ..backends.cupy_backend import CupyBackend

__all__ = [
    "DeviceOps",
    "LaunchReport",
    "OpCounts",
    "count_device_ops",
    "fake_cupy",
    "launches_per_step",
    "stand_in_backend",
    "warm_stand_in",
]


@functools.lru_cache(maxsize=None)
def stand_in_backend() -> "CupyBackend":
    """fcgpu's CuPy backend running on ``fake_cupy`` (one shared instance, so kernels are built once)."""
    from ..backends.cupy_backend import CupyBackend

    return CupyBackend(fake_cupy)


def warm_stand_in(dtypes: Sequence[str] = ("float32", "float64", "float16"), workers: int | None = None) -> int:
    """Compile, in parallel, the host kernels fcgpu's CuPy backend uses in ``dtypes``; returns their count.

    Optional: kernels otherwise compile one by one on first use (about 0.25 s each, then cached on disk).
    """
    from .cuda_compile import trace_backend_calls

    calls = []
    for call in trace_backend_calls():
        for dtype in dtypes:
            calls.append(dataclasses.replace(call, dtypes=tuple(dtype if d == "float32" else d for d in call.dtypes)))
    return fake_cupy.precompile(calls, workers or min(4, os.cpu_count() or 1))
