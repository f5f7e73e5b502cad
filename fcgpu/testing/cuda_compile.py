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
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import multiprocessing
import os
import site
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .fake_cupy.params import deciding_dtypes, dtype_named

PINNED_CUPY = "14.2.0"
ARCHS: tuple[str, ...] = ("80", "90")
DTYPES: tuple[str, ...] = ("float32", "float64", "float16", "bfloat16")

# cupy._core._kernel._ArgKind (a Cython enum); checked against generated code in _check_generator().
_KIND_NDARRAY, _KIND_INDEXER, _KIND_SCALAR = 1, 2, 3
_INT32_MAX = 2**31 - 1


class CompileGateUnavailable(RuntimeError):
    """The gate cannot run here (CuPy missing or of another version, neither NVRTC nor nvcc usable)."""


class KernelCompileError(RuntimeError):
    """At least one kernel variant failed to compile; the message lists each with its compiler log."""


# ---------------------------------------------------------------------------------------------
# CuPy and NVRTC
# ---------------------------------------------------------------------------------------------


def _cupy() -> Any:
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
        _cupy()
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


# ---------------------------------------------------------------------------------------------
# variants: the exact sources CuPy would generate
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgLayout:
    """One argument as CuPy's ``_ArgInfo`` sees it after broadcasting and ``_reduce_dims``."""

    kind: str  # 'a' array, 'r' raw array, 's' scalar
    dtype: str
    ndim: int = 0
    c_contiguous: bool = True
    index_32_bits: bool = True


@dataclass(frozen=True)
class Variant:
    """One kernel in one dtype and layout: one distinct source CuPy would compile."""

    kernel: str
    dtype: str
    layout: str
    args: tuple[ArgLayout, ...]
    indexer_ndim: int
    indexer_32_bits: bool = True

    def label(self) -> str:
        return f"{self.kernel}[{self.dtype}, {self.layout}]"


_kernel_objects: dict[tuple, Any] = {}


def _cupy_kernel(spec: Any, preamble: str) -> Any:
    key = (spec.in_params, spec.out_params, spec.operation, spec.name, preamble)
    k = _kernel_objects.get(key)
    if k is None:
        cupy = _cupy()
        k = _kernel_objects[key] = cupy.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.operation, spec.name, preamble=preamble
        )
    return k


def kernel_code(spec: Any, variant: Variant, preamble: str | None = None) -> str:
    """CuPy's generated code for ``variant`` of ``spec`` (without the header includes)."""
    from cupy._core import _carray, _kernel, _scalar

    cupy = _cupy()
    if preamble is None:
        from .. import kernel_sources

        preamble = kernel_sources.preamble()
    k = _cupy_kernel(spec, preamble)
    # CuPy's own resolution, fed the dtypes that decide it exactly as the stand-in's call does.
    deciding = deciding_dtypes([a.kind for a in variant.args], [a.dtype for a in variant.args], len(k.in_params))
    _, _, type_map = k._decide_params_type(*deciding)
    infos = []
    for a in variant.args:
        if a.kind == "s":
            infos.append(_kernel._ArgInfo(_KIND_SCALAR, _scalar.CScalar, dtype_named(a.dtype), 0, True, True))
        else:
            infos.append(
                _kernel._ArgInfo(_KIND_NDARRAY, cupy.ndarray, dtype_named(a.dtype), a.ndim, a.c_contiguous, a.index_32_bits)
            )
    infos.append(_kernel._ArgInfo(_KIND_INDEXER, _carray.Indexer, None, variant.indexer_ndim, True, variant.indexer_32_bits))
    return _kernel._get_elementwise_kernel_code(tuple(infos), type_map, k.params, k.operation, k.name, k.preamble)


def variant_source(spec: Any, variant: Variant, preamble: str | None = None) -> str:
    """The whole translation unit CuPy hands NVRTC for ``variant``: its headers, then the kernel code."""
    return cupy_header() + kernel_code(spec, variant, preamble)


