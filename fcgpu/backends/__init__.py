"""Backend registry: which backend is active, and why.

The active backend is a context variable (as Thinc's current ops): ``use_backend`` changes it
for a block of one thread or task only; ``set_backend`` also makes it the process default that
other threads start from. Nothing here touches a GPU at import time: CuPy is imported and
probed the first time a backend is resolved ('auto', 'cupy', ``available_backends()`` or
``backend_info()``), and the probe's outcome is kept for the process.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from typing import Any, Iterator

import numpy as np

from .base import Backend, BackendMismatch, BackendUnavailable
from .numpy.backend import NumpyBackend

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


class _Probe:
    """The outcome of probing CuPy, once per process: a backend, or the reason there is none."""

    backend: Backend | None = None
    reason: str | None = None
    device: int | None = None  # the GPU this process uses (data parallel: its local rank); None: the current one


class _Default:
    """The process-wide default (backend, reason), set by ``set_backend``; None until first use."""

    choice: tuple[Backend, str] | None = None
    auto_logged = False  # 'auto' says what it chose once per process


_probe = _Probe()
_default = _Default()
_active: contextvars.ContextVar[tuple[Backend, str] | None] = contextvars.ContextVar("fcgpu_backend", default=None)


_NOT_INSTALLED = "cupy is not installed"
_BROKEN = "cupy failed to import"


def _probe_cupy() -> tuple[Backend | None, str]:
    """Import CuPy, find a device and run one tiny kernel; (backend, reason) with backend None on failure."""
    if _probe.backend is not None:
        return _probe.backend, "a CUDA device is usable"
    if _probe.reason is not None:
        return None, _probe.reason
    backend, reason = _probe_once()
    _probe.backend, _probe.reason = backend, None if backend is not None else reason
    return backend, reason


def _probe_once() -> tuple[Backend | None, str]:
    """Import CuPy, count devices and run a test layer: (backend, 'a CUDA device is usable') or (None, why not).

    Only a ModuleNotFoundError for ``cupy`` itself means it is not installed; any other failure to
    import (a missing CUDA library, a submodule that does not load) is a broken install, said so.
    """
    try:
        import cupy
    except ModuleNotFoundError as e:
        if e.name == "cupy":
            return None, f"{_NOT_INSTALLED} ({e}); install fcgpu[cuda12] or fcgpu[cuda13]"
        return None, f"{_BROKEN}: {type(e).__name__}: {e}"
    except Exception as e:  # a broken install must not take fcgpu down with it
        return None, f"{_BROKEN}: {type(e).__name__}: {e}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        text = str(e)
        if "InsufficientDriver" in text or "driver" in text.lower():
            reason = f"no usable CUDA driver ({text})"
        elif "NoDevice" in text:
            reason = f"no CUDA device ({text})"
        else:
            reason = f"the CUDA runtime failed: {type(e).__name__}: {text}"
        return None, reason
    if count < 1:
        return None, "no CUDA device (cudaGetDeviceCount returned 0)"
    if _probe.device is not None and _probe.device >= count:
        return None, f"no CUDA device {_probe.device} for this process (its local rank) among the {count} visible"
    try:
        from .cupy.backend import CupyBackend

        backend = CupyBackend(cupy)
        if _probe.device is not None:
            backend.use_device(_probe.device)
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
        return None, f"a test kernel failed to compile or run on the device (cuBLAS, NVRTC, driver?): {type(e).__name__}: {e}"
    return backend, "a CUDA device is usable"


def assign_device(index: int) -> None:
    """Use GPU ``index`` in this process (data parallel: one GPU per local rank): at once when the
    CuPy backend is already in use, else when CuPy is first probed, before anything runs on a GPU.
    Imports nothing; a process that never uses CuPy never touches a GPU."""
    _probe.device = int(index)
    if _probe.backend is not None:
        _probe.backend.use_device(_probe.device)


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
    """Make ``name`` the active backend: 'numpy', 'cupy' (raises BackendUnavailable if unusable) or 'auto'.

    It becomes the process default too, so threads started afterwards use it.
    """
    backend, reason = resolve_backend(name)
    if isinstance(name, str) and name.lower() == "auto" and not _default.auto_logged:
        log.info("fcgpu backend: %s (%s)", backend.name, reason)
        _default.auto_logged = True
    _default.choice = (backend, reason)
    _active.set(None)
    return backend


def _current() -> tuple[Backend, str]:
    choice = _active.get() or _default.choice
    if choice is None:
        default = os.environ.get("FCGPU_BACKEND", "auto") or "auto"
        try:
            set_backend(default)
        except ValueError:
            raise ValueError(f"FCGPU_BACKEND: expected one of {list(NAMES)}, got {default!r}") from None
        choice = _default.choice
    assert choice is not None
    return choice


def get_backend() -> Backend:
    """The active backend; on first use it comes from FCGPU_BACKEND (unset means 'auto')."""
    return _current()[0]


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Activate a backend for a ``with`` block of this thread or task; the previous one is restored
    on exit, also on error."""
    token = _active.set(resolve_backend(name))
    try:
        yield get_backend()
    finally:
        _active.reset(token)


