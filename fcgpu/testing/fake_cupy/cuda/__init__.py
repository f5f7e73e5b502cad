"""The stand-in's ``cupy.cuda``: a subpackage, so that ``nccl`` is what it is in CuPy, a submodule.

``cublas`` (served on first access by CuPy's ``cupy.cuda.__getattr__``) is the stand-in's
``gemmEx``; ``device.get_cublas_handle`` names a handle per device.

After ``import cupy`` the real ``cupy.cuda`` has no ``nccl`` attribute (CuPy 14.2's
``cupy/cuda/__init__.py`` neither imports it nor serves it from its ``__getattr__``); ``from
cupy.cuda import nccl`` loads it. The same holds here: ``fake_cupy.cuda.nccl`` exists only once
``fcgpu.testing.fake_cupy.cuda.nccl`` has been imported (``fcgpu.testing.fake_nccl``'s CuPy names).
"""
from __future__ import annotations

import types as _types

from ..device import Device, Graph, Stream
from ..device import current_stream as get_current_stream
from ..device import Runtime as _Runtime
from ..device import current_device as _current_device
from . import cublas

runtime = _Runtime()
# cupy.cuda.device (a module in CuPy): the one cuBLAS handle of the current device.
device = _types.SimpleNamespace(get_cublas_handle=lambda: 1 + _current_device())


def is_available() -> bool:
    return True


def get_device_id() -> int:
    return _current_device()


__all__ = ["Device", "Graph", "Stream", "cublas", "device", "get_current_stream", "get_device_id", "is_available", "runtime"]
