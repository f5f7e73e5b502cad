"""The stand-in's ``cupy.cuda``: a runtime and a ``Device`` that answer for one device, the host.

Part of ``fcgpu.testing.fake_cupy`` (its package docstring says what the stand-in reproduces);
the package exposes this as ``fake_cupy.cuda``.
"""
from __future__ import annotations

import types
from typing import Any

DEVICE_NAME = "host stand-in"


class _Runtime:
    """``cupy.cuda.runtime`` for one device, the host."""

    CUDA_VERSION = 13000

    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802 - CUDA's names
        return 1

    @staticmethod
    def getDevice() -> int:  # noqa: N802
        return 0

    @staticmethod
    def setDevice(device: int) -> None:  # noqa: N802
        if device != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: the stand-in has one device (0), got {device}")

    @staticmethod
    def getDeviceProperties(device: int) -> dict[str, Any]:  # noqa: N802
        _Runtime.setDevice(device)
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
        return _Runtime.CUDA_VERSION

    @staticmethod
    def driverGetVersion() -> int:  # noqa: N802
        return _Runtime.CUDA_VERSION

    @staticmethod
    def deviceSynchronize() -> None:  # noqa: N802
        """Kernels run synchronously on the host, so there is nothing to wait for."""


class _Device:
    """``cupy.cuda.Device``: only device 0 exists."""

    def __init__(self, device: int | None = 0) -> None:
        self.id = 0 if device is None else int(device)
        _Runtime.setDevice(self.id)

    compute_capability = "00"

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass

    def __enter__(self) -> "_Device":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


cuda = types.SimpleNamespace(
    runtime=_Runtime(),
    Device=_Device,
    is_available=lambda: True,
    get_device_id=lambda: 0,
)
