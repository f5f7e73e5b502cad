"""Recording ElementwiseKernel calls: ``KernelCall`` and ``record_kernel_calls``.

Part of ``fcgpu.testing.fake_cupy``'s kernel engine. The compile gate
(``support.cuda_compile``) lists the backend's kernel calls this way to learn the argument
layouts CuPy would compile, and ``precompile`` builds host libraries from recorded calls.
``ElementwiseKernel.__call__`` reports each call through ``is_recording``/``record`` and asks
``runs_kernels`` whether to execute it. ``registered`` (an entry kept in a list for a ``with``
block) also serves ``counting``'s blocks.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class KernelCall:
    """What one ElementwiseKernel call handed the device, for checking which variants CuPy would compile.

    Per parameter: ``kinds`` 'a' (an array broadcast to the loop shape), 'r' (a raw array) or
    's' (a scalar, already cast to its parameter type); ``dtypes`` the NumPy dtype names;
    ``shapes``/``strides`` (bytes) as the kernel indexes them, ``None`` for scalars.
    """

    name: str
    in_params: str
    out_params: str
    operation: str
    preamble: str
    kinds: tuple[str, ...]
    dtypes: tuple[str, ...]
    loop_shape: tuple[int, ...]
    shapes: tuple[tuple[int, ...] | None, ...]
    strides: tuple[tuple[int, ...] | None, ...]


_recorders: list[tuple[list[KernelCall], bool]] = []


@contextlib.contextmanager
def record_kernel_calls(execute: bool = True) -> Iterator[list[KernelCall]]:
    """Collect a ``KernelCall`` for every ElementwiseKernel call made inside the block.

    With ``execute=False`` kernels are not compiled or run (outputs they allocate are zeros),
    so a caller's sequence of kernel calls can be listed without a C++ compiler.
    """
    calls: list[KernelCall] = []
    with registered(_recorders, (calls, execute)):
        yield calls


@contextlib.contextmanager
def registered(entries: list[T], entry: T) -> Iterator[T]:
    """``entry`` kept in ``entries`` for the block and removed after it (by identity, also on error),
    so blocks that nest or close out of order each remove their own."""
    entries.append(entry)
    try:
        yield entry
    finally:
        for k, e in enumerate(entries):
            if e is entry:
                del entries[k]
                break


def is_recording() -> bool:
    """Whether a ``record_kernel_calls`` block is open."""
    return bool(_recorders)


def runs_kernels() -> bool:
    """False inside a ``record_kernel_calls(execute=False)`` block: calls are listed, not compiled or run."""
    return all(run for _, run in _recorders)


def record(call: KernelCall) -> None:
    """Add ``call`` to every open ``record_kernel_calls`` block."""
    for calls, _ in _recorders:
        calls.append(call)
