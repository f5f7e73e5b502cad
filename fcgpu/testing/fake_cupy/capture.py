"""CUDA-graph stream capture on the stand-in: what CuPy 14.2 and CUDA allow while a stream captures.

Part of ``fcgpu.testing.fake_cupy``. ``cuda.Stream.begin_capture()`` on a non-default stream opens a
capture; while the current stream captures, every device operation is recorded instead of run, and
``end_capture()`` returns a ``cuda.Graph`` whose ``launch()`` replays the recorded operations in order
on the arrays' contents at launch time, counted as ONE device operation ('graph', 'graph_launch').

Recorded (they write into arrays that already exist): ElementwiseKernel calls with every output
given, ufuncs and reductions with ``out=``, ``copyto``, ``fill`` and ``__setitem__`` of a device value
or a scalar. Refused, as CuPy 14.2 / CUDA refuse them (the capture is then invalidated, and
``end_capture`` raises ``cudaErrorStreamCaptureInvalidated`` as CUDA does):

- a capture on the default stream: ``RuntimeError('cannot capture on the default (legacy) stream')``
  (``cupy/cuda/stream.pyx``);
- a device-to-host read (``.get()``, ``asnumpy``, ``float(x)``, ``item``, a boolean-mask gather) or a
  host-to-device copy: ``RuntimeError('the current stream is capturing, so D2H transfers are
  disallowed')`` / ``... H2D transfers ...`` (``cupy/cuda/memory.pyx``);
- a synchronisation (stream, device): ``CUDARuntimeError`` cudaErrorStreamCaptureUnsupported;
- any cuBLAS call (``matmul``, ``dot``, ``cuda.cublas.gemmEx``): ``NotImplementedError('calling
  cuBLAS API during stream capture is currently unsupported')`` (``cupy_backends/.../cublas.pyx``);
- any allocation (an operation without ``out=``, ``empty``, ``zeros``, ``astype``, a gather):
  ``CUDARuntimeError`` cudaErrorStreamCaptureUnsupported. STRICTER than CuPy: in its default relaxed
  capture mode CuPy's pool may still allocate (``cudaMalloc`` is permitted), but a graph that keeps a
  pointer the pool hands out again after the capture is a bug; the stand-in has no capture-safe pool,
  so code under capture must allocate nothing (warm up first).
Not modelled: capture modes, events and cross-stream dependencies, graph launches inside a capture.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["CUDARuntimeError", "Capture", "active", "current", "make_current", "record", "refuse", "refuse_allocation", "refuse_cublas", "refuse_d2h", "refuse_h2d",
           "refuse_sync"]

CUBLAS_MESSAGE = "calling cuBLAS API during stream capture is currently unsupported"
CAPTURE_UNSUPPORTED = 900  # cudaErrorStreamCaptureUnsupported
CAPTURE_INVALIDATED = 901  # cudaErrorStreamCaptureInvalidated


class Capture:
    """An open capture: the stream's recorded operations, and whether a refused call invalidated it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.ops: list[tuple[str, Callable[[], Any]]] = []
        self.invalidated: str | None = None


_open: list[Capture] = []  # at most one here: the stand-in runs one host thread
_current: list[Any] = [None]  # the current stream (``device.Stream``; None: the null stream)


def current() -> Any:
    """The stream made current (``with stream:``, ``use()``), or None for the null stream."""
    return _current[0]


def make_current(stream: Any) -> None:
    _current[0] = stream


def active() -> Capture | None:
    """The capture of the current stream, or None (operations then run as usual)."""
    if not _open:
        return None
    capture = _open[-1]
    return capture if capture.stream is _current[0] else None


def begin(stream: Any) -> None:
    if any(c.stream is stream for c in _open):
        raise _runtime_error(CAPTURE_UNSUPPORTED, "the stream is already capturing")
    if _open:
        raise NotImplementedError("fcgpu's stand-in models one capture at a time")
    _open.append(Capture(stream))


def end(stream: Any) -> Capture:
    for k, capture in enumerate(_open):
        if capture.stream is stream:
            del _open[k]
            if capture.invalidated is not None:
                raise _runtime_error(CAPTURE_INVALIDATED, f"(first refused: {capture.invalidated})")
            return capture
    raise _runtime_error(903)  # cudaErrorStreamCaptureUnmatched


def is_capturing(stream: Any) -> bool:
    return any(c.stream is stream for c in _open)


def record(name: str, fn: Callable[[], Any]) -> None:
    """Add one operation to the current stream's capture (``active()`` must be true)."""
    capture = active()
    assert capture is not None
    capture.ops.append((name, fn))


# cudaError_t names and messages of the errors the stand-in raises (CUDA 13's cudaGetErrorString).
_ERRORS = {
    CAPTURE_UNSUPPORTED: ("cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"),
    CAPTURE_INVALIDATED: ("cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"),
    903: ("cudaErrorStreamCaptureUnmatched", "capture was not initiated in this stream"),
}


class CUDARuntimeError(RuntimeError):
    """``cupy.cuda.runtime.CUDARuntimeError(status)``: '<cudaError name>: <message>', ``status`` kept."""

    def __init__(self, status: int) -> None:
        self.status = int(status)
        name, message = _ERRORS.get(self.status, (f"cudaError{self.status}", "unknown error"))
        super().__init__(f"{name}: {message}")


def _runtime_error(status: int, detail: str = "") -> Exception:
    error = CUDARuntimeError(status)
    if detail:
        error.args = (f"{error.args[0]} {detail}".rstrip(),)
    return error


def refuse(error: Exception, what: str) -> Exception:
    """``error``, after marking the open capture invalidated by ``what`` (as CUDA does)."""
    for capture in _open:
        if capture.invalidated is None:
            capture.invalidated = what
    return error


def refuse_allocation(what: str) -> Exception:
    return refuse(_runtime_error(CAPTURE_UNSUPPORTED, f"({what} allocates: fcgpu's stand-in refuses allocations "
                                                      "during capture; allocate every buffer before capturing)"), what)


def refuse_d2h(what: str) -> Exception:
    return refuse(RuntimeError("the current stream is capturing, so D2H transfers are disallowed"), what)


def refuse_h2d(what: str) -> Exception:
    return refuse(RuntimeError("the current stream is capturing, so H2D transfers are disallowed"), what)


def refuse_sync(what: str) -> Exception:
    return refuse(_runtime_error(CAPTURE_UNSUPPORTED, f"({what})"), what)


def refuse_cublas(what: str) -> Exception:
    return refuse(NotImplementedError(CUBLAS_MESSAGE), what)


def any_open() -> bool:
    return bool(_open)
