"""Streams and CUDA-graph capture on the stand-in, held to CuPy 14.2's and CUDA's rules: while the
current stream captures, work into existing arrays (kernels with outputs, ufuncs and reductions with
``out=``, copyto, fill, setitem) is recorded; ``Graph.launch()`` replays it, ONE device operation.
Refused as CuPy/CUDA refuse them, invalidating the capture: a default stream, D2H/H2D copies
(``memory.pyx``'s RuntimeError), synchronisation (cudaErrorStreamCaptureUnsupported), cuBLAS
(``cublas.pyx``'s NotImplementedError), allocations (cudaErrorStreamCaptureUnsupported: STRICTER than
CuPy's relaxed mode, whose pool may allocate; a graph keeping memory the pool reuses is a bug)."""
from __future__ import annotations

import itertools
from typing import Any, Callable

_ERRORS = {900: ("cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"),
           901: ("cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"),
           903: ("cudaErrorStreamCaptureUnmatched", "capture was not initiated in this stream")}
_open: list[list] = []  # [stream, recorded (name, fn) pairs, what invalidated it or None]: one capture at a time
_current: list[Any] = [None]  # the current stream; None: the null stream
counter: list[Any] = []  # ``counting.counted``, which registers itself (counting imports this module)


class CUDARuntimeError(RuntimeError):
    """``cupy.cuda.runtime.CUDARuntimeError(status)``: '<cudaError name>: <message>', ``status`` kept."""

    def __init__(self, status: int) -> None:
        self.status = int(status)
        super().__init__(": ".join(_ERRORS.get(self.status, (f"cudaError{status}", "unknown error"))))


def active() -> list | None:
    """The current stream's capture, or None (operations run as usual)."""
    return _open[0] if _open and _open[0][0] is _current[0] else None


def record(name: str, fn: Callable[[], Any]) -> None:
    _open[0][1].append((name, fn))


def refuse(kind: str, what: str) -> Exception:
    """The error CuPy or CUDA raises for a ``kind`` operation during capture, which it invalidates."""
    if _open and _open[0][2] is None:
        _open[0][2] = what
    if kind in ("to_host", "to_device"):
        way = "D2H" if kind == "to_host" else "H2D"
        return RuntimeError(f"the current stream is capturing, so {way} transfers are disallowed")
    if kind == "gemm":
        return NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")
    error = CUDARuntimeError(900)
    error.args = (f"{error.args[0]} ({what}; the stand-in refuses allocations during capture)",)
    return error


def refuse_sync(what: str) -> None:
    if _open:
        raise refuse("sync", what)


class Stream:
    """``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None)``; ``with stream:``
    or ``use()`` makes it current. Address 0 (null), 1 (per-thread default) or 2, 3, ... (new)."""

    _addresses = itertools.count(2)

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False, priority: Any = None) -> None:
        self.ptr, self._previous = 0 if null else 1 if ptds else next(Stream._addresses), []

    def synchronize(self) -> None:
        refuse_sync("cudaStreamSynchronize")  # (any stream while one captures: stricter than CUDA)

    def use(self) -> "Stream":
        _current[0] = self
        return self

    def __enter__(self) -> "Stream":
        self._previous.append(_current[0])
        return self.use()

    def __exit__(self, *exc: object) -> None:
        _current[0] = self._previous.pop()

    def begin_capture(self, mode: int | None = None) -> None:
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if _open:
            raise NotImplementedError("the stand-in models one capture at a time")
        _open.append([self, [], None])

    def end_capture(self) -> "Graph":
        if not self.is_capturing():
            raise CUDARuntimeError(903)
        _, ops, invalidated = _open.pop()
        if invalidated is not None:
            raise CUDARuntimeError(901)
        return Graph(_ops=ops)

    def is_capturing(self) -> bool:
        return bool(_open) and _open[0][0] is self


Stream.null, Stream.ptds = Stream(null=True), Stream(ptds=True)  # type: ignore[attr-defined]


def current_stream() -> Stream:
    return _current[0] or Stream.null  # type: ignore[attr-defined]


class Graph:
    """``cupy.cuda.Graph``, made by ``Stream.end_capture()``."""

    def __init__(self, *args: Any, _ops: list | None = None, **kwargs: Any) -> None:
        if _ops is None:
            raise NotImplementedError("currently this class cannot be initiated by the user and must be created "
                                      "via stream capture")
        self._ops = _ops

    def launch(self, stream: Stream | None = None) -> None:
        with counter[0]("graph", "graph_launch"):  # one operation (refused inside a capture: not modelled)
            for _, op in self._ops:
                op()
