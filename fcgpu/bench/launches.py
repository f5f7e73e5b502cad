"""Device operations per training step inside ``fit``, counted on the CuPy backend's stand-in.

On a GPU a small MLP is launch-bound: CuPy spends about 10 us of host time per kernel or library
call, whatever its size. ``launches_per_step`` runs ``fit`` on ``stand_in_backend()`` under
``fake_cupy.count_device_ops`` and reports what one steady-state step launches (kernels, GEMMs,
ufuncs, reductions, fills, copies, gathers) and moves between host and device, with the work
``fit`` does once per epoch and once per call reported apart; ``fcgpu bench --launches`` prints it.
"""
from __future__ import annotations

import contextlib
import textwrap
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..config import settings
from ..testing import fake_cupy
from ..testing.fake_cupy import TRANSFER_KINDS, DeviceOps, OpCounts, count_device_ops

if TYPE_CHECKING:
    from ..losses import Loss
    from ..models import Sequential
    from ..optimizers import Optimizer

__all__ = ["LaunchReport", "launches_per_step"]

Call = tuple[str, str]  # (kind, name), as fake_cupy.DeviceOps.calls lists them


@dataclass(frozen=True)
class LaunchReport:
    """What ``launches_per_step`` measured; ``OpCounts`` give ``total``, ``by_kind``, ``names`` and ``transfers``.

    ``per_step``: one steady-state training step inside ``fit``; ``step_calls`` its operations in
    order; ``typical_steps`` of ``steps - 1`` measured steps launched exactly that. ``per_epoch``:
    what an epoch of ``steps`` steps adds beyond its steps (shuffling, its buffers, the periodic
    progress reads, the epoch-end reads). ``per_fit``: what a ``fit`` call adds once (copying the
    data set to the device, ...).
    """

    widths: tuple[int, ...]
    batch: int
    loss: str
    optimizer: str
    steps: int
    per_step: OpCounts
    step_calls: tuple[Call, ...]
    typical_steps: int
    per_epoch: OpCounts
    per_fit: OpCounts

    def format(self) -> str:
        """A few lines for a terminal: per step (by kind, and the step's operations in order), per epoch, per fit."""
        model = "-".join(map(str, self.widths))
        order = ", ".join(name if kind not in TRANSFER_KINDS else f"{kind}:{name}" for kind, name in self.step_calls)
        lines = [
            f"{model} batch {self.batch}, {self.loss}, {self.optimizer}: "
            f"{self.per_step.total} device ops per training step in fit",
            f"  per step:  {self.per_step.summary()}",
            textwrap.fill(order, 100, initial_indent="    in order: ", subsequent_indent="      "),
        ]
        if self.typical_steps < self.steps - 1:
            extra = self.steps - 1 - self.typical_steps
            lines.append(f"    {extra} of {self.steps - 1} measured steps did more (a periodic read): per epoch")
        lines += [
            f"  per epoch of {self.steps} steps, beyond them: {self.per_epoch.summary()}",
            f"  per fit call: {self.per_fit.summary()}",
        ]
        return "\n".join(lines)