def available_backends() -> list[str]:
    """Backends usable on this machine now: ['numpy'] or ['numpy', 'cupy']."""
    return ["numpy"] + (["cupy"] if _probe_cupy()[0] is not None else [])


def backend_info() -> dict[str, Any]:
    """The active backend, why it was chosen, and device and library versions.

    It never raises: where the default backend cannot be had (FCGPU_BACKEND misspelt, or naming
    'cupy' on a machine that cannot run it), 'active' is None and 'error' says why; the rest
    (NumPy, CuPy's status, what is available) is still filled in.
    """
    info: dict[str, Any] = {"active": None, "reason": None, "numpy": np.__version__}
    backend: Backend | None = None
    try:
        backend, info["reason"] = _current()
        info["active"] = backend.name
    except (BackendUnavailable, ValueError) as e:  # only the FCGPU_BACKEND default can fail here
        text = str(e)
        info["error"] = text if text.startswith("FCGPU_BACKEND") else f"FCGPU_BACKEND={os.environ.get('FCGPU_BACKEND')}: {text}"
    info["available"] = available_backends()
    cupy_backend, cupy_reason = _probe_cupy()
    info["cupy_status"] = cupy_reason
    # Why there is no CuPy version to show: None, 'not installed' or 'failed to import'.
    status = cupy_reason or ""
    info["cupy_install"] = (
        "not installed" if status.startswith(_NOT_INSTALLED) else "failed to import" if status.startswith(_BROKEN) else None
    )
    # The probe imported CuPy if it could; never import it a second time here (a broken install
    # would fail again, or half-load).
    info["cupy"] = getattr(sys.modules.get("cupy"), "__version__", None)
    for source in (cupy_backend, backend):
        if source is not None and source.name == "cupy":
            try:
                info.update({k: v for k, v in source.info().items() if k != "backend"})
            except Exception as e:  # a device that fails to describe itself is reported, not raised
                info["device_error"] = f"{type(e).__name__}: {e}"
    info.setdefault("device", "host CPU" if backend is not None and backend.name == "numpy" else None)
    return info


def to_numpy(a: Any) -> np.ndarray:
    """A host ndarray from an array of any backend (or anything ``np.asarray`` accepts)."""
    if type(a) is np.ndarray:
        return a
    # The active backend only if one was chosen already: converting must not probe CuPy.
    choice = _active.get() or _default.choice
    for backend in (choice[0] if choice else None, _probe.backend):
        if backend is not None and backend.owns(a):
            return backend.to_numpy(a)
    get = getattr(a, "get", None)  # cupy.ndarray.get() copies to the host
    if callable(get) and hasattr(a, "__cuda_array_interface__"):
        return get()
    return np.asarray(a)
