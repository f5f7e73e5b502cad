"""The compile gate's compilers: the pinned CuPy, NVRTC from the pip wheel (or nvcc), CuPy's options.

Part of ``support.cuda_compile`` (whose docstring describes the gate). ``compile_source``
turns one translation unit into a cubin for an architecture without a GPU or driver;
``choose_backend`` picks NVRTC when its library loads, else the toolkit's nvcc.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import site
import sys
import threading
from typing import Any, Iterator

PINNED_CUPY = "14.2.0"


class CompileGateUnavailable(RuntimeError):
    """The gate cannot run here (CuPy missing or of another version, neither NVRTC nor nvcc usable)."""


class KernelCompileError(RuntimeError):
    """At least one kernel variant failed to compile; the message lists each with its compiler log."""


def require_cupy() -> Any:
    """The imported CuPy, refused unless it is the pinned release (its private generator is used)."""
    try:
        import cupy
    except ImportError as e:
        raise CompileGateUnavailable(f"CuPy is not installed ({e}); install fcgpu[verify]") from e
    if cupy.__version__ != PINNED_CUPY:
        raise CompileGateUnavailable(
            f"the compile gate uses CuPy's private code generator and is pinned to cupy {PINNED_CUPY}, "
            f"found {cupy.__version__}; install fcgpu[verify]"
        )
    return cupy


def _wheel_nvrtc_libraries() -> list[str]:
    """libnvrtc from the nvidia-cuda-nvrtc wheel (CUDA 13 layout first, then CUDA 12's)."""
    roots = [*sys.path, *site.getsitepackages(), site.getusersitepackages()]
    found: list[str] = []
    for root in dict.fromkeys(r for r in roots if r and os.path.isdir(r)):
        for pattern in ("nvidia/cu13/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*", "nvidia/cu12/lib/libnvrtc.so*"):
            found += sorted(p for p in glob.glob(os.path.join(root, pattern)) if "builtins" not in p and ".alt." not in p)
    return found


_nvrtc_lock = threading.Lock()
_nvrtc_state: dict[str, Any] = {}


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor), loading the pip wheel's library first if CuPy cannot find one."""
    with _nvrtc_lock:
        if "version" in _nvrtc_state:
            return _nvrtc_state["version"]
        if "error" in _nvrtc_state:
            raise CompileGateUnavailable(_nvrtc_state["error"])
        require_cupy()
        from cupy.cuda import nvrtc

        try:
            version = tuple(nvrtc.getVersion())
        except Exception as first:
            loaded = []
            for path in _wheel_nvrtc_libraries():
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    loaded.append(path)
                except OSError:
                    continue
            try:
                version = tuple(nvrtc.getVersion())
            except Exception as second:
                _nvrtc_state["error"] = (
                    f"NVRTC could not be loaded ({type(first).__name__}: {first}; after preloading "
                    f"{loaded or 'no wheel library found'}: {type(second).__name__}: {second}); "
                    f"install nvidia-cuda-nvrtc==13.0.* (part of fcgpu[verify])"
                )
                raise CompileGateUnavailable(_nvrtc_state["error"]) from None
        _nvrtc_state["version"] = version
        return version  # type: ignore[return-value]


def nvcc_path() -> str | None:
    """The CUDA toolkit's nvcc, for machines where NVRTC cannot be loaded."""
    import shutil

    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.path.isfile(candidate.split()[0]):
            return candidate
    return None


@contextlib.contextmanager
def _explicit_arch() -> Iterator[None]:
    """Let ``compile_using_nvrtc(arch=...)`` work without a device.

    CuPy's helper asks the current device for its compute capability even when an arch is
    given; the replacement answers for an explicit arch and defers to CuPy otherwise.
    """
    from cupy.cuda import compiler

    original = compiler._get_arch_for_options_for_nvrtc

    def for_arch(arch: Any = None) -> tuple[str, str]:
        if arch is None:
            return original()
        return f"-arch=sm_{arch}", "cubin"

    compiler._get_arch_for_options_for_nvrtc = for_arch
    try:
        yield
    finally:
        compiler._get_arch_for_options_for_nvrtc = original


def cupy_options() -> tuple[str, ...]:
    """The options CuPy's ElementwiseKernel compiles with (before the arch and NVRTC-only flags)."""
    from cupy._core import core

    return tuple(core.assemble_cupy_compiler_options(())) + ("-ftz=true",)


def cupy_header() -> str:
    """The ``#include`` lines CuPy prepends to every kernel."""
    from cupy._core import core

    return "".join(f"#include <{h}>\n" for h in core._cupy_header_list)


def compile_source(source: str, arch: str, backend: str = "nvrtc") -> bytes:
    """A cubin of ``source`` (already including CuPy's headers) for ``sm_<arch>``; raises CompileException."""
    from cupy.cuda import compiler

    if backend == "nvrtc":
        nvrtc_version()
        with _explicit_arch():
            cubin, _ = compiler.compile_using_nvrtc(source, cupy_options(), arch=arch)
        return cubin
    if backend == "nvcc":
        nvcc = nvcc_path()
        if nvcc is None:
            raise CompileGateUnavailable("nvcc was not found (set NVCC or put it on PATH)")
        previous = os.environ.get("NVCC")
        os.environ["NVCC"] = nvcc
        try:
            return compiler.compile_using_nvcc(source, cupy_options(), arch=arch, code_type="cubin")
        finally:
            if previous is None:
                os.environ.pop("NVCC", None)
            else:
                os.environ["NVCC"] = previous
    raise ValueError(f"backend: expected 'nvrtc' or 'nvcc', got {backend!r}")


def choose_backend() -> str:
    """'nvrtc' when the wheel's NVRTC loads, else 'nvcc' when the toolkit is installed."""
    try:
        nvrtc_version()
        return "nvrtc"
    except CompileGateUnavailable as e:
        if nvcc_path() is not None:
            return "nvcc"
        raise CompileGateUnavailable(f"{e}; and no nvcc was found either") from None
