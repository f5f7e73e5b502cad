"""The stand-in's ``cupy.cuda``: a subpackage, so that ``nccl`` is what it is in CuPy, a submodule.

After ``import cupy`` the real ``cupy.cuda`` has no ``nccl`` attribute (CuPy 14.2's
``cupy/cuda/__init__.py`` neither imports it nor serves it from its ``__getattr__``); ``from
cupy.cuda import nccl`` loads it. The same holds here: ``fake_cupy.cuda.nccl`` exists only once
``fcgpu.testing.fake_cupy.cuda.nccl`` has been imported (it is ``fcgpu.testing.fake_nccl``).
"""
from __future__ import annotations

from ..device import _Device as Device
from ..device import _Runtime, _Stream

runtime = _Runtime()
Stream = _Stream


def get_current_stream() -> _Stream:
    return _Stream.null  # type: ignore[attr-defined]


def is_available() -> bool:
    return True


def get_device_id() -> int:
    return _Runtime.current


__all__ = ["Device", "Stream", "get_current_stream", "get_device_id", "is_available", "runtime"]
