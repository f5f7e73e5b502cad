"""The compile gate's sweep: every variant compiled for every architecture, batched, with a report.

Part of ``support.cuda_compile``. Kernels of one dtype and typedef set share one NVRTC
program; a failing program is recompiled kernel by kernel so each failure names its kernel with
its own compiler log. ``run_sweep`` reports, ``check_kernels_compile`` raises.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from support.compile_gate.compilers import KernelCompileError, choose_backend, compile_source, cupy_header, require_cupy
from support.compile_gate.layouts import sweep_variants
from support.compile_gate.variants import Variant, check_generator, kernel_code

ARCHS: tuple[str, ...] = ("80", "90")


@dataclass
class Failure:
    variant: Variant
    arch: str
    log: str

    def __str__(self) -> str:
        return f"{self.variant.label()} sm_{self.arch}:\n{self.log.strip()}"


@dataclass
class SweepReport:
    backend: str
    archs: tuple[str, ...]
    variants: list[Variant]
    programs: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def kernels(self) -> int:
        return len({v.kernel for v in self.variants})

    def summary(self) -> str:
        dtypes = sorted({v.dtype for v in self.variants})
        head = (
            f"{len(self.variants)} kernel variants ({self.kernels} kernels x {len(dtypes)} dtypes {dtypes} x layouts) "
            f"x {len(self.archs)} archs {['sm_' + a for a in self.archs]} = {len(self.variants) * len(self.archs)} "
            f"compiles in {self.programs} {self.backend} programs, {self.seconds:.1f} s"
        )
        if self.ok:
            return head + ": all compiled"
        return head + f": {len(self.failures)} FAILED\n\n" + "\n\n".join(str(f) for f in self.failures)


def _batches(variants: Sequence[Variant], specs: dict[str, Any], preamble: str | None) -> list[list[tuple[Variant, str]]]:
    """Variants grouped so that each group is one valid translation unit: one dtype, one typedef set, distinct kernels."""
    groups: dict[tuple, list[list[tuple[Variant, str]]]] = {}
    for v in variants:
        code = kernel_code(specs[v.kernel], v, preamble)
        typedefs = tuple(line for line in code.splitlines() if line.strip().startswith("typedef"))
        bins = groups.setdefault((v.dtype, typedefs), [])
        for b in bins:
            if all(other.kernel != v.kernel for other, _ in b):
                b.append((v, code))
                break
        else:
            bins.append([(v, code)])
    return [b for bins in groups.values() for b in bins]


def _compile_batch(batch: list[tuple[Variant, str]], arch: str, backend: str) -> list[Failure]:
    from cupy.cuda.compiler import CompileException

    header = cupy_header()
    try:
        compile_source(header + "\n".join(code for _, code in batch), arch, backend)
        return []
    except CompileException:
        pass
    # Recompile alone: that pins the failure on its kernel, and a preamble without include guards
    # (redefined when concatenated) is judged, as CuPy compiles it, one kernel per program.
    failures = []
    for v, code in batch:
        try:
            compile_source(header + code, arch, backend)
        except CompileException as e:
            failures.append(Failure(v, arch, str(e)))
    return failures


def _compile_jobs(jobs: list[tuple[list[tuple[Variant, str]], str, str]]) -> list[Failure]:
    return [f for batch, arch, backend in jobs for f in _compile_batch(batch, arch, backend)]


def run_sweep(
    variants: Sequence[Variant] | None = None,
    archs: Sequence[str] = ARCHS,
    specs: dict[str, Any] | None = None,
    preamble: str | None = None,
    backend: str = "auto",
    workers: int | None = None,
) -> SweepReport:
    """Compile every variant for every arch; the report lists failures (it never raises for a bad kernel)."""
    from fcgpu.backends.cupy.backend import KERNEL_SPECS

    start = time.perf_counter()
    require_cupy()
    check_generator()
    specs = KERNEL_SPECS if specs is None else specs
    variants = sweep_variants(specs) if variants is None else list(variants)
    backend = choose_backend() if backend == "auto" else backend
    batches = _batches(variants, specs, preamble)
    jobs = [(b, arch, backend) for arch in archs for b in batches]
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    failures: list[Failure] = []
    if workers > 1 and len(jobs) > 1 and "fork" in multiprocessing.get_all_start_methods():
        chunks = [jobs[k::workers] for k in range(workers)]
        # fork: the children inherit the imported CuPy; nothing here has touched a CUDA context.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for part in pool.map(_compile_jobs, chunks):
                failures += part
    else:
        failures = _compile_jobs(jobs)
    return SweepReport(
        backend=backend,
        archs=tuple(archs),
        variants=list(variants),
        programs=len(jobs),
        seconds=time.perf_counter() - start,
        failures=failures,
    )


def check_kernels_compile(**kwargs: Any) -> SweepReport:
    """``run_sweep(**kwargs)``, raising ``KernelCompileError`` with every failure's log if any failed."""
    report = run_sweep(**kwargs)
    if not report.ok:
        raise KernelCompileError(report.summary())
    return report

