"""The stand-in's ``cupy.cuda``: a runtime and a ``Device`` that answer for the host as device 0.

Part of ``fcgpu.testing.fake_cupy`` (its package docstring says what the stand-in reproduces);
the subpackage ``fake_cupy.cuda`` serves these as ``cupy.cuda`` does.
``FCGPU_FAKE_CUPY_DEVICES=N`` makes it answer for N devices (default 1), all of them the host, so
that one process per device (data parallel, ``Device(local_rank).use()``) can be run; the current
device is tracked, nothing else differs between them. ``Stream`` and ``Graph`` are ``capture``'s.
"""
from __future__ import annotations

import os
from typing import Any

from . import capture as _capture

DEVICE_NAME = "host stand-in"


def device_count() -> int:
    """How many devices the stand-in answers for: ``FCGPU_FAKE_CUPY_DEVICES`` (default 1)."""
    text = os.environ.get("FCGPU_FAKE_CUPY_DEVICES", "").strip()
    return max(1, int(text)) if text.isdigit() else 1


class Runtime:
    """``cupy.cuda.runtime`` for one device, the host."""

    _CUDA_VERSION = 13000
    CUDA_R_32F, CUDA_R_64F, CUDA_R_16F, CUDA_R_16BF = 0, 1, 2, 14  # cudaDataType, as CuPy's runtime has them
    _current = 0  # the device setDevice chose

    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802 - CUDA's names
        return device_count()

    @staticmethod
    def getDevice() -> int:  # noqa: N802
        return Runtime._current

    @staticmethod
    def _check(device: int) -> None:
        count = device_count()
        if not 0 <= device < count:
            devices = "one device (0)" if count == 1 else f"{count} devices (0..{count - 1})"
            raise RuntimeError(f"cudaErrorInvalidDevice: the stand-in has {devices}, got {device}")

    @staticmethod
    def setDevice(device: int) -> None:  # noqa: N802
        Runtime._check(device)
        Runtime._current = int(device)

    @staticmethod
    def getDeviceProperties(device: int) -> dict[str, Any]:  # noqa: N802
        Runtime._check(device)
        return {
            "name": DEVICE_NAME.encode(),
            "major": 0,
            "minor": 0,
            "totalGlobalMem": 0,
            "multiProcessorCount": 1,
            "warpSize": 32,
        }

    @staticmethod
    def runtimeGetVersion() -> int:  # noqa: N802
        return Runtime._CUDA_VERSION

    @staticmethod
    def driverGetVersion() -> int:  # noqa: N802
        return Runtime._CUDA_VERSION

    @staticmethod
    def deviceSynchronize() -> None:  # noqa: N802
        """Kernels run synchronously on the host: nothing to wait for (refused during a capture)."""
        _capture.refuse_sync("cudaDeviceSynchronize")

    streamCaptureModeGlobal, streamCaptureModeThreadLocal, streamCaptureModeRelaxed = 0, 1, 2  # noqa: N815


CUDARuntimeError = _capture.CUDARuntimeError
Runtime.CUDARuntimeError = CUDARuntimeError  # type: ignore[attr-defined]


class Device:
    """``cupy.cuda.Device``: devices 0 .. ``device_count() - 1`` (None: the current one)."""

    def __init__(self, device: int | None = None) -> None:
        self.id = Runtime._current if device is None else int(device)
        Runtime._check(self.id)
        self._previous: list[int] = []

    compute_capability = "00"

    def synchronize(self) -> None:
        _capture.refuse_sync("Device.synchronize")

    def use(self) -> None:
        Runtime.setDevice(self.id)

    def __enter__(self) -> "Device":
        self._previous.append(Runtime._current)
        Runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        Runtime.setDevice(self._previous.pop())


Stream, Graph, current_stream = _capture.Stream, _capture.Graph, _capture.current_stream


def current_device() -> int:
    """The device ``setDevice`` (or ``Device.use``) chose last."""
    return Runtime._current
