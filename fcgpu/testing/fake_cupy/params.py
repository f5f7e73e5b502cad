"""ElementwiseKernel parameters and type resolution, as CuPy parses and resolves them.

Part of ``fcgpu.testing.fake_cupy``'s kernel engine. ``resolve_types`` is the one place a call's
parameter types are decided, from its argument kinds and dtypes (``deciding_dtypes`` says which
of them count): ``ElementwiseKernel.__call__`` uses it on live arguments, ``precompile`` on
recorded ``KernelCall``s, and the compile gate (``support.cuda_compile``) hands
``deciding_dtypes`` to CuPy's own resolver.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .arrays import ndarray

# The host C++ type of each dtype a kernel parameter may have (float16 and bfloat16 are
# defined by host_runtime.h).
HOST_CTYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "bool",
    np.dtype(np.int8): "signed char",
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int16): "short",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.int32): "int",
    np.dtype(np.uint32): "unsigned int",
    np.dtype(np.int64): "long long",
    np.dtype(np.uint64): "unsigned long long",
    np.dtype(np.float16): "float16",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

try:  # bfloat16 exists in NumPy only through ml_dtypes
    import ml_dtypes as _ml_dtypes

    BFLOAT16: np.dtype | None = np.dtype(_ml_dtypes.bfloat16)
    HOST_CTYPES[BFLOAT16] = "bfloat16"
except ImportError:  # pragma: no cover - ml_dtypes is part of the verify extra
    BFLOAT16 = None


def dtype_named(name: str) -> np.dtype:
    """The dtype a type name stands for, read as NumPy reads it (CuPy does the same: 'float' is float64).

    'bfloat16' is ml_dtypes' type; an unknown name raises ``TypeError``.
    """
    if name == "bfloat16":
        if BFLOAT16 is None:
            raise TypeError("bfloat16 needs ml_dtypes (part of fcgpu[verify])")
        return BFLOAT16
    return np.dtype(name)


class ParameterInfo:
    """One entry of an ElementwiseKernel parameter list, parsed as CuPy parses it."""

    def __init__(self, param: str, is_const: bool) -> None:
        self.name: str = ""
        self.dtype: np.dtype | None = None
        self.ctype: str = ""
        self.raw = False
        self.is_const = is_const
        s = param.split()
        if len(s) < 2:
            raise Exception(f"Syntax error: {param}")  # the exception class CuPy raises
        t, self.name = s[-2:]
        if len(t) == 1:
            self.ctype = t
        else:
            try:
                self.dtype = dtype_named(t)
            except TypeError:
                raise ValueError(f"Unknown type in kernel parameter: {t!r}") from None
            self.ctype = HOST_CTYPES.get(self.dtype, "")
            if not self.ctype:
                raise TypeError(f"fake_cupy: parameter type {t!r} is not supported by the stand-in")
        for word in s[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise Exception(f'Unknown keyword "{word}"')

    def __repr__(self) -> str:
        return f"<ParameterInfo name={self.name!r} ctype={self.ctype!r} raw={self.raw} const={self.is_const}>"


def get_param_info(s: str, is_const: bool) -> tuple[ParameterInfo, ...]:
    """The parameters of a comma-separated list (empty for a blank one)."""
    if not s.strip():
        return ()
    return tuple(ParameterInfo(p, is_const) for p in s.strip().split(","))


def argument_kinds(params: Sequence[ParameterInfo], args: Sequence[Any]) -> tuple[str, ...]:
    """Each argument's kind: 'a' an array broadcast to the loop shape, 'r' a raw array, 's' a scalar."""
    return tuple("s" if not isinstance(a, ndarray) else ("r" if p.raw else "a") for p, a in zip(params, args))


def deciding_dtypes(
    kinds: Sequence[str], dtypes: Sequence[np.dtype | str], nin: int
) -> tuple[tuple[np.dtype | None, ...], tuple[np.dtype, ...]]:
    """(input dtypes, output dtypes) that decide a call's types: each array's, ``None`` for a scalar.

    ``kinds`` and ``dtypes`` (dtypes or their names) cover the arguments given: the ``nin``
    inputs, then the outputs if there are any. A scalar decides nothing; it takes its
    parameter's type afterwards.
    """
    resolved = tuple(
        None if kind == "s" else dtype_named(d) if isinstance(d, str) else np.dtype(d) for kind, d in zip(kinds, dtypes)
    )
    return resolved[:nin], resolved[nin:]  # type: ignore[return-value]


def resolve_types(
    in_params: Sequence[ParameterInfo],
    out_params: Sequence[ParameterInfo],
    kinds: Sequence[str],
    dtypes: Sequence[np.dtype | str],
) -> tuple[tuple[np.dtype, ...], tuple[np.dtype, ...], tuple[tuple[str, np.dtype], ...]]:
    """(in types, out types, type map) of a call with CuPy's rules and messages; see ``deciding_dtypes``."""
    in_dtypes, out_dtypes = deciding_dtypes(kinds, dtypes, len(in_params))
    type_dict: dict[str, np.dtype] = {}
    # Outputs first, then inputs, as CuPy resolves them; a scalar input (None) decides nothing.
    for p, a in (*zip(out_params, out_dtypes), *zip(in_params, in_dtypes)):
        if a is None:
            continue
        if p.dtype is not None:
            if a != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a} {p.dtype}")
        elif p.ctype in type_dict:
            if type_dict[p.ctype] != a:
                raise TypeError(f"Type is mismatched. {p.name} {a} {type_dict[p.ctype]} {p.ctype}")
        else:
            type_dict[p.ctype] = a
    missing = [p.name for p in (*in_params, *out_params) if p.dtype is None and p.ctype not in type_dict]
    if missing:
        # CuPy fails here with a bare KeyError on the placeholder
        raise TypeError(f"the type of {', '.join(missing)} is not determined: no array argument has its placeholder type")
    in_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in in_params)
    out_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in out_params)
    return in_types, out_types, tuple(sorted(type_dict.items()))
