"""``PyDataset``: Keras 3's base class for a data set that hands ``fit`` one batch at a time.

A subclass defines ``__len__`` (the number of batches; or the ``num_batches`` property, None for
an endless data set) and ``__getitem__(index)`` returning the batch at ``index``: ``(x, y)``,
``(x, y, sample_weight)`` or ``x`` alone (for ``predict``). ``on_epoch_begin`` / ``on_epoch_end``
are called around every epoch (shuffle there, for example). ``workers``, ``use_multiprocessing``
and ``max_queue_size`` are accepted as Keras accepts them; fcgpu reads the batches in the calling
thread, in order, one batch ahead of the step that uses them.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

__all__ = ["PyDataset"]


class PyDataset:
    """Base class for batch-indexed data sets (``keras.utils.PyDataset``'s interface)."""

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10) -> None:
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value: int) -> None:
        self._workers = value

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value: bool) -> None:
        self._use_multiprocessing = value

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value: int) -> None:
        self._max_queue_size = value

    def __getitem__(self, index: int) -> Any:
        """The batch at position ``index``."""
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(self, index) returning a batch")

    @property
    def num_batches(self) -> int | None:
        """The number of batches (``len(self)``), or None for an endless data set."""
        if hasattr(self, "__len__"):
            return len(self)  # type: ignore[arg-type]
        raise NotImplementedError(f"{type(self).__name__} must define __len__ or the num_batches property")

    def __iter__(self) -> Iterator[Any]:
        count = self.num_batches
        for index in range(count) if count is not None else itertools.count():
            yield self[index]

    def on_epoch_begin(self) -> None:
        """Called at the beginning of every epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of every epoch."""
