"""CuPy ``RawModule`` / ``RawKernel`` launches run on the host block emulator (for kernels/gemm.cuh).

``EmulatedRawModule(code=..., options=...)`` takes the very source a launcher hands to
``cupy.RawModule``, compiles it with g++ after ``block_emulator.h`` and ``gemm_emulator.h`` (every
CUDA thread a fiber, each ``__syncthreads`` a phase, every block-shared access checked for races and
uninitialised reads as it happens), and finds its ``extern "C"`` kernels in the preprocessed text.
``get_function(name)`` gives an ``EmulatedRawKernel``, called as CuPy's:
``kernel((grid,), (block,), args, shared_mem=0)``. Arguments are checked against the kernel's
parameters as a GPU would need them (an array for a pointer, a NumPy scalar of exactly the
parameter's type for a value; None for a null pointer, as CuPy passes it). Every launch is recorded with the emulator's report and counted as
one 'kernel' device operation of the stand-in's ``count_device_ops``.

``emulated_cupy()`` is the stand-in module (``fcgpu.testing.fake_cupy``) with ``RawModule`` and
``RawKernel`` served from here, so a launcher built on it runs its kernels in the emulator.
What this cannot show: GPU timing, real device rounding of the activations (``-ftz``, device
``expf``), global-memory races between blocks (blocks run one after another), and warp-level
scheduling beyond shuffles.
"""
from __future__ import annotations

import ctypes
import functools
import re
import subprocess
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcgpu.testing import fake_cupy
from fcgpu.testing.fake_cupy import capture
from fcgpu.testing.fake_cupy.counting import counted
from fcgpu.testing.fake_cupy.host_library import compile_host_library, host_compiler

from .block_emulator import EmulatorFailure

HERE = Path(__file__).parent
HEADERS = (HERE / "block_emulator.h", HERE / "gemm_emulator.h", HERE / "wmma_emulator.h")
_KERNEL = re.compile(r'extern\s+"C"\s+void\s+(\w+)\s*\(([^)]*)\)')
_SCALARS = {"int": np.int32, "unsigned int": np.uint32, "long long": np.int64, "unsigned long long": np.uint64,
            "float": np.float32, "double": np.float64, "bool": np.bool_}
_POINTEES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64,
             "unsigned int": np.uint32, "bool": np.bool_, "fc_half": np.float16}
try:
    import ml_dtypes

    _POINTEES["fc_bf16"] = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True)
class Param:
    ctype: str  # as written, e.g. 'const float*'
    name: str

    @property
    def pointer(self) -> bool:
        return "*" in self.ctype

    @property
    def base(self) -> str:
        return " ".join(self.ctype.replace("*", " ").replace("const", " ").replace("__restrict__", " ").split())


@dataclass
class RawLaunch:
    name: str
    grid: int
    block: int
    report: str

    def figure(self, key: str) -> int:
        return int(re.search(rf"\b{key}=(\d+)", self.report).group(1))


def _params(text: str) -> tuple[Param, ...]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.match(r"(.*?)(\w+)$", part, re.S)
        out.append(Param(" ".join(m.group(1).split()), m.group(2)))
    return tuple(out)


def kernels_in(code: str) -> dict[str, tuple[Param, ...]]:
    """The ``extern "C"`` kernels of ``code`` (macros expanded by the host preprocessor) and their parameters."""
    proc = subprocess.run(
        [host_compiler(), "-E", "-P", "-std=c++17", "-DFC_BLOCK_EMULATOR=1", "-x", "c++", "-"],
        input=code, capture_output=True, text=True, check=True,
    )
    return {m.group(1): _params(m.group(2)) for m in _KERNEL.finditer(proc.stdout)}


@functools.lru_cache(maxsize=8)
def _library(code: str) -> tuple[Any, dict[str, tuple[Param, ...]]]:
    kernels = kernels_in(code)
    wrappers = []
    for name, params in kernels.items():
        args = ", ".join(
            f"({p.ctype})args[{k}]" if p.pointer else f"*({p.ctype}*)args[{k}]" for k, p in enumerate(params)
        )
        wrappers.append(
            f'extern "C" int emu_{name}(void** args, long long grid, long long block, char* report, int len) {{\n'
            f"    return fc_emu::launch_raw(grid, block, [&]() {{ {name}({args}); }}, report, len);\n}}"
        )
    source = "\n".join(["#define FC_BLOCK_EMULATOR 1", *(h.read_text() for h in HEADERS), code, *wrappers])
    return ctypes.CDLL(str(compile_host_library(source))), kernels


