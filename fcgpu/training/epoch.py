"""The loops around the step: one training epoch over device batches and one evaluation pass.

``run_epoch`` calls the model's step (``Trainer.accumulate_batch``) on each batch, adding each
batch's sums into a row of a device array that is read, not reduced on the device, a few times an
epoch (every batch only when a callback has a batch hook); ``evaluate_arrays`` runs inference over
device arrays. Both call the callbacks' hooks as Keras's loops do. What they use of the model:
``backend``, ``accumulate_batch``, ``step_share``, ``infer``, ``output_loss``, ``metric_columns``,
``update_metrics``, ``add_regularization``, ``logs_from``, ``metric_objects``, ``stop_training``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed
from ..backends.base import Array

__all__ = ["run_epoch", "evaluate_arrays", "evaluate_batch", "keras_values", "verbosity", "progress_bar"]


def run_epoch(
    model: Any,
    xe: Array,
    ye: Array,
    batches: list[distributed.Batch],
    spare: tuple[Array, Array],
    bar: Any,
    callback_list: callbacks_module.CallbackList,
) -> tuple[dict[str, float], int | None]:
    """One pass over ``batches`` of (xe, ye): (the epoch's logs, the first batch whose loss was not
    finite or None). ``spare``: a row for a rank whose share of a batch is empty.

    Row k of a device array holds batch k's sums (``metric_columns``); they are read, not reduced on
    the device, about 20 times an epoch and at most once in 10 batches (a read waits for the
    device), so a non-finite loss is still traced to its batch. Data parallel: each read is
    summed over the ranks (global figures, the same on every rank).
    """
    backend, comm = model.backend, distributed.world()
    steps = len(batches)
    report_every = max(10, -(-steps // 20))
    sums = backend.zeros((steps, model.metric_columns()), np.float64)
    totals = np.zeros(model.metric_columns())
    seen, last_read = 0, 0
    batch_hooks = callback_list.wants_batches
    for step, batch in enumerate(batches, 1):
        if batch_hooks:
            callback_list.call("on_train_batch_begin", step - 1, {})
        if comm.size == 1:
            model.accumulate_batch(xe[batch.start : batch.stop], ye[batch.start : batch.stop], sums[step - 1])
        else:
            model.step_share(xe, ye, sums[step - 1], batch.start, batch.stop, batch.rows, spare)
        seen += batch.rows
        if bar is not None:
            bar.update(1)
        batch_logs: dict[str, float] = {}
        if step % report_every == 0 or step == steps or batch_hooks:  # batch logs: read every batch
            rows = comm.sum_host(backend.to_numpy(sums[last_read:step]))  # one transfer
            totals += rows.sum(axis=0)
            bad = np.nonzero(~np.isfinite(rows[:, 0]))[0]
            if bad.size:
                return model.logs_from(totals / seen), last_read + int(bad[0]) + 1
            last_read = step
            batch_logs = model.logs_from(totals / seen)
            if bar is not None:
                bar.set_postfix(batch_logs, refresh=False)
        if batch_hooks:
            callback_list.call("on_train_batch_end", step - 1, batch_logs)
        if model.stop_training:
            if last_read < step:
                totals += comm.sum_host(backend.to_numpy(sums[last_read:step])).sum(axis=0)
            break
    return model.logs_from(totals / seen), None


def evaluate_arrays(
    model: Any, x_dev: Array, y_dev: Array, batch_size: int, total: int | None = None, callback_list: Any = None
) -> dict[str, float]:
    """Loss and metrics over device arrays, batch by batch, without touching what a pending
    backward uses; one read of the sums at the end (one per batch where a callback has a test
    batch hook). Calls the callbacks' test hooks, as Keras's evaluate. Data parallel: (x_dev,
    y_dev) are this rank's share of ``total`` rows, and the sums are added over the ranks."""
    backend, comm = model.backend, distributed.world()
    loss, on_logits = model.output_loss()
    n = x_dev.shape[0]
    total = n if total is None else total
    acc = backend.zeros((model.metric_columns(),), np.float64)
    count = any(m.fused_with_loss for m in model.metric_objects)
    batch_hooks = callback_list is not None and callback_list.wants("test")
    if callback_list is not None:
        callback_list.call("on_test_begin", {})
    seen = 0
    for k, i in enumerate(range(0, n, batch_size)):
        if batch_hooks:
            callback_list.call("on_test_batch_begin", k, {})
        seen += evaluate_batch(model, x_dev[i : i + batch_size], y_dev[i : i + batch_size], acc, loss, on_logits, count)
        if batch_hooks:  # running figures of this rank's rows so far
            callback_list.call("on_test_batch_end", k, model.logs_from(backend.to_numpy(acc) / seen))
    model.add_regularization(acc, n)
    logs = model.logs_from(comm.sum_host(backend.to_numpy(acc)) / total)
    if callback_list is not None:
        callback_list.call("on_test_end", dict(logs))
    return logs


def evaluate_batch(model: Any, xb: Array, yb: Array, acc: Array, loss: Any, on_logits: bool, count: bool) -> int:
    """Add one batch's loss x rows, correct count and other metrics' sums into ``acc``; its rows."""
    backend = model.backend
    logits = model.infer(xb, logits=on_logits)
    acc[0:1] += loss.compute(backend, logits, yb, keep=False) * logits.shape[0]
    if count:
        acc[1:2] += loss.correct(backend, logits, yb)
    if len(model.metric_objects) > count:
        model.update_metrics(logits, yb, on_logits, acc)
    return logits.shape[0]


def verbosity(verbose: Any, default: int) -> int:
    """``verbose`` checked: 0, 1 or 2 ('auto': ``default``, or 1)."""
    if verbose == "auto":
        return default if default else 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose: expected 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def progress_bar(epoch: int, epochs: int, steps: int, verbose: int, desc: str | None = None) -> Any:
    """A tqdm bar for verbose=1, else None."""
    if verbose != 1:
        return None
    from tqdm import tqdm

    desc = desc or f"Epoch {epoch + 1}/{epochs}"
    return tqdm(total=steps, desc=desc, unit="batch", leave=True, dynamic_ncols=True)


def keras_values(logs: dict[str, float], return_dict: bool) -> Any:
    """What Keras's evaluate and *_on_batch return: the dict, else the loss alone or [loss, *metrics]."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values