def launches_per_step(
    model_or_widths: "Sequential | Sequence[int]" = (784, 512, 10),
    batch: int = 128,
    loss: "str | Loss | None" = None,
    optimizer: "str | Optimizer | None" = None,
    steps: int = 20,
    metrics: Sequence[str] = (),
    activation: str = "relu",
    dtype: str = "float32",
) -> LaunchReport:
    """Device operations and host<->device transfers per training step inside ``fit``, on the CuPy backend's code.

    ``model_or_widths``: widths such as (784, 512, 10), built as Dense layers with ``activation``
    on the hidden layers and none on the last (logits), in ``dtype``, on ``stand_in_backend()``;
    or a built ``Sequential`` on that backend (it is trained: its weights change). ``loss`` and
    ``optimizer`` (with ``metrics``) compile the model; None keeps a given model's compile
    settings, else 'softmax_cross_entropy' and 'sgd'. Labels are random class ids for softmax
    cross-entropy, random 0/1 targets of the output's shape otherwise; inputs are standard normal.

    It counts the step-by-step path (``fcgpu.config.set_graphs`` off for these fits): with CUDA
    graphs on, a captured step is one launch (``fcgpu.training.graph_step``).

    How it counts (``fake_cupy.count_device_ops``: each operation as a GPU would launch it):

    1. a warm-up ``fit`` of 2 steps (optimizer state and the layers' buffers are created here);
    2. ``fit`` for 1 epoch of ``steps`` steps of ``batch`` rows (shuffled, ``verbose=0``), with
       the start of each step marked where it calls the first layer's ``forward``. A step's
       operations are those from its mark to the next one: the step itself and what ``fit``'s
       loop does around it. ``per_step`` is the sequence of operations most of steps 1 to
       ``steps - 1`` made (the last one runs into the epoch's end); steps that did more
       (a periodic read of the running loss) leave their extra to ``per_epoch``;
    3. ``fit`` for 2 epochs of the same data: ``per_epoch`` = this call's count - step 2's -
       ``steps`` x ``per_step``, and ``per_fit`` = step 2's count - ``per_epoch`` - ``steps`` x
       ``per_step``.

    ``per_epoch`` holds what the epoch's length decides: with a read of the running loss every k
    steps, an epoch of ``steps`` steps reads ``steps / k`` times. Raises RuntimeError when the
    counts are not those of a steady state (a later epoch launching fewer operations, or ``fit``
    not calling the first layer's ``forward`` once per step).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise ValueError(f"steps: expected an int of at least 3 (the steps of a measured epoch), got {steps!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch!r}")
    model = _stand_in_model(model_or_widths, activation, dtype)
    if loss is not None or optimizer is not None or not model.compiled:
        model.compile(loss=loss or "softmax_cross_entropy", optimizer=optimizer or "sgd", metrics=list(metrics))
    x, y = _data(model, batch * steps)
    fit = dict(batch_size=batch, shuffle=True, verbose=0)

    graphs, settings.graphs = settings.graphs, False  # the steps one by one (captured, a step is one launch)
    try:
        model.fit(x[: 2 * batch], y[: 2 * batch], epochs=1, **fit)
        with _marking_steps(model) as (one, starts):
            model.fit(x, y, epochs=1, **fit)
        with count_device_ops() as two:
            model.fit(x, y, epochs=2, **fit)
    finally:
        settings.graphs = graphs

    if len(starts) != steps:
        raise RuntimeError(
            f"fit called the first layer's forward {len(starts)} times in an epoch of {steps} steps; "
            f"the steps cannot be told apart"
        )
    windows = [tuple(one.calls[a:b]) for a, b in zip(starts, starts[1:])]
    typical, seen = Counter(windows).most_common(1)[0]
    step = Counter(typical)
    per_epoch = _remainder(two.counts, one.counts, _times(step, steps), what="a second epoch")
    per_fit = _remainder(one.counts, per_epoch, _times(step, steps), what="one epoch's fit")
    return LaunchReport(
        widths=(model.input_features, *(layer.units for layer in model.layers)),
        batch=batch,
        loss=model.loss.name,
        optimizer=type(model.optimizer).__name__,
        steps=steps,
        per_step=OpCounts(step),
        step_calls=typical,
        typical_steps=seen,
        per_epoch=OpCounts(per_epoch),
        per_fit=OpCounts(per_fit),
    )


def _stand_in_model(model_or_widths: Any, activation: str, dtype: str) -> "Sequential":
    from ..backends import use_backend
    from ..layers import Dense
    from ..models import Sequential
    from ..testing import stand_in_backend

    if isinstance(model_or_widths, Sequential):
        model = model_or_widths
        if not model.built or getattr(model.backend, "xp", None) is not fake_cupy:
            raise ValueError(
                "model_or_widths: expected a built model on fcgpu.testing.stand_in_backend() "
                "(model.to(fcgpu.testing.stand_in_backend())), or layer widths such as (784, 512, 10)"
            )
        return model
    widths = [int(w) for w in model_or_widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"model_or_widths: expected at least two positive widths, got {model_or_widths!r}")
    last = len(widths) - 2
    with use_backend(stand_in_backend()):
        model = Sequential(
            [Dense(w, activation=activation if i < last else None, dtype=dtype) for i, w in enumerate(widths[1:])]
        )
        model.build(widths[0])
    return model


def _data(model: "Sequential", rows: int) -> tuple[np.ndarray, np.ndarray]:
    from ..losses import SoftmaxCrossEntropy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, model.input_features)).astype(model.layers[0].dtype)
    outputs = model.output_features
    if isinstance(model.loss, SoftmaxCrossEntropy):
        return x, rng.integers(0, outputs, rows)
    return x, rng.integers(0, 2, (rows, outputs)).astype(model.layers[-1].dtype)


@contextlib.contextmanager
def _marking_steps(model: "Sequential") -> Iterator[tuple[DeviceOps, list[int]]]:
    """Count the block's operations, noting how many were counted when each call of the first layer's forward began."""
    first = model.layers[0]
    forward = first.forward
    starts: list[int] = []
    with count_device_ops() as ops:

        def marked(*args: Any, **kwargs: Any) -> Any:
            starts.append(len(ops.calls))
            return forward(*args, **kwargs)

        first.forward = marked
        try:
            yield ops, starts
        finally:
            del first.forward


def _times(counts: Mapping[Call, int], n: int) -> Counter[Call]:
    return Counter({k: v * n for k, v in counts.items()})


def _remainder(total: Mapping[Call, int], *parts: Mapping[Call, int], what: str) -> Counter[Call]:
    """total - sum(parts), refusing a negative count (the measured runs were not in a steady state)."""
    left = Counter(total)
    for part in parts:
        for key, n in part.items():
            left[key] -= n
    negative = sorted(f"{n} {kind} {name}" for (kind, name), n in left.items() if n < 0)
    if negative:
        raise RuntimeError(
            f"the counts are not those of a steady state: {what} launched fewer operations ({', '.join(negative)})"
        )
    return Counter({k: n for k, n in left.items() if n})
