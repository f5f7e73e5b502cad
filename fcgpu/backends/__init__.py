"""Backend registry: which backend is active, and why.

Nothing here touches a GPU at import time: CuPy is imported and probed the first time a
backend is resolved ('auto', 'cupy', ``available_backends()`` or ``backend_info()``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

import numpy as np

from .base import Backend, BackendMismatch, BackendUnavailable
from .numpy_backend import NumpyBackend

__all__ = [
    "Backend",
    "BackendMismatch",
    "BackendUnavailable",
    "available_backends",
    "backend_info",
    "get_backend",
    "resolve_backend",
    "set_backend",
    "to_numpy",
    "use_backend",
]

log = logging.getLogger("fcgpu")

NAMES = ("numpy", "cupy", "auto")

_numpy = NumpyBackend()
_cupy: Backend | None = None
_cupy_reason: str | None = None  # why CuPy is not usable, once probed
_active: Backend | None = None
_active_reason = ""
_auto_logged = False  # 'auto' says what it chose once per process


def _probe_cupy() -> tuple[Backend | None, str]:
    """Import CuPy, find a device and run one tiny kernel; (backend, reason) with backend None on failure."""
    global _cupy, _cupy_reason
    if _cupy is not None:
        return _cupy, "a CUDA device is usable"
    if _cupy_reason is not None:
        return None, _cupy_reason
    try:
        import cupy
    except ImportError as e:
        _cupy_reason = f"cupy is not installed ({e}); install fcgpu[cuda12] or fcgpu[cuda13]"
        return None, _cupy_reason
    except Exception as e:  # a broken install must not take fcgpu down with it
        _cupy_reason = f"cupy failed to import: {type(e).__name__}: {e}"
        return None, _cupy_reason
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        text = str(e)
        if "InsufficientDriver" in text or "driver" in text.lower():
            _cupy_reason = f"no usable CUDA driver ({text})"
        elif "NoDevice" in text:
            _cupy_reason = f"no CUDA device ({text})"
        else:
            _cupy_reason = f"the CUDA runtime failed: {type(e).__name__}: {text}"
        return None, _cupy_reason
    if count < 1:
        _cupy_reason = "no CUDA device (cudaGetDeviceCount returned 0)"
        return None, _cupy_reason
    try:
        from .cupy_backend import CupyBackend

        backend = CupyBackend(cupy)
        # One of each kind of work a layer does: a cuBLAS GEMM, an fcgpu kernel, a reduction.
        x = backend.from_numpy(np.array([[1.0, -2.0]], np.float32))
        w = backend.from_numpy(np.array([[1.0, 0.0], [0.5, 1.0]], np.float32))
        y = backend.matmul(x, w, out=backend.empty((1, 2), np.float32))
        backend.bias_act_forward(y, backend.from_numpy(np.array([0.5, 0.5], np.float32)), "relu", out=y)
        total = backend.sum_rows(y, out=backend.empty((2,), np.float32))
        got = backend.to_numpy(total)
        if not np.array_equal(got, np.array([0.5, 0.0], np.float32)):
            raise RuntimeError(f"a test layer computed {got.tolist()} instead of [0.5, 0.0]")
    except Exception as e:
        _cupy_reason = f"a test kernel failed to compile or run on the device (cuBLAS, NVRTC, driver?): {type(e).__name__}: {e}"
        return None, _cupy_reason
    _cupy = backend
    return _cupy, "a CUDA device is usable"


def resolve_backend(name: str | Backend) -> tuple[Backend, str]:
    """The backend for ``name`` ('numpy' | 'cupy' | 'auto' or a Backend instance), with the reason."""
    if isinstance(name, Backend):
        return name, "given as an instance"
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"backend: expected one of {list(NAMES)}, got {name!r}")
    name = name.lower()
    if name == "numpy":
        return _numpy, "requested"
    backend, reason = _probe_cupy()
    if name == "cupy":
        if backend is None:
            raise BackendUnavailable(f"backend 'cupy' is not usable here: {reason}")
        return backend, "requested"
    if backend is not None:
        return backend, f"auto: {reason}"
    return _numpy, f"auto: numpy, because {reason}"


def set_backend(name: str | Backend) -> Backend:
    """Make ``name`` the active backend: 'numpy', 'cupy' (raises BackendUnavailable if unusable) or 'auto'."""
    global _active, _active_reason, _auto_logged
    backend, reason = resolve_backend(name)
    if isinstance(name, str) and name.lower() == "auto" and not _auto_logged:
        log.info("fcgpu backend: %s (%s)", backend.name, reason)
        _auto_logged = True
    _active, _active_reason = backend, reason
    return backend


def get_backend() -> Backend:
    """The active backend; on first use it comes from FCGPU_BACKEND (unset means 'auto')."""
    if _active is None:
        default = os.environ.get("FCGPU_BACKEND", "auto") or "auto"
        try:
            set_backend(default)
        except ValueError:
            raise ValueError(f"FCGPU_BACKEND: expected one of {list(NAMES)}, got {default!r}") from None
    assert _active is not None
    return _active


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Activate a backend for a ``with`` block; the previous one is restored on exit, also on error."""
    global _active, _active_reason
    previous = (_active, _active_reason)
    try:
        yield set_backend(name)
    finally:
        _active, _active_reason = previous


def available_backends() -> list[str]:
    """Backends usable on this machine now: ['numpy'] or ['numpy', 'cupy']."""
    return ["numpy"] + (["cupy"] if _probe_cupy()[0] is not None else [])


def backend_info() -> dict[str, Any]:
    """The active backend, why it was chosen, and device and library versions."""
    backend = get_backend()
    info: dict[str, Any] = {
        "active": backend.name,
        "reason": _active_reason,
        "numpy": np.__version__,
        "available": available_backends(),
    }
    cupy_backend, cupy_reason = _probe_cupy()
    info["cupy_status"] = cupy_reason
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except Exception:
        info["cupy"] = None
    for source in (cupy_backend, backend):
        if source is not None and source.name == "cupy":
            info.update({k: v for k, v in source.info().items() if k != "backend"})
    info.setdefault("device", "host CPU" if backend.name == "numpy" else None)
    return info


def to_numpy(a: Any) -> np.ndarray:
    """A host ndarray from an array of any backend (or anything ``np.asarray`` accepts)."""
    if type(a) is np.ndarray:
        return a
    for backend in (_active, _cupy):
        if backend is not None and backend.owns(a):
            return backend.to_numpy(a)
    get = getattr(a, "get", None)  # cupy.ndarray.get() copies to the host
    if callable(get) and hasattr(a, "__cuda_array_interface__"):
        return get()
    return np.asarray(a)
