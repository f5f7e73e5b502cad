"""Running a model on N ranks: start every rank from rank 0, step on a rank's share of a batch.

Functions of a model (``fcgpu.training.trainer.Trainer``'s, duck-typed), used by ``fit``,
``evaluate``, ``predict`` and the epoch loops; in a world of one each does nothing more than one
process does:

- ``start_from_rank0(model, ...)``: checks that every rank passed the same data, settings and
  model layout (``checks.same_on_every_rank``), then broadcasts rank 0's parameters (for training
  also its optimizer state, step counts, seeded generator and the layers' dropout seeds and step
  counters, so shuffling and dropout draw alike on every rank and every rank starts identical
  whatever its seed);
- ``step_share(model, ...)``: one rank's step of a global batch, whose gradients the all-reduce
  optimizer (``allreduce.AllReduceOptimizer``) averages weighted by the rank's share of the rows
  (a rank whose share is empty still runs a step on a borrowed row and contributes exact zeros);
  ``train_global_batch``: ``train_step``'s;
- ``quiet_callbacks``: callbacks run on every rank (they decide alike, on global figures) but
  print on rank 0 only.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from ..backends import resolve_backend
from ..backends.base import Array
from ..initializers import get_rng
from .checks import fingerprint, same_on_every_rank
from .communicator import world
from .sharding import shard_bounds

__all__ = ["quiet_callbacks", "start_from_rank0", "step_share", "train_global_batch"]

# model -> the flat buffers that last started from rank 0 (train_step starts once per layout)
_STARTED: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def start_from_rank0(
    model: Any, what: str = "start_from_rank0", arrays: dict[str, Any] | None = None, settings: Any = None,
    *, training: bool = True, comm: Any = None,
) -> None:
    """Check that every rank has the same ``arrays`` (host arrays or tuples of them, by name),
    ``settings`` and model layout, then broadcast rank 0's parameters (and, ``training``, its
    optimizer state, step counts, seeded generator and the layers' dropout seeds and counters).
    Raises ValueError on every rank alike when anything differs (``what`` names the call). The
    model must be built (and compiled, for ``training``). Nothing more in a world of one."""
    from ..models.base import Model

    if not isinstance(model, Model):
        raise TypeError(f"model: expected an fcgpu model, got {type(model).__name__}")
    comm = world() if comm is None else comm
    if comm.size == 1:
        return
    flat = model.flat_parameters()
    if flat is None:
        raise ValueError(f"{what}: build the model first (model.build or a first call on data)")
    _STARTED[model] = flat
    backend = model.backend
    optimizer = model.optimizer if training else None
    layout = [(name, np.dtype(dtype).str, start, stop) for name, (dtype, start, stop) in flat.slices.items()]
    state = getattr(optimizer, "state", None)
    slots = _state_layout(state) if isinstance(state, dict) else None
    prints = {k: tuple(map(fingerprint, v)) if isinstance(v, tuple) else fingerprint(v) for k, v in (arrays or {}).items()}
    config = optimizer.get_config() if optimizer is not None else None  # settings too: a learning rate, a loss scale
    same_on_every_rank(
        comm, what, backend=backend.name, settings=settings, parameters=layout, optimizer_state=slots,
        optimizer=config, **prints
    )
    for buffer in flat.params.values():
        backend.broadcast(buffer, comm)
    for name, value, _ in (v for layer in model.compute_layers for v in layer.variables()):
        if name not in flat.slices:  # frozen weights and non-trainable state (moving statistics)
            backend.broadcast(value, comm)
    for dtype, half in flat.halves.items():  # mixed precision: what forward and backward read
        half[...] = flat.params[dtype].astype(half.dtype)
    if slots:
        host = resolve_backend("numpy")[0]
        for name, slot, *_ in slots:
            value = state[name][slot]
            (backend if backend.owns(value) else host).broadcast(value, comm)
    if training:
        steps = getattr(optimizer, "steps", None)
        if isinstance(steps, dict):
            root = comm.bcast_object(dict(steps))
            steps.clear()
            steps.update(root)
        rng = get_rng()
        rng.bit_generator.state = comm.bcast_object(rng.bit_generator.state)
        # Randomness inside a step (dropout) is keyed by each layer's seed and step count.
        keyed = [{a: getattr(layer, a) for a in _LAYER_RANDOMNESS if isinstance(getattr(layer, a, None), int)}
                 for layer in model.compute_layers]
        for layer, values in zip(model.compute_layers, comm.bcast_object(keyed)):
            for attribute, value in values.items():
                setattr(layer, attribute, value)


def train_global_batch(
    model: Any, x: Array, y: Array, acc: Array, w: Array | None = None, what: str = "train_step",
    host: dict[str, Any] | None = None,
) -> np.ndarray:
    """One step on a global batch, its accumulator's sums returned on the host: (x, y) is the
    global batch on every rank (``w`` its rows' sample weights, or None); in a world of one the
    step on all of it, else this rank's step on its share, after checking that every rank passed
    the same ``host`` arrays (by name) and starting from rank 0 (once per layout); the sums are
    then global (summed over the ranks)."""
    comm = world()
    if comm.size == 1:
        model.accumulate_batch(x, y, acc, sample_weight=w)
        return model.backend.to_numpy(acc)
    if host:
        same_on_every_rank(comm, what, **{k: None if v is None else fingerprint(v) for k, v in host.items()})
    if _STARTED.get(model) is not model.flat_parameters():
        start_from_rank0(model, what, comm=comm)
    start, stop = shard_bounds(x.shape[0], comm.rank, comm.size)
    step_share(model, x, y, acc, start, stop, x.shape[0], (x[0:1], y[0:1]), w)
    return comm.sum_host(model.backend.to_numpy(acc))


def step_share(
    model: Any, x: Array, y: Array, acc: Array, start: int, stop: int, rows: int, spare: Any, w: Array | None = None
) -> None:
    """This rank's step of a global batch of ``rows`` rows: rows [start, stop) of (x, y) (and of
    the sample weights ``w``, sharded with them), or, when its share is empty, a step on
    ``spare`` (one row, its sums into a scratch row, its gradient counted as zero) so that every
    rank takes part in the all-reduce and the same update."""
    if stop > start:
        comm = world()
        first = shard_bounds(rows, comm.rank, comm.size)[0]  # this share's first row in the batch
        weights = None if w is None else w[start:stop]
        model.accumulate_batch(x[start:stop], y[start:stop], acc, (stop - start) / rows, first, sample_weight=weights)
    else:
        xs, ys = spare
        model.accumulate_batch(xs, ys, model.backend.zeros(acc.shape, np.float64), 0.0)


_LAYER_RANDOMNESS = ("seed", "step")  # what keys a layer's in-step randomness (Dropout's Philox stream)


def _state_layout(state: dict[str, dict[str, Array]]) -> list[tuple[Any, ...]]:
    """[(parameter name, slot, shape, dtype)] of an optimizer's state, sorted."""
    return sorted(
        (name, slot, tuple(value.shape), np.dtype(value.dtype).str)
        for name, slots in state.items()
        for slot, value in slots.items()
    )


class _QuietCallbacks:
    """A CallbackList whose hooks print nothing (their standard output is discarded)."""

    def __init__(self, inner: Any, comm: Any) -> None:
        self._inner, self._comm = inner, comm

    def call(self, hook: str, *args: Any) -> None:
        with self._comm.quiet_unless_root():
            self._inner.call(hook, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def quiet_callbacks(callback_list: Any, comm: Any) -> Any:
    """``callback_list`` itself on rank 0 (and in a world of one), else one that prints nothing."""
    return callback_list if comm.rank == 0 else _QuietCallbacks(callback_list, comm)