class EmulatedRawKernel:
    """One kernel of an ``EmulatedRawModule``, launched as ``cupy.RawKernel`` is."""

    def __init__(self, module: "EmulatedRawModule", name: str, params: tuple[Param, ...], fn: Any) -> None:
        self.module, self.name, self.params, self._fn = module, name, params, fn

    def _argument(self, p: Param, a: Any, keep: list) -> int:
        if p.pointer:
            if a is None:  # CuPy passes None as a null pointer
                return 0
            if not isinstance(a, np.ndarray) or isinstance(a, np.generic):
                raise TypeError(f"{self.name}: {p.name} ({p.ctype}) needs an array, got {type(a).__name__}")
            want = _POINTEES.get(p.base)
            if want is not None and a.dtype != np.dtype(want):
                raise TypeError(f"{self.name}: {p.name} ({p.ctype}) got a {a.dtype} array")
            if not a.flags.c_contiguous:
                raise ValueError(f"{self.name}: {p.name} must be C-contiguous")
            return a.__array_interface__["data"][0]
        want = _SCALARS.get(p.base)
        if want is None:
            raise TypeError(f"{self.name}: parameter type {p.ctype!r} is not emulated")
        if not isinstance(a, np.generic) or a.dtype != np.dtype(want):
            raise TypeError(f"{self.name}: {p.name} ({p.ctype}) needs a numpy.{np.dtype(want).name} scalar, got "
                            f"{type(a).__name__} {getattr(a, 'dtype', '')}")
        buf = np.array(a).copy()
        keep.append(buf)
        return buf.ctypes.data

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0, **kwargs: Any) -> None:
        grid, block = tuple(grid), tuple(block)
        if len(grid) > 1 and any(g != 1 for g in grid[1:]) or len(block) > 1 and any(b != 1 for b in block[1:]):
            raise ValueError(f"{self.name}: the emulator launches 1-D grids and blocks, got {grid}, {block}")
        if shared_mem:
            raise ValueError(f"{self.name}: dynamic shared memory is not emulated")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(self.params)} arguments expected, got {len(args)}")
        keep: list = []
        pointers = (ctypes.c_void_p * len(args))(*(self._argument(p, a, keep) for p, a in zip(self.params, args)))

        def launch() -> None:
            report = ctypes.create_string_buffer(4096)
            status = self._fn(pointers, ctypes.c_longlong(int(grid[0])), ctypes.c_longlong(int(block[0])), report, 4096)
            text = report.value.decode()
            self.module.launches.append(RawLaunch(self.name, int(grid[0]), int(block[0]), text))
            if status:
                raise EmulatorFailure(f"{self.name}: {text.split('|')[0]}")

        if capture.active() is not None:  # a stream captures: recorded (with its arguments), run at each replay
            capture.record(self.name, lambda: (keep, launch()))
            return
        with counted("kernel", self.name):
            launch()


class EmulatedRawModule:
    """``cupy.RawModule(code=..., options=...)`` run by the block emulator."""

    def __init__(self, code: str, options: tuple = (), **kwargs: Any) -> None:
        self.code, self.options = code, tuple(options)
        self._lib, self.kernels = _library(code)
        self.launches: list[RawLaunch] = []

    def get_function(self, name: str) -> EmulatedRawKernel:
        if name not in self.kernels:
            raise KeyError(f"no kernel {name!r} in the module")  # CuPy raises CUDADriverError here
        fn = getattr(self._lib, f"emu_{name}")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_char_p, ctypes.c_int]
        return EmulatedRawKernel(self, name, self.kernels[name], fn)


@dataclass
class _Registry:
    modules: list[EmulatedRawModule] = field(default_factory=list)
    launches: list[RawLaunch] = field(default_factory=list)  # every module's, in launch order


def emulated_cupy() -> types.ModuleType:
    """The stand-in module with ``RawModule``/``RawKernel`` run by the emulator; ``.emulated.launches``
    lists every launch made through it."""
    registry = _Registry()
    module = types.ModuleType("cupy")

    def raw_module(code: str, options: tuple = (), **kwargs: Any) -> EmulatedRawModule:
        m = EmulatedRawModule(code, options, **kwargs)
        m.launches = registry.launches
        registry.modules.append(m)
        return m

    def raw_kernel(code: str, name: str, options: tuple = (), **kwargs: Any) -> EmulatedRawKernel:
        return raw_module(code, options).get_function(name)

    module.RawModule = raw_module
    module.RawKernel = raw_kernel
    module.emulated = registry
    module.__getattr__ = lambda name: getattr(fake_cupy, name)
    return module
