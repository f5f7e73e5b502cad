"""Compile every fcgpu kernel exactly as CuPy would, for real GPU architectures, without a GPU.

For each entry of ``KERNEL_SPECS`` x dtype x argument layout, the CUDA source is produced by
CuPy's own generator (``cupy._core._kernel._get_elementwise_kernel_code``, the function
``ElementwiseKernel.__call__`` uses), with CuPy's headers prepended and CuPy's compiler options
(``assemble_cupy_compiler_options`` plus ``-ftz=true`` and, from ``compile_using_nvrtc``,
``--device-as-default-execution-space``). It is compiled to a cubin for each architecture by NVRTC
from the ``nvidia-cuda-nvrtc`` wheel (no driver, toolkit or device needed), or by ``nvcc`` when
NVRTC cannot be loaded.

Layouts are those CuPy's call path produces: the argument kinds (array, raw array, scalar) and
shapes come from running fcgpu's CuPy backend on the host stand-in while recording its kernel
calls, reduced with CuPy's ``_reduce_dims`` rule (all-contiguous arrays -> 1-D; a broadcast bias
row or ``lse`` column -> 2-D with mixed contiguity), plus for every kernel the generic 1-D
contiguous, 2-D strided and 64-bit-index forms.

Kernels of one dtype, layout and architecture are compiled together in one NVRTC program (the
concatenation of their exact sources; CuPy's and fcgpu's headers are include-guarded), which is
several times faster than one program each; a failing program is recompiled kernel by kernel so
each failure names its kernel with its own compiler log.

This uses CuPy's private API and is pinned to ``PINNED_CUPY``; a different CuPy version is
refused with a clear error rather than silently checking something else.

This module is the gate's import path and command line (``cd tests && python -m support.cuda_compile``);
its parts live in ``support.compile_gate``: ``compilers`` (CuPy, NVRTC, nvcc), ``variants``
(the exact sources), ``layouts`` (the backend's calls and their layouts) and ``sweep``.
"""
from __future__ import annotations

import argparse
import sys
import dataclasses
import os
from typing import Iterable, Sequence

from support.compile_gate.compilers import (
    PINNED_CUPY,
    CompileGateUnavailable,
    KernelCompileError,
    choose_backend,
    compile_source,
    cupy_header,
    cupy_options,
    nvcc_path,
    nvrtc_version,
)
from support.compile_gate.layouts import DTYPES, cupy_layout, sweep_variants, trace_backend_calls
from support.compile_gate.sweep import ARCHS, Failure, SweepReport, check_kernels_compile, run_sweep
from support.compile_gate.variants import ArgLayout, Variant, kernel_code, variant_source

__all__ = [
    "ARCHS",
    "DTYPES",
    "PINNED_CUPY",
    "ArgLayout",
    "CompileGateUnavailable",
    "Failure",
    "KernelCompileError",
    "SweepReport",
    "Variant",
    "check_kernels_compile",
    "choose_backend",
    "compile_source",
    "cupy_header",
    "cupy_layout",
    "cupy_options",
    "kernel_code",
    "main",
    "nvcc_path",
    "nvrtc_version",
    "run_sweep",
    "sweep_variants",
    "trace_backend_calls",
    "variant_source",
]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile every fcgpu kernel as CuPy would, for GPU architectures")
    parser.add_argument("--arch", action="append", help="compute capability such as 80 (repeatable; default 80 and 90)")
    parser.add_argument("--dtype", action="append", help=f"default: {', '.join(DTYPES)}")
    parser.add_argument("--backend", default="auto", choices=["auto", "nvrtc", "nvcc"])
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        variants = sweep_variants(dtypes=args.dtype or DTYPES)
        report = run_sweep(variants, archs=args.arch or ARCHS, backend=args.backend, workers=args.workers)
    except CompileGateUnavailable as e:
        print(f"cannot run the compile gate: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())


def warm_stand_in(dtypes: Sequence[str] = ("float32", "float64", "float16"), workers: int | None = None) -> int:
    """Compile, in parallel, the host kernels fcgpu's CuPy backend uses in ``dtypes``; returns their count.

    Optional: kernels otherwise compile one by one on first use (about 0.25 s each, then cached on disk).
    """
    from fcgpu.testing import fake_cupy

    calls = []
    for call in trace_backend_calls():
        for dtype in dtypes:
            calls.append(dataclasses.replace(call, dtypes=tuple(dtype if d == "float32" else d for d in call.dtypes)))
    return fake_cupy.precompile(calls, workers or min(4, os.cpu_count() or 1))
