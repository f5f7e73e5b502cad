"""The compile gate's variants: a kernel in one dtype and layout, and the exact source CuPy makes of it.

Part of ``support.cuda_compile``. ``kernel_code`` calls CuPy's private generator
(``cupy._core._kernel._get_elementwise_kernel_code``) with CuPy's own type resolution, fed the
dtypes that decide it by the stand-in's ``deciding_dtypes``; ``check_generator`` fails loudly
if that private API no longer means what this module assumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fcgpu.testing.fake_cupy.params import deciding_dtypes, dtype_named
from support.compile_gate.compilers import PINNED_CUPY, CompileGateUnavailable, cupy_header, require_cupy

# cupy._core._kernel._ArgKind (a Cython enum); checked against generated code in check_generator().
_KIND_NDARRAY, _KIND_INDEXER, _KIND_SCALAR = 1, 2, 3


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
        cupy = require_cupy()
        k = _kernel_objects[key] = cupy.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.operation, spec.name, preamble=preamble
        )
    return k


def kernel_code(spec: Any, variant: Variant, preamble: str | None = None) -> str:
    """CuPy's generated code for ``variant`` of ``spec`` (without the header includes)."""
    from cupy._core import _carray, _kernel, _scalar

    cupy = require_cupy()
    if preamble is None:
        from fcgpu.backends.cupy import kernel_sources

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


def check_generator() -> None:
    """Fail loudly if CuPy's private generator no longer means what this module assumes."""
    from fcgpu.backends.cupy.backend import KernelSpec

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
