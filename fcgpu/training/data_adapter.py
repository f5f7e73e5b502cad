"""What ``fit``, ``evaluate`` and ``predict`` accept as data, and the batch streams they read.

Arrays (NumPy, lists, the backends' arrays, pandas DataFrames and Series, recognised by their
``to_numpy`` without importing pandas) take the array path: checked once, copied to the device
once, batches are slices. A Python generator (or any iterator) and a ``PyDataset`` (fcgpu's or
Keras's: ``__len__``/``__getitem__`` with ``on_epoch_end``) are *streams*: ``BatchStream`` reads
them one batch at a time, as Keras's epoch iterator does:

- a PyDataset's epoch is its ``len`` batches (their order shuffled with fit's ``shuffle``), or
  ``steps`` of them continuing where the last epoch stopped; past its end the epoch ends early
  with Keras's "ran out of data" warning and the next epoch starts again at batch 0;
- a generator is never rewound: an epoch takes ``steps`` batches (all of them without
  ``steps``); when it runs out the epoch ends there with the same warning and training stops
  (``BatchStream.exhausted``). Validation data from a generator without ``validation_steps`` is
  read once and its batches kept for the later epochs (``replay``).

Each batch is ``(x, y)``, ``(x, y, sample_weight)`` or, for predict, ``x`` or ``(x,)``.
"""
from __future__ import annotations

import collections.abc
import inspect
import warnings
from typing import Any, Iterator

import numpy as np

from ..initializers import get_rng
from ..utils.py_dataset import PyDataset

__all__ = ["host_data", "is_stream", "BatchStream", "split_batch", "RAN_OUT"]

RAN_OUT = (
    "Your input ran out of data; interrupting training. Make sure that your dataset or generator can generate at "
    "least `steps_per_epoch * epochs` batches."
)


def host_data(value: Any) -> Any:
    """``value`` itself, or a pandas DataFrame/Series (anything with ``to_numpy``, not an ndarray) as
    a NumPy array; mixed numeric columns (bool, int, float) become float64."""
    if value is None or isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        return value
    convert = getattr(value, "to_numpy", None)
    if not callable(convert) or hasattr(value, "__cuda_array_interface__"):
        return value
    array = np.asarray(convert())
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            pass  # the checks name the column type that is not numeric
    return array


def _is_indexed(data: Any) -> bool:
    return isinstance(data, PyDataset) or (
        hasattr(data, "__getitem__") and hasattr(data, "__len__") and callable(getattr(data, "on_epoch_end", None))
    )


def is_stream(data: Any) -> bool:
    """Whether ``data`` is read batch by batch: a generator, another iterator, or a PyDataset."""
    if data is None or isinstance(data, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    return inspect.isgenerator(data) or isinstance(data, collections.abc.Iterator) or _is_indexed(data)


def split_batch(batch: Any, where: str, predicting: bool = False) -> tuple[Any, Any]:
    """(x, y) of one batch; y is None for a batch of inputs alone (only ``predict`` takes one). Its
    sample weights, where it has them, are ``batch_weights``'s."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        if predicting and batch is not None and not isinstance(batch, dict):
            return batch, None
        raise TypeError(f"{where}: expected a tuple (x, y) or (x, y, sample_weight), got {type(batch).__name__}")
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"{where}: expected a tuple (x,), (x, y) or (x, y, sample_weight), got {len(batch)} entries")
    if len(batch) == 1 or batch[1] is None:
        if not predicting:
            raise ValueError(f"{where}: expected (x, y) with targets y, got x alone")
        return batch[0], None
    return batch[0], batch[1]


def batch_weights(batch: Any) -> Any:
    """The third entry of an (x, y, sample_weight) batch, or None."""
    return batch[2] if isinstance(batch, (tuple, list)) and len(batch) == 3 else None


class BatchStream:
    """One generator or PyDataset read epoch by epoch (``epoch``), one batch ahead (``peek``)."""

    def __init__(self, data: Any, steps: int | None, argument: str, shuffle: bool = False, replay: bool = False) -> None:
        self.argument, self.steps, self.shuffle = argument, steps, bool(shuffle)
        self.indexed = _is_indexed(data)
        self.data = data
        self.length: int | None = None
        if self.indexed:
            try:
                self.length = data.num_batches if hasattr(data, "num_batches") else len(data)
            except NotImplementedError:
                self.length = None
            if self.length is None and steps is None:
                raise ValueError(f"{argument}: an endless PyDataset needs the number of steps per epoch "
                                 f"(steps_per_epoch, validation_steps or steps)")
            if self.length == 0:
                raise ValueError(f"{argument}: the PyDataset has no batches (len 0)")
            self._order: list[int] = []
            self._position = 0
        else:
            self._iterator = iter(data)
        self._ahead: list[Any] = []  # a batch read before its epoch (peek)
        # replay: a generator without steps keeps its batches (host arrays) to give them again
        # every later epoch, as validation data is read every epoch.
        self._kept: list[Any] | None = [] if replay and not self.indexed and steps is None else None
        self.exhausted = False  # a generator that ran out: nothing is left for another epoch
        self.ran_out = False  # this epoch ended before its steps

    def peek(self) -> Any:
        """The next batch, without taking it (a generator that is already empty raises ValueError)."""
        if self.indexed:
            return self.data[0]  # read again in its epoch: a PyDataset is indexed at will
        if not self._ahead:
            try:
                self._ahead.append(next(self._iterator))
            except StopIteration:
                raise ValueError(f"{self.argument}: the generator yielded no batch") from None
        return self._ahead[0]

    def _next_indexed(self) -> Any:
        if self._position == 0:
            count = self.length
            self._order = list(get_rng().permutation(count)) if self.shuffle and count else []
        index = self._order[self._position] if self._order else self._position
        self._position += 1
        return self.data[int(index)]

    def epoch(self) -> Iterator[Any]:
        """The batches of one epoch (see the module's rules); ``ran_out`` tells whether it was cut short."""
        self.ran_out = False
        if self.indexed:
            begin = getattr(self.data, "on_epoch_begin", None)
            if callable(begin):
                begin()
            steps = self.steps if self.steps is not None else self.length
            if self.steps is None:
                self._position = 0
            for _ in range(steps):
                if self.length is not None and self._position >= self.length:
                    self.ran_out = True
                    warnings.warn(RAN_OUT, UserWarning, stacklevel=4)
                    break
                yield self._next_indexed()
            if self.length is not None and self._position >= self.length:
                self._position = 0
            self.data.on_epoch_end()
            return
        if self.exhausted and self._kept is not None:
            yield from self._kept  # a validation generator read to its end: its batches again
            return
        taken = 0
        while self.steps is None or taken < self.steps:
            if self._ahead:
                batch = self._ahead.pop()
            else:
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    self.exhausted = True
                    if self.steps is not None or taken == 0:
                        self.ran_out = True
                        warnings.warn(RAN_OUT, UserWarning, stacklevel=4)
                    return
            taken += 1
            if self._kept is not None:
                self._kept.append(batch)
            yield batch

    def at_end(self) -> bool:
        """Whether a generator has nothing left for another epoch (read one batch ahead to know)."""
        if self.indexed or self.exhausted:
            return self.exhausted
        if not self._ahead:
            try:
                self._ahead.append(next(self._iterator))
            except StopIteration:
                self.exhausted = True
        return self.exhausted
