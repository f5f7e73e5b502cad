"""Run fcgpu's block-level kernels on the host with a block's threads, barriers and shuffles emulated.

Host execution (the stand-in) runs one element at a time, so it cannot see a missing
``__syncthreads``, a shared-memory race or a shuffle that some lanes skip; and for the block-level
kernels (``kernels/blocks.cuh``) it runs their sequential equivalent, not the block code. This
runs the block code itself: ``block_emulator.h`` gives every CUDA thread a fiber (ucontext), makes
each ``__syncthreads`` a phase boundary and each shuffle a warp-wide exchange, records the
shared-memory reads and writes of each phase and fails on a race or a barrier or shuffle that not
every thread it names reaches (the block stalls).

``emulated_backend()`` is the CuPy backend on the stand-in whose block-level kernels (every kernel
whose operation calls a ``blocks.cuh`` function) run here instead, launched exactly as the backend
launches them (its ``size=`` and ``block_size=``, with CuPy's grid rule); every launch is counted
in ``EmulatedKernel.launches`` with its emulator report.
"""
from __future__ import annotations

import ctypes
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcgpu.backends.cupy import kernel_sources
from fcgpu.backends.cupy.backend import CupyBackend
from fcgpu.backends.cupy.kernel_specs import KERNEL_SPECS, KernelSpec
from fcgpu.testing import fake_cupy
from fcgpu.testing.fake_cupy.host_library import compile_host_library
from fcgpu.testing.fake_cupy.params import HOST_CTYPES, get_param_info, resolve_types

HEADER = Path(__file__).with_name("block_emulator.h")
BLOCK_FUNCTIONS = re.compile(
    r"\bfc_(softmax_xent_warp_\w+|softmax_warp_\w+|loss_grid|all_finite_grid|loss_scale_check_grid|bn_stats|param_grads"
    r"|ln_forward|ln_dx|clip_norms_grid)\b"
)
_SCALAR_CTYPES = {"b": ctypes.c_bool, "i": ctypes.c_longlong, "u": ctypes.c_ulonglong, "f": ctypes.c_double}


class EmulatorFailure(AssertionError):
    """A race, a divergent barrier or shuffle, or an out-of-range shared index, with the emulator's words."""


@dataclass
class Launch:
    name: str
    size: int
    block_size: int
    report: str

    def figure(self, key: str) -> int:
        return int(re.search(rf"\b{key}=(\d+)", self.report).group(1))


@dataclass
class EmulatedKernel:
    """``cupy.ElementwiseKernel``'s call for an all-``raw`` kernel, run by the block emulator."""

    spec: KernelSpec
    launches: list[Launch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.in_params = get_param_info(self.spec.in_params, True)
        self.out_params = get_param_info(self.spec.out_params, False)
        self.params = self.in_params + self.out_params
        if not all(p.raw or p.dtype is not None for p in self.params):
            raise ValueError(f"{self.spec.name}: the emulator runs kernels whose arrays are all raw")

    def __call__(self, *args: Any, size: int, block_size: int = 128) -> Any:
        if len(args) != len(self.params):
            raise TypeError(f"{self.spec.name}: expected {len(self.params)} arguments with the outputs")
        kinds = tuple("r" if isinstance(a, np.ndarray) else "s" for a in args)
        dtypes = [a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype for a in args]
        _, _, type_map = resolve_types(self.in_params, self.out_params, kinds, dtypes)
        run = _library(self.spec, tuple(kinds), tuple((k, str(v)) for k, v in type_map))
        keep, pointers = [], (ctypes.c_void_p * len(args))()
        for k, (p, a) in enumerate(zip(self.params, args)):
            if kinds[k] == "r":
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.spec.name}: {p.name} must be C-contiguous")
                pointers[k] = a.__array_interface__["data"][0]
            else:
                value = _SCALAR_CTYPES[p.dtype.kind](a.item() if isinstance(a, np.generic) else a)
                keep.append(value)
                pointers[k] = ctypes.addressof(value)
        report = ctypes.create_string_buffer(4096)
        status = run(pointers, ctypes.c_longlong(int(size)), ctypes.c_longlong(int(block_size)), report, 4096)
        text = report.value.decode()
        self.launches.append(Launch(self.spec.name, int(size), int(block_size), text))
        if status:
            raise EmulatorFailure(f"{self.spec.name}: {text.split('|')[0]}")
        return args[len(self.in_params):][0] if len(self.out_params) == 1 else args[len(self.in_params):]


@functools.lru_cache(maxsize=None)
def _library(spec: KernelSpec, kinds: tuple[str, ...], type_map: tuple[tuple[str, str], ...]) -> Any:
    lines = [f"typedef {HOST_CTYPES[np.dtype(t)]} {name};" for name, t in type_map]
    params = get_param_info(spec.in_params, True) + get_param_info(spec.out_params, False)
    types = dict(type_map)
    for k, (p, kind) in enumerate(zip(params, kinds)):
        ctype = p.ctype if p.dtype is None else HOST_CTYPES[p.dtype]
        if kind == "r":
            lines.append(f"{ctype}* {p.name} = ({ctype}*)args[{k}];")
        else:
            host = {"b": "bool", "i": "long long", "u": "unsigned long long", "f": "double"}[p.dtype.kind]
            lines.append(f"{ctype} {p.name} = ({ctype})*({host}*)args[{k}];")
    del types
    source = "\n".join([
        "#define FC_BLOCK_EMULATOR 1",
        HEADER.read_text(),
        kernel_sources.preamble(),
        'extern "C" int fcgpu_emulated(void** args, long long size, long long block_size, char* report, int len) {',
        *("    " + line for line in lines),
        "    return fc_emu::launch(size, block_size, [&](long long i) {",
        "        fc_emu::Indexer _ind{size};",
        f"        {spec.operation};",
        "    }, report, len);",
        "}",
    ])
    lib = ctypes.CDLL(str(compile_host_library(source)))
    fn = lib.fcgpu_emulated
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_char_p, ctypes.c_int]
    return fn


def block_level(name: str) -> bool:
    """Whether kernel ``name``'s operation runs block- or warp-level code (kernels/blocks.cuh)."""
    return bool(BLOCK_FUNCTIONS.search(KERNEL_SPECS[name].operation))


class EmulatedBackend(CupyBackend):
    """The CuPy backend on the stand-in, its block-level kernels run by the block emulator."""

    def __init__(self) -> None:
        super().__init__(fake_cupy)
        self.emulated: dict[str, EmulatedKernel] = {}

    def kernel(self, name: str) -> Any:
        if not block_level(name):
            return super().kernel(name)
        k = self.emulated.get(name)
        if k is None:
            k = self.emulated[name] = EmulatedKernel(KERNEL_SPECS[name])
        return k

    @property
    def launches(self) -> list[Launch]:
        return sorted((x for k in self.emulated.values() for x in k.launches), key=id)


def emulated_backend() -> EmulatedBackend:
    return EmulatedBackend()
