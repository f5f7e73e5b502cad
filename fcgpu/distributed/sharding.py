"""Sharding: which rows of each global batch a rank trains on, evaluates or predicts.

A global batch of ``g`` rows is split contiguously: rank r of N takes rows
[r*g//N, (r+1)*g//N), so the shares differ by at most one row and a rank's share may be empty
(a last batch smaller than N). ``epoch_batches`` lays out one epoch: each batch's slice in the
array the rank trains from and the global batch's row count, which weights the rank's gradient
(its rows / the global rows) so that the averaged gradient is the full batch's mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Batch", "epoch_batches", "shard_bounds"]


def shard_bounds(rows: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous share of ``rows`` rows split over ``size`` ranks."""
    for name, value in (("rows", rows), ("rank", rank), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {value!r}")
    if rows < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"rows, rank, size: expected rows >= 0, size >= 1 and 0 <= rank < size, got {rows}, {rank}, {size}")
    return rank * rows // size, (rank + 1) * rows // size


@dataclass(frozen=True)
class Batch:
    """One step: rows [start, stop) of the rank's epoch array, of a global batch of ``rows`` rows."""

    start: int
    stop: int
    rows: int


def epoch_batches(
    n: int, batch_size: int, rank: int = 0, size: int = 1, gathered: bool = False
) -> tuple[list[Batch], np.ndarray | None]:
    """The batches of one epoch over ``n`` samples for rank ``rank`` of ``size``.

    ``gathered=False``: the slices index the epoch's full array (in the epoch's order), and the
    second value is None. ``gathered=True``: they index an array holding only this rank's rows,
    in order, and the second value gives the positions (into the epoch's order) of those rows:
    gather ``order[positions]`` once, instead of the whole epoch, then slice it.
    In a world of one both ways give the batches [i, i + batch_size) of the whole array.
    """
    starts = np.arange(0, n, batch_size, dtype=np.int64)
    rows = np.minimum(batch_size, n - starts)
    lo, hi = rank * rows // size, (rank + 1) * rows // size
    if not gathered or size == 1:
        return [Batch(int(s + a), int(s + b), int(g)) for s, a, b, g in zip(starts, lo, hi, rows)], None
    counts = hi - lo
    local = np.concatenate([[0], np.cumsum(counts)])
    position = np.arange(n, dtype=np.int64)
    offset = position - (position // batch_size) * batch_size
    batch = position // batch_size
    mine = (offset >= lo[batch]) & (offset < hi[batch])
    batches = [Batch(int(a), int(b), int(g)) for a, b, g in zip(local[:-1], local[1:], rows)]
    return batches, position[mine]
