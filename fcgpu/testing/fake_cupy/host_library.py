"""Building and loading host kernels: the C++ compiler, the on-disk cache, ctypes loading.

Part of ``fcgpu.testing.fake_cupy``'s kernel engine. A library is named by the hash of its
source, compiler and flags, kept in ``cache_dir()`` and written atomically (temp + rename), so
concurrent test processes share it; ``load_kernel`` keeps each loaded entry point for the process.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

_CXX_FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-w"]
_lock = threading.Lock()
_loaded: dict[str, Callable] = {}


class HostCompileError(RuntimeError):
    """The host C++ compiler rejected a kernel; the message holds the compiler's output and the source."""


def cache_dir() -> Path:
    """Where compiled host kernels are kept: $FCGPU_CACHE_DIR, else $XDG_CACHE_HOME/fcgpu, else ~/.cache/fcgpu."""
    explicit = os.environ.get("FCGPU_CACHE_DIR")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "fcgpu"
    path = root / "host-kernels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
        probe.close()
    except OSError:
        path = Path(tempfile.gettempdir()) / f"fcgpu-host-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"
        path.mkdir(parents=True, exist_ok=True)
    return path


def host_compiler() -> str:
    """The C++ compiler used for host kernels: $CXX, else g++, else c++."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return candidate
    raise HostCompileError(
        "fake_cupy runs kernels by compiling them for the host, but no C++ compiler was found "
        "(set CXX or install g++)"
    )


def compile_host_library(source: str) -> Path:
    """A shared library built from ``source``, cached by the hash of source, compiler and flags."""
    cxx = host_compiler()
    digest = hashlib.sha256("\0".join([source, cxx, *_CXX_FLAGS]).encode()).hexdigest()[:32]
    directory = cache_dir()
    lib = directory / f"k{digest}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(source)
        out = Path(tmp) / "kernel.so"
        proc = subprocess.run([cxx, *_CXX_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            numbered = "\n".join(f"{n + 1:4d}  {line}" for n, line in enumerate(source.splitlines()))
            raise HostCompileError(
                f"the host compiler ({cxx}) rejected a kernel:\n{proc.stderr.strip()}\n--- source ---\n{numbered}"
            )
        os.replace(out, lib)  # atomic: concurrent processes see either nothing or a whole library
    return lib


def load_kernel(source: str, name: str) -> Callable:
    """The entry point of the library built from ``source`` (compiled on first use; ``name`` labels errors)."""
    key = hashlib.sha256(source.encode()).hexdigest()
    with _lock:
        fn = _loaded.get(key)
        if fn is None:
            try:
                lib = ctypes.CDLL(str(compile_host_library(source)))
            except HostCompileError as e:
                raise HostCompileError(f"kernel {name!r}: {e}") from None
            fn = lib.fcgpu_host_kernel
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_longlong)]
            fn.restype = ctypes.c_int
            _loaded[key] = fn
    return fn
