"""Output buffers that layers and losses reuse across calls while no caller holds them."""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import numpy as np

from . import Backend
from .base import Array

__all__ = ["Buffers", "recording"]


def _count_when_unshared() -> int:
    """sys.getrefcount of an array held only by a dict, read exactly as ``Buffers.get`` reads it.

    Measured rather than assumed (3 on CPython 3.10-3.13: the dict, the local name, the call's
    argument), since newer interpreters borrow references to locals and count fewer.
    """
    arrays = {"probe": np.empty(1)}
    a = arrays.get("probe")
    return sys.getrefcount(a)


_UNSHARED = _count_when_unshared()
_handed: list[tuple["Buffers", str]] | None = None  # inside ``recording``: each (Buffers, key) handed out


@contextlib.contextmanager
def recording() -> Iterator[list[Array]]:
    """Inside the block, every array any ``Buffers`` hands out is noted; the list yielded holds them
    all when the block ends (a reference each: none is freed or handed out again while it is held).

    A CUDA graph writes its kernels' outputs at fixed addresses: the arrays its captured step got
    from layers' and losses' buffers must outlive it, though a later call of another shape replaces
    them in their ``Buffers`` (and CuPy's pool would give their memory to the next allocation).
    """
    global _handed
    previous, _handed = _handed, []
    held: list[Array] = []
    try:
        yield held
    finally:
        handed, _handed = _handed, previous
        arrays = (owner._arrays.get(key) for owner, key in handed)
        held += list({id(a): a for a in arrays if a is not None}.values())


class Buffers:
    """Arrays a layer (or loss) writes its results into, reused while nobody outside holds them.

    A training loop that drops each step's outputs therefore allocates nothing in steady state,
    while an array a caller kept (``y1 = layer(x1)``) is never overwritten by a later call.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, Array] = {}

    def get(self, backend: Backend, key: str, shape: tuple[int, ...], dtype: Any) -> Array:
        if _handed is not None:
            _handed.append((self, key))
        a = self._arrays.get(key)
        if (a is not None and a.shape == shape and a.dtype == dtype and sys.getrefcount(a) <= _UNSHARED
                and backend.owns(a)):  # a loss reused by a model on another backend gets a new one
            return a
        a = self._arrays[key] = backend.empty(shape, dtype)
        return a

    def clear(self) -> None:
        self._arrays.clear()