def _check_generator() -> None:
    """Fail loudly if CuPy's private generator no longer means what this module assumes."""
    from ..backends.cupy_backend import KernelSpec

    spec = KernelSpec("fcgpu_probe", "T x, raw I r, T s", "T y", "y = x + r[i] + s")
    v = Variant(
        "fcgpu_probe",
        "float32",
        "probe",
        (ArgLayout("a", "float32", 2, False), ArgLayout("r", "int64", 1), ArgLayout("s", "float32"), ArgLayout("a", "float32", 2, True)),
        indexer_ndim=2,
    )
    code = kernel_code(spec, v, preamble="")
    expected = (
        "const CArray<float, 2, 0, 1> _raw_x",
        "const CArray<long long, 1, 1, 1> r",
        "const float s",
        "CArray<float, 2, 1, 1> _raw_y",
        "CIndexer<2, 1> _ind",
        "const T &x = _raw_x[_ind.get()];",
        "typedef float T;",
        "typedef long long I;",
    )
    missing = [e for e in expected if e not in code]
    if missing:
        raise CompileGateUnavailable(
            f"CuPy's kernel generator changed (missing {missing}); this module is pinned to cupy {PINNED_CUPY}:\n{code}"
        )


# -- layouts -------------------------------------------------------------------------------------


def _c_contiguous(shape: Sequence[int], strides: Sequence[int], itemsize: int) -> bool:
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def cupy_layout(call: Any) -> tuple[tuple[ArgLayout, ...], int, bool]:
    """(arguments, indexer ndim, indexer 32-bit) that CuPy derives for a recorded ``KernelCall``.

    Mirrors ``ElementwiseKernel.__call__``: non-raw arrays are broadcast to the loop shape, then
    ``_reduce_dims`` folds them to 1-D when all are C-contiguous, keeps 2-D loops with a strided
    array as they are, and otherwise merges axes that are contiguous in every strided array.
    Contiguity flags survive the reduction (CuPy's ``_view`` copies them).
    """
    shape = list(call.loop_shape)
    ndim = len(shape)
    flags: list[bool] = []
    for kind, dt, shp, st in zip(call.kinds, call.dtypes, call.shapes, call.strides):
        flags.append(True if kind == "s" else _c_contiguous(shp, st, dtype_named(dt).itemsize))
    array_idx = [k for k, kind in enumerate(call.kinds) if kind == "a"]
    strided = [k for k in array_idx if not flags[k]]
    new_ndim = ndim
    if ndim > 1 and array_idx:
        if not strided:
            new_ndim = 1
        elif ndim == 2:
            new_ndim = 2
        else:
            vec = list(shape)
            axes: list[int] = []
            last = -1
            for ax in range(ndim):
                if vec[ax] == 1:
                    continue
                if last < 0:
                    last = ax
                    continue
                if any(call.strides[k][ax] * vec[ax] != call.strides[k][last] for k in strided):
                    axes.append(last)
                else:
                    vec[ax] *= vec[last]
                last = ax
            if last >= 0:
                axes.append(last)
            if len(axes) != ndim:
                new_ndim = len(axes)
    size = int(np.prod(shape)) if shape else 1
    args = []
    for k, (kind, dt) in enumerate(zip(call.kinds, call.dtypes)):
        if kind == "s":
            args.append(ArgLayout("s", dt))
        elif kind == "r":
            span = int(np.prod(call.shapes[k])) * dtype_named(dt).itemsize
            args.append(ArgLayout("r", dt, len(call.shapes[k]), flags[k], span <= _INT32_MAX))
        else:
            args.append(ArgLayout("a", dt, new_ndim, flags[k], size * dtype_named(dt).itemsize <= _INT32_MAX))
    return tuple(args), new_ndim, size <= _INT32_MAX


