"""The loops around the step: one training epoch over device batches and one evaluation pass.

``run_epoch`` calls the model's step (``Trainer.accumulate_batch``) on each batch, adding each
batch's sums into a row of a device array that is read, not reduced on the device, a few times an
epoch (every batch only when a callback has a batch hook); ``evaluate_arrays`` runs inference over
device arrays. Both call the callbacks' hooks as Keras's loops do. What they use of the model:
``backend``, ``accumulate_batch`` (through ``fcgpu.distributed.step_share`` on N ranks), ``infer``, ``output_loss``, ``metric_columns``,
``update_metrics``, ``bind_metrics``, ``add_regularization``, ``logs_from``, ``metric_objects``, ``stop_training``.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed
from ..backends.base import Array
from ..distributed.data_parallel import step_share
from .graph_calls import evaluate_graph

__all__ = ["run_epoch", "evaluate_arrays", "evaluate_batch", "keras_values", "verbosity", "progress_bar"]


def run_epoch(
    model: Any,
    xe: Array,
    ye: Array,
    batches: list[distributed.Batch],
    spare: tuple[Array, Array],
    bar: Any,
    callback_list: callbacks_module.CallbackList,
    we: Array | None = None,
    stepper: Any = None,
) -> tuple[dict[str, float], int | None]:
    """One pass over ``batches`` of (xe, ye) (and their rows' sample weights ``we``, or None): (the
    epoch's logs, the first batch whose loss was not finite or None). ``spare``: a row for a rank
    whose share of a batch is empty. ``stepper``: fit's captured step (``graph_step.GraphStepper``),
    which takes each batch and owns the rows of sums, or None.

    Row k of a device array holds batch k's loss and correct count, beside the metrics' state
    (``bind_metrics``) in the same array; they are read, not reduced on the device, about 20 times an epoch and at most once in 10 batches (a read waits for the
    device), so a non-finite loss is still traced to its batch. Data parallel: each read is
    summed over the ranks (global figures, the same on every rank).
    """
    backend, comm = model.backend, distributed.world()
    steps = len(batches)
    report_every = max(10, -(-steps // 20))
    width = model.metric_columns() - 2  # the metrics' state, then two sums per batch, in one device array
    buf = backend.zeros((width + 2 * steps,), np.float64) if stepper is None else stepper.sums
    model.bind_metrics(buf[:width])
    sums = buf[width:].reshape(steps, 2)
    totals = np.zeros(width + 2)
    seen, last_read = 0, 0
    batch_hooks = callback_list.wants_batches

    def read(step: int) -> np.ndarray:
        """Batches 1..step's sums (one transfer of the state and the rows so far, summed over the ranks)."""
        host = comm.sum_host(backend.to_numpy(buf[: width + 2 * step]))
        rows = host[width:].reshape(step, 2)
        totals[:2], totals[2:] = rows.sum(axis=0), host[:width]
        return rows

    for step, batch in enumerate(batches, 1):
        if batch_hooks:
            callback_list.call("on_train_batch_begin", step - 1, {})
        if stepper is not None:
            stepper.step(step - 1, batch)
        elif comm.size == 1:
            weights = None if we is None else we[batch.start : batch.stop]
            model.accumulate_batch(xe[batch.start : batch.stop], ye[batch.start : batch.stop], sums[step - 1],
                                   sample_weight=weights)
        else:
            step_share(model, xe, ye, sums[step - 1], batch.start, batch.stop, batch.rows, spare, we)
        seen += batch.rows
        if bar is not None:
            bar.update(1)
        batch_logs: dict[str, float] = {}
        if step % report_every == 0 or step == steps or batch_hooks:  # batch logs: read every batch
            rows = read(step)[last_read:step]
            bad = np.nonzero(~np.isfinite(rows[:, 0]))[0]
            if bad.size:
                return model.logs_from(totals, seen), last_read + int(bad[0]) + 1
            last_read = step
            batch_logs = model.logs_from(totals, seen)
            if bar is not None:
                bar.set_postfix(batch_logs, refresh=False)
        if batch_hooks:
            callback_list.call("on_train_batch_end", step - 1, batch_logs)
        if model.stop_training:
            if last_read < step:
                read(step)
            break
    return model.logs_from(totals, seen), None


def evaluate_arrays(
    model: Any, x_dev: Array, y_dev: Array, batch_size: int, total: int | None = None, callback_list: Any = None,
    w_dev: Array | None = None,
) -> dict[str, float]:
    """Loss and metrics over device arrays, batch by batch, without touching what a pending
    backward uses; one read of the sums at the end (one per batch where a callback has a test
    batch hook). Calls the callbacks' test hooks, as Keras's evaluate. Data parallel: (x_dev,
    y_dev) are this rank's share of ``total`` rows, and the sums are added over the ranks.
    ``w_dev``: the rows' sample weights (or None), weighing each row's loss in the loss's fused
    step (its gradient, into the loss's own buffer, is not used)."""
    backend, comm = model.backend, distributed.world()
    loss, on_logits = model.output_loss()
    n = x_dev.shape[0]
    total = n if total is None else total
    graph = evaluate_graph(model, batch_size, x_dev, y_dev, w_dev)  # a captured batch, where one can run
    # loss, correct count, the metrics' state
    acc = graph.acc if graph is not None else backend.zeros((model.metric_columns(),), np.float64)
    model.bind_metrics(acc[2:])
    count = any(m.fused_with_loss for m in model.metric_objects)
    batch_hooks = callback_list is not None and callback_list.wants("test")
    if callback_list is not None:
        callback_list.call("on_test_begin", {})
    seen = 0
    for k, i in enumerate(range(0, n, batch_size)):
        if batch_hooks:
            callback_list.call("on_test_batch_begin", k, {})
        xb, yb = x_dev[i : i + batch_size], y_dev[i : i + batch_size]
        if graph is not None and xb.shape[0] == batch_size:
            graph.run(xb, yb)
            seen += batch_size
        else:
            wb = None if w_dev is None else w_dev[i : i + batch_size]
            seen += evaluate_batch(model, xb, yb, acc, loss, on_logits, count, wb)
        if batch_hooks:  # running figures of this rank's rows so far
            callback_list.call("on_test_batch_end", k, model.logs_from(backend.to_numpy(acc), seen))
    model.add_regularization(acc, n)
    logs = model.logs_from(comm.sum_host(backend.to_numpy(acc)), total)
    if callback_list is not None:
        callback_list.call("on_test_end", dict(logs))
    return logs


def evaluate_batch(
    model: Any, xb: Array, yb: Array, acc: Array, loss: Any, on_logits: bool, count: bool, wb: Array | None = None
) -> int:
    """Add one batch's loss x rows, correct count and other metrics' state into ``acc`` (and the
    metrics' bound state); its rows. ``wb``: the rows' weights (or None), weighing the loss in its
    fused step (whose gradient, into the loss's own buffer, is not used) and the metrics."""
    backend = model.backend
    logits = model.infer(xb, logits=on_logits)
    if wb is not None:
        loss.step(backend, logits, yb, acc, count, sample_weight=wb)
    else:
        acc[0:1] += loss.compute(backend, logits, yb, keep=False) * logits.shape[0]
        if count:
            acc[1:2] += loss.correct(backend, logits, yb)
    if len(model.metric_objects) > count:
        model.update_metrics(logits, yb, on_logits, wb)
    return logits.shape[0]


def finish_epoch(model: Any, callback_list: Any, history: Any, epoch: int, epochs: int, logs: dict[str, Any],
                 start: float, bar: Any, verbose: int) -> None:
    """The end of an epoch of either path (arrays or streams): wait for the device, the callbacks'
    on_epoch_end, History, and the epoch's line (the bar's, or verbose=2's)."""
    model.backend.synchronize()
    seconds = time.perf_counter() - start
    callback_list.call("on_epoch_end", epoch, logs)
    history.record(epoch, logs, seconds)
    if bar is not None:
        bar.set_postfix(logs, refresh=False)
        bar.close()
    elif verbose == 2:
        text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - {text}", file=sys.stdout, flush=True)


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
