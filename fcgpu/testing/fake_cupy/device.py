"""The stand-in's ``cupy.cuda``: a runtime and a ``Device`` that answer for the host as device 0.

Part of ``fcgpu.testing.fake_cupy`` (its package docstring says what the stand-in reproduces);
the subpackage ``fake_cupy.cuda`` serves these as ``cupy.cuda`` does.
``FCGPU_FAKE_CUPY_DEVICES=N`` makes it answer for N devices (default 1), all of them the host, so
that one process per device (data parallel, ``Device(local_rank).use()``) can be run; the current
device is tracked, nothing else differs between them. Streams: the null stream (address 0), the
per-thread default stream (1) and new streams (2, 3, ...), all running in order on the host; a
non-default stream can capture a CUDA graph (``capture``: ``Stream.begin_capture``/``end_capture``,
``Graph.launch``).
"""
from __future__ import annotations

import os
import itertools
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
        """Kernels run synchronously on the host, so there is nothing to wait for (refused while a
        stream captures, as CUDA refuses it)."""
        if _capture.any_open():
            raise _capture.refuse_sync("cudaDeviceSynchronize")

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
        if _capture.any_open():
            raise _capture.refuse_sync("Device.synchronize")

    def use(self) -> None:
        Runtime.setDevice(self.id)

    def __enter__(self) -> "Device":
        self._previous.append(Runtime._current)
        Runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        Runtime.setDevice(self._previous.pop())


class Stream:
    """``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None)``: the null stream
    (address 0), the per-thread default one (1) or a new one; ``with stream:`` or ``use()`` makes it
    current. Everything runs in order on the host; a new stream can capture a graph."""

    _addresses = itertools.count(2)

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False,
                 priority: int | None = None) -> None:
        self.ptr = 0 if null else 1 if ptds else next(Stream._addresses)
        self.device_id = -1 if (null or ptds) else Runtime._current
        self._non_blocking = bool(non_blocking) and not (null or ptds)
        self.priority = 0 if priority is None else int(priority)
        self._previous: list[Stream] = []

    def is_non_blocking(self) -> bool:
        return self._non_blocking

    def synchronize(self) -> None:
        if _capture.is_capturing(self):
            raise _capture.refuse_sync("cudaStreamSynchronize on a capturing stream")

    def use(self) -> "Stream":
        _capture.make_current(self)
        return self

    def __enter__(self) -> "Stream":
        self._previous.append(_capture.current())
        _capture.make_current(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _capture.make_current(self._previous.pop())

    def begin_capture(self, mode: int | None = None) -> None:
        """Start recording this stream's operations (CuPy's check first: not on a default stream)."""
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        _capture.begin(self)

    def end_capture(self) -> "Graph":
        """The recorded operations as a ``Graph`` (cudaErrorStreamCaptureInvalidated if one was refused)."""
        return Graph._from_capture(_capture.end(self))

    def is_capturing(self) -> bool:
        return _capture.is_capturing(self)


Stream.null = Stream(null=True)  # type: ignore[attr-defined]
Stream.ptds = Stream(ptds=True)  # type: ignore[attr-defined]
def current_stream() -> Stream:
    """The stream ``with stream:`` or ``use()`` made current (the null stream otherwise)."""
    stream = _capture.current()
    return Stream.null if stream is None else stream  # type: ignore[attr-defined]


class Graph:
    """``cupy.cuda.Graph``: made only by ``Stream.end_capture()``; ``launch()`` replays the recorded
    operations in order on the arrays' current contents, counted as one device operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("currently this class cannot be initiated by the user and must be created via "
                                  "stream capture")

    @classmethod
    def _from_capture(cls, capture: Any) -> "Graph":
        graph = cls.__new__(cls)
        graph._ops = list(capture.ops)
        return graph

    def launch(self, stream: Stream | None = None) -> None:
        from .counting import counted

        if _capture.active() is not None:
            raise NotImplementedError("fcgpu's stand-in does not model a graph launched inside a capture")
        with counted("graph", "graph_launch"):
            for _, op in self._ops:
                op()

    def upload(self, stream: Stream | None = None) -> None:
        """Nothing to upload on the host."""


def current_device() -> int:
    """The device ``setDevice`` (or ``Device.use``) chose last."""
    return Runtime._current
