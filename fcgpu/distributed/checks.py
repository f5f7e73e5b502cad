"""Cheap checks that every rank was handed the same thing (data, settings, model layout).

Data-parallel training assumes each rank passes the same x and y to ``fit`` (each trains on
its share of every global batch): a rank with other data would silently train a different
model. ``same_on_every_rank`` gathers a few small values per rank (shapes, dtypes, a CRC-32 of
the bytes, settings) and raises the same ValueError on every rank when any differs, so the
ranks fail together instead of one waiting in a collective that the others never reach.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["fingerprint", "same_on_every_rank"]


def fingerprint(a: np.ndarray | None) -> tuple[Any, ...] | None:
    """(shape, dtype, CRC-32 of the bytes) of a host array: one pass over it, no copy when it is
    C-contiguous."""
    if a is None:
        return None
    data = np.ascontiguousarray(a)
    return tuple(data.shape), data.dtype.str, zlib.crc32(memoryview(data.reshape(-1).view(np.uint8)))


def same_on_every_rank(comm: Any, what: str, **values: Any) -> None:
    """Raise ValueError (on every rank alike) naming the entries of ``values`` that are not equal
    on all ranks of ``comm``; nothing happens in a world of one."""
    if comm.size == 1:
        return
    names = sorted(values)
    gathered = comm.allgather_object(tuple(values[name] for name in names))
    bad = [name for i, name in enumerate(names) if any(g[i] != gathered[0][i] for g in gathered[1:])]
    if bad:
        ranks = sorted({r for r, g in enumerate(gathered) if g != gathered[0]})
        raise ValueError(
            f"{what}: every rank must pass the same {', '.join(bad)} (each rank trains on its share of "
            f"every global batch), but rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} "
            f"of {comm.size} differ{'' if len(ranks) > 1 else 's'} from rank 0"
        )
