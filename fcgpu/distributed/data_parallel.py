"""What the trainer does differently on N ranks: start from rank 0, average gradients, share rows.

``DataParallel`` is a part of ``fcgpu.training.trainer.Trainer`` (which inherits it); with one rank each
method does nothing, so a single process runs exactly as before. With N ranks:

- ``_start_from_rank0`` (fit, evaluate, predict): checks that every rank passed the same data,
  settings and model layout (``checks.same_on_every_rank``), then broadcasts rank 0's parameters
  (fit: also its optimizer state, step counts, seeded generator and the layers' dropout seeds and
  step counters, so shuffling and dropout draw alike on every rank and every rank starts identical
  whatever its seed);
- ``_reduce_gradients`` (each step, between backward and the optimizer update): one in-place
  all-reduce per flat gradient buffer of share x gradient, where a rank's share is its rows /
  the global batch's rows; the loss scales each rank's gradient by 1 / its own rows, so the sum is
  the full batch's mean gradient, an uneven last batch included (a rank whose share is empty
  still runs a step on a borrowed row and contributes exact zeros);
- ``step_share``: one rank's step of a global batch (``_train_global_batch``: train_step's);
  ``quiet_callbacks``: callbacks run on every rank (they decide alike, on global figures) but
  print on rank 0 only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import resolve_backend
from ..backends.base import Array
from ..initializers import get_rng
from .checks import fingerprint, same_on_every_rank
from .communicator import world
from .sharding import shard_bounds

__all__ = ["DataParallel", "quiet_callbacks"]


class DataParallel:
    """Trainer methods for data-parallel runs; each is a no-op in a world of one."""

    def _start_from_rank0(self, comm: Any, what: str, arrays: dict[str, Any], settings: Any, fit: bool) -> None:
        """Check that every rank has the same ``arrays`` (host arrays or tuples of them), ``settings``
        and model layout, then broadcast rank 0's parameters (and, for ``fit``, its optimizer state
        and seeded generator). Raises ValueError on every rank alike when anything differs."""
        if comm.size == 1:
            return
        flat = self.flat_parameters()
        self._started_from_rank0 = flat
        backend = self.backend
        layout = [(name, np.dtype(dtype).str, start, stop) for name, (dtype, start, stop) in flat.slices.items()]
        state = getattr(self.optimizer, "state", None) if fit else None
        slots = _state_layout(state) if isinstance(state, dict) else None
        prints = {k: tuple(map(fingerprint, v)) if isinstance(v, tuple) else fingerprint(v) for k, v in arrays.items()}
        optimizer = self.optimizer.get_config() if fit else None  # settings too: a learning rate, a loss scale
        same_on_every_rank(
            comm, what, backend=backend.name, settings=settings, parameters=layout, optimizer_state=slots,
            optimizer=optimizer, **prints
        )
        for buffer in flat.params.values():
            backend.broadcast(buffer, comm)
        for name, value, _ in (v for layer in self.compute_layers for v in layer.variables()):
            if name not in flat.slices:  # frozen weights and non-trainable state (moving statistics)
                backend.broadcast(value, comm)
        for dtype, half in flat.halves.items():  # mixed precision: what forward and backward read
            half[...] = flat.params[dtype].astype(half.dtype)
        if slots:
            host = resolve_backend("numpy")[0]
            for name, slot, *_ in slots:
                value = state[name][slot]
                (backend if backend.owns(value) else host).broadcast(value, comm)
        if fit:
            steps = getattr(self.optimizer, "steps", None)
            if isinstance(steps, dict):
                root = comm.bcast_object(dict(steps))
                steps.clear()
                steps.update(root)
            rng = get_rng()
            rng.bit_generator.state = comm.bcast_object(rng.bit_generator.state)
            # Randomness inside a step (dropout) is keyed by each layer's seed and step count.
            keyed = [{a: getattr(layer, a) for a in _LAYER_RANDOMNESS if isinstance(getattr(layer, a, None), int)}
                     for layer in self.compute_layers]
            for layer, values in zip(self.compute_layers, comm.bcast_object(keyed)):
                for attribute, value in values.items():
                    setattr(layer, attribute, value)

    def _start_from_rank0_once(self, comm: Any) -> None:
        """``_start_from_rank0`` for a step outside fit (``train_step``), unless these flat buffers
        already started from rank 0."""
        if getattr(self, "_started_from_rank0", None) is not self.flat_parameters():
            self._start_from_rank0(comm, "train_step", {}, None, fit=True)

    def _reduce_gradients(self, share: float | None) -> None:
        """Average the gradients over the ranks, in place: each flat gradient buffer becomes the
        sum over the ranks of share x gradient (``share``: this rank's rows / the global batch's
        rows; None: an equal share). Nothing in a world of one."""
        comm = world()
        if comm.size == 1:
            return
        weight = 1.0 / comm.size if share is None else float(share)
        flat = self.flat_parameters()
        for grad in flat.grads.values():
            if weight == 0.0:
                grad[...] = 0  # exact zeros, whatever a borrowed row's gradient held
                self.backend.allreduce_sum(grad, comm)
            else:
                self.backend.allreduce_sum(grad, comm, weight)

    def _train_global_batch(self, x: Array, y: Array, acc: Array, w: Array | None = None) -> np.ndarray:
        """One step on N ranks: (x, y) is the global batch on every rank (``w`` its rows' sample
        weights, or None); this rank steps on its share, and the accumulator's sums returned are
        global (summed over the ranks, on the host)."""
        comm = world()
        self._start_from_rank0_once(comm)
        start, stop = shard_bounds(x.shape[0], comm.rank, comm.size)
        self.step_share(x, y, acc, start, stop, x.shape[0], (x[0:1], y[0:1]), w)
        return comm.sum_host(self.backend.to_numpy(acc))

    def step_share(
        self, x: Array, y: Array, acc: Array, start: int, stop: int, rows: int, spare: Any, w: Array | None = None
    ) -> None:
        """This rank's step of a global batch of ``rows`` rows: rows [start, stop) of (x, y) (and of
        the sample weights ``w``, sharded with them), or, when its share is empty, a step on
        ``spare`` (one row, its sums into a scratch row, its gradient counted as zero) so that every
        rank takes part in the all-reduce and the same update."""
        if stop > start:
            comm = world()
            first = shard_bounds(rows, comm.rank, comm.size)[0]  # this share's first row in the batch
            weights = None if w is None else w[start:stop]
            self.accumulate_batch(x[start:stop], y[start:stop], acc, (stop - start) / rows, first, sample_weight=weights)
        else:
            xs, ys = spare
            self.accumulate_batch(xs, ys, self.backend.zeros(acc.shape, np.float64), 0.0)


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
