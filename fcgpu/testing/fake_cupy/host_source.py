"""Host C++ for an ElementwiseKernel call, and the launch that hands it the arguments.

Part of ``fcgpu.testing.fake_cupy``'s kernel engine. The generated source is ``host_runtime.h``
(CuPy's ``CArray``/``CIndexer`` and the half types, for the host), then CuPy's kernel layout in
a loop over the elements. ``launch`` passes each argument as a pointer plus its ndim, shape and
strides in the order ``fc_make_array`` reads them, so views are indexed in place.
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .params import HOST_CTYPES, ParameterInfo

RUNTIME_HEADER = Path(__file__).with_name("host_runtime.h")


@functools.lru_cache(maxsize=None)
def host_runtime() -> str:
    """The text of ``host_runtime.h``, which starts every generated kernel."""
    return RUNTIME_HEADER.read_text()


def host_kernel_source(
    params: Sequence[ParameterInfo],
    kinds: Sequence[str],
    type_map: Sequence[tuple[str, np.dtype]],
    operation: str,
    preamble: str,
) -> str:
    """C++ for the host: CuPy's kernel layout (typedefs, preamble, per-element references, operation) in a loop.

    ``kinds`` has one letter per parameter: 'a' a broadcast array, 'r' a raw array, 's' a scalar.
    """
    lines = [host_runtime()]
    lines += [f"typedef {HOST_CTYPES[np.dtype(t)]} {name};" for name, t in type_map]
    lines.append(preamble)
    lines.append('extern "C" int fcgpu_host_kernel(void* const* fc_args, const long long* fc_meta) {')
    lines.append("    int fc_oob = 0;")
    lines.append("    const long long* fc_m = fc_meta;")
    lines.append("    CIndexer _ind;")
    lines.append("    _ind.ndim_ = int(*fc_m++);")
    lines.append("    _ind.size_ = 1;")
    lines.append("    for (int d = 0; d < _ind.ndim_; ++d) { _ind.shape_[d] = ptrdiff_t(*fc_m++); _ind.size_ *= _ind.shape_[d]; }")
    refs = []
    for k, (p, kind) in enumerate(zip(params, kinds)):
        const = "const " if p.is_const else ""
        if kind == "s":
            lines.append(f"    {const}{p.ctype} {p.name} = *static_cast<const {p.ctype}*>(fc_args[{k}]);")
        else:
            var = p.name if kind == "r" else f"_raw_{p.name}"
            lines.append(f"    {const}CArray<{p.ctype}> {var} = fc_make_array<{p.ctype}>(fc_args[{k}], fc_m, &fc_oob);")
            if kind == "a":
                refs.append(f"        {const}{p.ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
    lines.append("    for (ptrdiff_t i = 0; i < _ind.size(); ++i) {")
    lines.append("        _ind.set(i);")
    lines += refs
    lines.append(f"        {operation};")
    lines.append("    }")
    lines.append("    return fc_oob;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def indexed_view(a: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """An array argument as the kernel indexes it: a raw one ('r') as it is, any other broadcast to ``shape``."""
    host = a.view(np.ndarray)
    return host if kind == "r" else np.broadcast_to(host, shape)


def launch(fn: Callable, name: str, kinds: Sequence[str], args: Sequence[Any], shape: tuple[int, ...]) -> None:
    """Run a loaded host kernel over ``shape``; a raw array indexed out of its bounds raises ``IndexError``."""
    meta: list[int] = [len(shape), *shape]
    ptrs = (ctypes.c_void_p * len(args))()
    keep = []
    for k, (kind, a) in enumerate(zip(kinds, args)):
        if kind == "s":
            keep.append(a)
            ptrs[k] = a.__array_interface__["data"][0]
        else:
            view = indexed_view(a, kind, shape)
            meta += [view.ndim, *view.shape, *view.strides]
            ptrs[k] = view.__array_interface__["data"][0]
    meta_arr = np.asarray(meta, dtype=np.int64)
    status = fn(ptrs, meta_arr.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong)))
    if status:
        raise IndexError(f"fake_cupy: kernel {name!r} indexed a raw array out of its bounds")