def trace_backend_calls() -> list[Any]:
    """The kernel calls fcgpu's CuPy backend makes for representative inputs (float32), recorded on the stand-in.

    Kernels are not compiled or run, so this needs neither a GPU nor a C++ compiler.
    """
    from ..backends.cupy_backend import CupyBackend
    from ..activations import ACTIVATIONS
    from . import fake_cupy

    b = CupyBackend(fake_cupy)
    f = np.float32
    with fake_cupy.record_kernel_calls(execute=False) as calls, np.errstate(all="ignore"):
        for batch in (1, 4):
            z = b.zeros((batch, 3), f)
            bias = b.zeros((3,), f)
            for act in ACTIVATIONS:
                b.bias_act_forward(z, bias, act, b.empty((batch, 3), f))
                b.bias_act_forward(z, None, act, z)
                b.act_backward(z, z, act, b.empty((batch, 3), f))
            lse = b.zeros((batch, 1), f)
            b.softmax_xent_grad(z, lse, b.zeros((batch,), np.int64), 0.25, b.empty((batch, 3), f))
            b.softmax_xent_grad(z, lse, b.zeros((batch, 3), f), 0.25, b.empty((batch, 3), f))
            col = b.zeros((batch, 1), f)
            b.bce_logits_sum(col, col)
            b.bce_logits_grad(col, col, 0.25, b.empty((batch, 1), f))
            b.bce_prob_sum(col, col, 1e-7)
            b.bce_prob_grad(col, col, 1e-7, 0.25, b.empty((batch, 1), f))
            b.mse_grad(z, z, 0.25, b.empty((batch, 3), f))
        for shape in ((3, 4), (4,)):
            p, g = b.zeros(shape, f), b.zeros(shape, f)
            b.sgd_update(p, g, None, 0.1, 0.0, 0.0, False)
            b.sgd_update(p, g, b.zeros(shape, f), 0.1, 0.9, 1e-4, True)
            b.adam_update(p, g, b.zeros(shape, f), b.zeros(shape, f), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
            b.adam_update(p, g, b.zeros(shape, f), b.zeros(shape, f), 1e-3, 0.9, 0.999, 1e-8, 0.01, 2, True)
    return calls


def _generic_layouts(kinds: Sequence[str], dtypes: Sequence[str]) -> dict[str, tuple[tuple[ArgLayout, ...], int, bool]]:
    def make(ndim: int, contiguous: bool, small: bool) -> tuple[tuple[ArgLayout, ...], int, bool]:
        args = []
        for kind, dt in zip(kinds, dtypes):
            if kind == "s":
                args.append(ArgLayout("s", dt))
            elif kind == "r":
                args.append(ArgLayout("r", dt, 1, True, small))
            else:
                args.append(ArgLayout("a", dt, ndim, contiguous, small))
        return tuple(args), ndim, small

    return {"1d": make(1, True, True), "2d-strided": make(2, False, True), "1d-64bit-index": make(1, True, False)}


def sweep_variants(
    specs: dict[str, Any] | None = None,
    dtypes: Sequence[str] = DTYPES,
    calls: Sequence[Any] | None = None,
) -> list[Variant]:
    """Every (kernel, dtype, layout) CuPy would compile a distinct source for, as used by the backend.

    Argument kinds per kernel come from ``calls`` (default: ``trace_backend_calls()``); the
    recorded layouts are kept (named 'seen:...') and the generic 1-D, 2-D strided and 64-bit
    index layouts added. Parameters of the floating type take each of ``dtypes`` in turn.
    """
    from ..backends.cupy_backend import KERNEL_SPECS

    specs = KERNEL_SPECS if specs is None else specs
    calls = trace_backend_calls() if calls is None else calls
    by_kernel: dict[str, list[Any]] = {}
    for c in calls:
        by_kernel.setdefault(c.name, []).append(c)
    missing = [name for name in specs if name not in by_kernel]
    if missing:
        raise KernelCompileError(f"no recorded backend call uses these kernels, so their layouts are unknown: {missing}")
    variants: list[Variant] = []
    for name in specs:
        layouts: dict[tuple, str] = {}
        first = by_kernel[name][0]
        float_type = first.dtypes[first.kinds.index("a")]
        for label, layout in _generic_layouts(first.kinds, first.dtypes).items():
            layouts.setdefault(layout, label)
        for c in by_kernel[name]:
            layout = cupy_layout(c)
            desc = ",".join(f"{a.kind}{a.ndim}{'c' if a.c_contiguous else 's'}" for a in layout[0] if a.kind != "s")
            layouts.setdefault(layout, f"seen:{desc}")
        for dtype in dtypes:
            for (args, ind_ndim, ind32), label in layouts.items():
                typed = tuple(
                    ArgLayout(a.kind, dtype if a.dtype == float_type else a.dtype, a.ndim, a.c_contiguous, a.index_32_bits)
                    for a in args
                )
                variants.append(Variant(name, dtype, label, typed, ind_ndim, ind32))
    return variants


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------


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
    from ..backends.cupy_backend import KERNEL_SPECS

    start = time.perf_counter()
    _cupy()
    _check_generator()
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
