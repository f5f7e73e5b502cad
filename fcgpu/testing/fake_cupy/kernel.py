"""The stand-in's ``ElementwiseKernel``: CuPy's call semantics, the operation compiled for the host.

Part of ``fcgpu.testing.fake_cupy``'s kernel engine. A call checks its arguments, broadcasts,
resolves types (``params.resolve_types``), allocates outputs, casts scalars, reports itself to
open ``record_kernel_calls`` blocks, counts as one 'kernel' operation (``counting``) and runs the host library for its kinds and types
(``host_source`` generates it, ``host_library`` builds and loads it). ``precompile`` builds the
libraries of recorded calls ahead of use.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import capture
from .arrays import ndarray
from .counting import counted
from .host_library import compile_host_library, load_kernel
from .host_source import host_kernel_source, indexed_view, launch
from .params import argument_kinds, get_param_info, resolve_types
from .recording import KernelCall, is_recording, record, runs_kernels

_VALID_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` whose operation runs on the host, compiled by the C++ compiler."""

    def __init__(
        self,
        in_params: str,
        out_params: str,
        operation: str,
        name: str = "kernel",
        reduce_dims: bool = True,
        preamble: str = "",
        no_return: bool = False,
        return_tuple: bool = False,
        **kwargs: Any,
    ) -> None:
        if not _VALID_NAME.match(name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        self.in_params_text = in_params
        self.out_params_text = out_params
        self.in_params = get_param_info(in_params, True)
        self.out_params = get_param_info(out_params, False)
        self.params = self.in_params + self.out_params
        self.nin = len(self.in_params)
        self.nout = len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation = operation
        self.name = name
        self.__name__ = name
        self.reduce_dims = reduce_dims
        self.preamble = preamble
        self.no_return = no_return
        self.return_tuple = return_tuple
        self.kwargs = kwargs
        if "i" in [p.name for p in self.params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self._libs: dict[tuple, Callable] = {}

    def __call__(self, *args: Any, size: int = -1, stream: Any = None, block_size: int = 128) -> Any:
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        values: list[Any] = []
        for p, a in zip(self.params, args):
            if isinstance(a, ndarray):
                values.append(a)
            elif type(a) in (bool, int, float, complex) or isinstance(a, np.generic):
                # CuPy 14.2 wraps a scalar argument in _scalar.CScalar (_core/_kernel.pyx,
                # _preprocess_arg), which takes a Python or NumPy scalar and refuses anything else
                # with TypeError, a 0-d numpy.ndarray included (_core/_scalar.pyx, CScalar.__init__).
                values.append(_scalar_value(a))
            else:
                raise TypeError(f"Unsupported type {type(a)} for kernel argument {p.name!r}")
        out_args = values[self.nin :]
        for a in out_args:
            if not isinstance(a, ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")

        # Broadcast every non-raw array, outputs included, as CuPy does.
        nonraw = [a for p, a in zip(self.params, values) if isinstance(a, ndarray) and not p.raw]
        if size != -1:
            if nonraw:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
            shape: tuple[int, ...] = (int(size),)
        else:
            if not nonraw:
                raise ValueError("Loop size is undecided.")
            shape = np.broadcast_shapes(*(a.shape for a in nonraw))

        kinds = argument_kinds(self.params, values)
        in_types, out_types, type_map = resolve_types(self.in_params, self.out_params, kinds, [a.dtype for a in values])

        if not out_args:
            if capture.active() is not None:
                raise capture.refuse("alloc", f"the outputs of kernel {self.name!r}")
            for p in self.out_params:
                if p.raw and size == -1:
                    raise ValueError("Output array size is Undecided")
            allocate = np.empty if runs_kernels() else np.zeros
            out_args = [allocate(shape, t).view(ndarray) for t in out_types]
        else:
            for p, a in zip(self.out_params, out_args):
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
        if self.no_return:
            ret: Any = None
        elif not self.return_tuple and self.nout == 1:
            ret = out_args[0]
        else:
            ret = tuple(out_args)
        if 0 in shape:
            return ret

        # The one place a scalar argument takes its parameter's type.
        in_args = list(values[: self.nin])
        for k, (a, t) in enumerate(zip(in_args, in_types)):
            if not isinstance(a, ndarray):
                in_args[k] = _cast_scalar(args[k], t, self.in_params[k].name)

        args_all = in_args + out_args
        kinds = argument_kinds(self.params, args_all)
        capturing = capture.active() is not None  # then recorded, launched by each Graph.launch
        with contextlib.nullcontext() if capturing else counted("kernel", self.name):
            if is_recording():
                record(self._describe(kinds, args_all, shape))
            if runs_kernels():
                run = functools.partial(launch, self._lib_for(kinds, type_map), self.name, kinds, args_all, shape)
                capture.record(self.name, run) if capturing else run()
        return ret

    def _lib_for(self, kinds: tuple[str, ...], type_map: tuple[tuple[str, np.dtype], ...]) -> Callable:
        key = (kinds, type_map)
        fn = self._libs.get(key)
        if fn is None:
            fn = self._libs[key] = load_kernel(self._host_source(kinds, type_map), self.name)
        return fn

    def _host_source(self, kinds: Sequence[str], type_map: Sequence[tuple[str, np.dtype]]) -> str:
        """The host C++ of this kernel for one combination of argument kinds and types."""
        return host_kernel_source(self.params, kinds, type_map, self.operation, self.preamble)

    def _describe(self, kinds: tuple[str, ...], args: Sequence[Any], shape: tuple[int, ...]) -> KernelCall:
        views = [None if kind == "s" else indexed_view(a, kind, shape) for kind, a in zip(kinds, args)]
        return KernelCall(
            name=self.name,
            in_params=self.in_params_text,
            out_params=self.out_params_text,
            operation=self.operation,
            preamble=self.preamble,
            kinds=kinds,
            dtypes=tuple(str(a.dtype) for a in args),
            loop_shape=tuple(shape),
            shapes=tuple(None if v is None else tuple(v.shape) for v in views),
            strides=tuple(None if v is None else tuple(v.strides) for v in views),
        )


def _scalar_value(a: Any) -> np.ndarray:
    """A scalar argument's own type, as CuPy's ``CScalar`` gives it (``_core/_scalar.pyx``,
    ``numpy_dtype_from_pyscalar``): bool, int64 (uint64 from 2**63), float64, complex128 for Python
    scalars, its dtype for a NumPy scalar; an int beyond uint64 raises ``OverflowError``."""
    if type(a) is int and a >= 2**63:
        return np.asarray(a, dtype=np.uint64)
    return np.asarray(a)


def _cast_scalar(a: Any, t: np.dtype, name: str) -> np.ndarray:
    """``a`` (the argument as given) in its parameter's type ``t``, as ``CScalar.apply_dtype`` stores
    it (NumPy's assignment: an out-of-range Python int or a NaN into an integer type raises)."""
    try:
        if isinstance(a, np.generic) and t.kind == "i" and a.dtype.kind in "iuf":
            # NumPy stores a NumPy scalar into a signed integer through a Python int, range-checked
            # (NaN: ValueError; inf or out of range: OverflowError); unsigned targets wrap.
            value, info = int(a), np.iinfo(t)
            if not info.min <= value <= info.max:
                raise OverflowError(f"{a!r} is out of the range of {t}")
            return np.asarray(value, dtype=t)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(a, dtype=t)
    except (OverflowError, ValueError, TypeError) as e:
        raise TypeError(f"kernel argument {name!r}: cannot convert {a!r} to {t}: {e}") from None


def precompile(calls: Iterable[KernelCall], workers: int = 2) -> int:
    """Build the host libraries for recorded kernel calls in parallel (g++ runs as separate processes).

    Calls then find their library in the cache instead of compiling one after another; returns how
    many distinct libraries were needed.
    """
    sources: dict[str, str] = {}
    for c in calls:
        k = ElementwiseKernel(c.in_params, c.out_params, c.operation, c.name, preamble=c.preamble)
        _, _, type_map = resolve_types(k.in_params, k.out_params, c.kinds, c.dtypes)
        src = k._host_source(c.kinds, type_map)
        sources[hashlib.sha256(src.encode()).hexdigest()] = src
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(compile_host_library, sources.values()))
    return len(sources)
