"""fit, evaluate and predict over batch streams (generators, PyDatasets: ``data_adapter``).

The array path (``Trainer.fit``) copies the data set to the device once; here each batch is read
from the stream, checked on the host as fit checks arrays (an error names the batch), uploaded,
and stepped on. The next batch is read, checked and uploaded right after this one's step is
launched, so on CuPy the host's work overlaps the device's (the step does not wait for it). The
epoch's sums stay on the device in blocks of rows read about every 10 batches (every batch when
a callback has a batch hook), as ``epoch.run_epoch`` does. Data parallel: every rank's stream
yields the same global batches; each rank uploads and steps on its share of each.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed
from ..distributed.data_parallel import quiet_callbacks, start_from_rank0, step_share
from ..initializers import get_rng
from ..backends.validation import positive_int
from .data_adapter import RAN_OUT, BatchStream, batch_weights, host_data, is_stream, split_batch
from .epoch import evaluate_arrays, finish_epoch, evaluate_batch, keras_values, progress_bar, run_epoch, verbosity

__all__ = ["fit_stream", "evaluate_from", "predict_from", "evaluate_stream", "predict_stream", "steps_argument"]

BLOCK = 10  # device rows of sums between reads


def steps_argument(value: Any, argument: str) -> int | None:
    return None if value is None else positive_int(value, argument)


def _host_batch(model: Any, batch: Any, where: str, width: int | None) -> tuple[np.ndarray, np.ndarray, Any]:
    """(x, y, sample weights or None) of one batch, checked on the host as fit checks arrays."""
    x, y = split_batch(batch, where)
    xh, yh = model._prepare(host_data(x), host_data(y), (f"{where}: x", f"{where}: y"), width=width)
    w = batch_weights(batch)
    wh = None if w is None else model._weights(host_data(w), None, host_data(y), xh.shape[0], f"{where}: sample_weight")
    return xh, yh, wh


def _upload(model: Any, xh: np.ndarray, yh: np.ndarray, wh: Any = None) -> tuple[Any, Any, int, Any, Any]:
    """(x, y) of this rank's share on the device, the global rows, a spare row for an empty share,
    and the share's sample weights (or None)."""
    backend, comm = model.backend, distributed.world()
    lo, hi = distributed.shard_bounds(xh.shape[0], comm.rank, comm.size)
    spare = (backend.from_numpy(xh[:1]), backend.from_numpy(yh[:1])) if hi == lo else None
    wb = None if wh is None else backend.from_numpy(wh[lo:hi])
    return backend.from_numpy(xh[lo:hi]), backend.from_numpy(yh[lo:hi]), xh.shape[0], spare, wb


def run_stream_epoch(model: Any, stream: BatchStream, width: int, bar: Any, callback_list: Any) -> tuple[dict, int | None]:
    """One epoch over the stream's batches: (logs, the 1-based batch whose loss was not finite or None)."""
    backend, comm = model.backend, distributed.world()
    width = model.metric_columns() - 2  # the metrics' state, bound apart from the two sums a batch
    state = backend.zeros((max(width, 1),), np.float64)
    model.bind_metrics(state[:width])
    batches = enumerate(stream.epoch())

    def load() -> Any:
        k, batch = next(batches, (None, None))
        return None if k is None else _upload(model, *_host_batch(model, batch, f"{stream.argument}, batch {k}", width))

    sums, base, read, seen, step = backend.zeros((BLOCK, 2), np.float64), 0, 0, 0, 0
    totals = np.zeros(2 + width)
    batch_hooks = callback_list.wants_batches
    batch_logs: dict[str, float] = {}
    current = load()
    while current is not None:
        xb, yb, rows, spare, wb = current
        if batch_hooks:
            callback_list.call("on_train_batch_begin", step, {})
        if comm.size == 1:
            model.accumulate_batch(xb, yb, sums[step - base], sample_weight=wb)
        else:
            step_share(model, xb, yb, sums[step - base], 0, xb.shape[0], rows, spare, wb)
        seen += rows
        del xb, yb, wb, current
        current = load()  # the next batch, read and uploaded while the device computes this one
        if bar is not None:
            bar.update(1)
        step += 1
        if step - base == BLOCK or current is None or batch_hooks or model.stop_training:
            part = comm.sum_host(backend.to_numpy(sums[read - base : step - base]))
            totals[:2] += part.sum(axis=0)
            if width:
                totals[2:] = comm.sum_host(backend.to_numpy(state[:width]))
            bad = np.nonzero(~np.isfinite(part[:, 0]))[0]
            if bad.size:
                return model.logs_from(totals, seen), read + int(bad[0]) + 1
            read = step
            if step - base == BLOCK:
                sums, base = backend.zeros((BLOCK, 2), np.float64), step
            batch_logs = model.logs_from(totals, seen)
            if bar is not None:
                bar.set_postfix(batch_logs, refresh=False)
        if batch_hooks:
            callback_list.call("on_train_batch_end", step - 1, batch_logs)
        if model.stop_training:
            break
    if seen == 0:
        return {}, None
    return model.logs_from(totals, seen), None


def evaluate_stream(model: Any, stream: BatchStream, width: int | None, callback_list: Any) -> dict[str, float] | None:
    """Loss and metrics over one pass of ``stream`` (None when it gave no batch), with the test hooks."""
    backend, comm = model.backend, distributed.world()
    loss, on_logits = model.output_loss()
    count = any(m.fused_with_loss for m in model.metric_objects)
    acc = backend.zeros((model.metric_columns(),), np.float64)  # loss, correct count, the metrics' state
    model.bind_metrics(acc[2:])
    batch_hooks = callback_list is not None and callback_list.wants("test")
    if callback_list is not None:
        callback_list.call("on_test_begin", {})
    seen = total = 0
    for k, batch in enumerate(stream.epoch()):
        if batch_hooks:
            callback_list.call("on_test_batch_begin", k, {})
        xb, yb, rows, _, wb = _upload(model, *_host_batch(model, batch, f"{stream.argument}, batch {k}", width))
        if xb.shape[0]:
            seen += evaluate_batch(model, xb, yb, acc, loss, on_logits, count, wb)
        total += rows
        if batch_hooks:
            callback_list.call("on_test_batch_end", k, model.logs_from(backend.to_numpy(acc), max(seen, 1)))
    if total == 0:
        return None
    model.add_regularization(acc, seen)
    logs = model.logs_from(comm.sum_host(backend.to_numpy(acc)), total)
    if callback_list is not None:
        callback_list.call("on_test_end", dict(logs))
    return logs


def fit_stream(model: Any, x: Any, y: Any, batch_size: Any, epochs: int, verbose: Any, callbacks: Any,
               validation_split: float, validation_data: Any, shuffle: bool, initial_epoch: int,
               steps_per_epoch: Any = None, validation_steps: Any = None) -> Any:
    """``fit`` where x or validation_data is a generator or PyDataset (``Trainer.fit``'s arguments)."""
    model._start_training("fit")
    comm = distributed.world()
    epochs = positive_int(epochs, "epochs", allow_zero=True)
    initial_epoch = positive_int(initial_epoch, "initial_epoch", allow_zero=True)
    batch_size = 32 if batch_size is None else positive_int(batch_size, "batch_size")
    steps_per_epoch = steps_argument(steps_per_epoch, "steps_per_epoch")
    validation_steps = steps_argument(validation_steps, "validation_steps")
    verbose = verbosity(verbose, default=1) if comm.rank == 0 else 0
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle: expected True or False, got {shuffle!r}")
    if validation_split:
        raise ValueError("validation_split: only for arrays; with a generator or PyDataset pass validation_data")
    arrays: dict[str, Any] = {}
    if is_stream(x):
        if y is not None:
            raise ValueError(f"y: a {type(x).__name__} yields its own targets; pass y=None")
        train = BatchStream(x, steps_per_epoch, "x", shuffle=shuffle)
        width = _host_batch(model, train.peek(), "x, batch 0", None)[0].shape[1]
        steps, n = steps_per_epoch or train.length, None
    else:
        if steps_per_epoch is not None:
            raise ValueError("steps_per_epoch: only for a generator or PyDataset; with arrays an epoch is "
                             "ceil(len(x) / batch_size) batches")
        train = None
        xh, yh = model._prepare(x, y)
        width, n, arrays = xh.shape[1], xh.shape[0], {"x": xh, "y": yh}
        steps = -(-n // batch_size)
    model.output_loss()
    val_stream = val_dev = None
    if is_stream(validation_data):
        val_stream = BatchStream(validation_data, validation_steps, "validation_data", replay=True)
    elif validation_data is not None:
        if validation_steps is not None:
            raise ValueError("validation_steps: only for validation_data that is a generator or PyDataset")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data: expected a tuple (x_val, y_val), a generator or a PyDataset")
        val = model._prepare(*map(host_data, validation_data), ("validation_data[0]", "validation_data[1]"), width=width)
        arrays["validation"] = val
    given = [cb for cb in callbacks if isinstance(cb, callbacks_module.History)] if isinstance(callbacks, (list, tuple)) else []
    history = given[0] if given else callbacks_module.History()
    history.epoch, history.epoch_times, history.stopped = [], [], None
    model.history = history
    history.params = {"epochs": epochs, "batch_size": batch_size, "steps": steps, "verbose": verbose}
    if n is not None:
        history.params["samples"] = n
    callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, model, history.params), comm)
    if callback_list.draws_progress:
        verbose = 0  # the given ProgbarLogger draws the progress
    model._ensure_built(width)
    backend = model.backend
    settings = (batch_size, epochs, initial_epoch, bool(shuffle), steps_per_epoch, validation_steps)
    start_from_rank0(model, "fit", arrays, settings, training=True)
    if train is None:
        x_dev, y_dev = backend.from_numpy(arrays["x"]), backend.from_numpy(arrays["y"])
    if "validation" in arrays:
        val = arrays["validation"]
        lo, hi = distributed.shard_bounds(val[0].shape[0], comm.rank, comm.size)
        val_dev = (backend.from_numpy(val[0][lo:hi]), backend.from_numpy(val[1][lo:hi]), val[0].shape[0])
    rng = get_rng()
    model.stop_training = False
    callback_list.call("on_train_begin", {})
    initial_epoch = model.__dict__.pop("_initial_epoch", None) or initial_epoch  # BackupAndRestore
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        if train is not None and epoch > initial_epoch and train.at_end():
            warnings.warn(RAN_OUT, UserWarning, stacklevel=3)
            break
        start = time.perf_counter()
        callback_list.call("on_epoch_begin", epoch, {})
        bar = progress_bar(epoch, epochs, steps, verbose)
        if train is not None:
            logs, stopped_at = run_stream_epoch(model, train, width, bar, callback_list)
        else:
            batches, mine = distributed.epoch_batches(n, batch_size, comm.rank, comm.size, gathered=bool(shuffle))
            xe, ye = x_dev, y_dev
            if shuffle:
                order = rng.permutation(n)
                perm = backend.from_numpy(order if mine is None else order[mine])
                xe, ye = x_dev[perm], y_dev[perm]
            logs, stopped_at = run_epoch(model, xe, ye, batches, (x_dev[0:1], y_dev[0:1]), bar, callback_list)
            del xe, ye
        if bar is not None and (stopped_at is not None or not logs):
            bar.close()
        if stopped_at is not None:
            history.record(epoch, logs, time.perf_counter() - start)
            if comm.rank == 0:
                warnings.warn(f"fit: the loss was not finite at epoch {epoch + 1}, batch {stopped_at}: training "
                              f"stopped there", RuntimeWarning, stacklevel=3)
            history.stopped = {"epoch": epoch, "batch": stopped_at}
            break
        if not logs:  # the stream gave no batch this epoch (warned)
            break
        if val_dev is not None:
            val_logs = evaluate_arrays(model, val_dev[0], val_dev[1], 256, val_dev[2], callback_list)
        else:
            val_logs = evaluate_stream(model, val_stream, width, callback_list) if val_stream is not None else None
        logs.update({f"val_{key}": value for key, value in (val_logs or {}).items()})
        finish_epoch(model, callback_list, history, epoch, epochs, logs, start, bar, verbose)
        if model.stop_training or (train is not None and train.ran_out and not train.indexed):
            break
    if epochs > 0:  # Keras's: the weights become their moving averages (use_ema)
        model.optimizer.finalize_variable_values(model)
    callback_list.call("on_train_end", logs)
    return history


def evaluate_from(model: Any, x: Any, y: Any, steps: Any, verbose: Any, callbacks: Any, return_dict: bool) -> Any:
    """``evaluate`` over a generator or PyDataset: one pass (``steps`` batches, else all of them)."""
    model._require_compiled("evaluate")
    if y is not None:
        raise ValueError(f"y: a {type(x).__name__} yields its own targets; pass y=None")
    if not isinstance(return_dict, (bool, np.bool_)):
        raise TypeError(f"return_dict: expected True or False, got {return_dict!r}")
    verbose, comm = verbosity(verbose, default=0), distributed.world()
    stream = BatchStream(x, steps_argument(steps, "steps"), "x")
    xh = _host_batch(model, stream.peek(), "x, batch 0", None)[0]
    model._ensure_built(xh.shape[1])
    model.output_loss()
    params = {"steps": stream.steps or stream.length, "verbose": verbose}
    callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, model, params), comm)
    start_from_rank0(model, "evaluate", {}, params["steps"], training=False)
    logs = evaluate_stream(model, stream, xh.shape[1], callback_list)
    if verbose and comm.rank == 0:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
    return keras_values(logs, return_dict)


def predict_from(model: Any, x: Any, steps: Any, verbose: Any, callbacks: Any) -> np.ndarray:
    """``predict`` over a generator or PyDataset: one pass (``steps`` batches, else all of them)."""
    verbosity(verbose, default=0)
    stream = BatchStream(x, steps_argument(steps, "steps"), "x")
    comm = distributed.world()
    params = {"steps": stream.steps or stream.length, "verbose": verbose}
    callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, model, params), comm)
    if not model.built:
        first = split_batch(stream.peek(), "x, batch 0", predicting=True)[0]
        model._ensure_built(model._check_x(host_data(first), "x, batch 0: x").shape[1])
    start_from_rank0(model, "predict", {}, params["steps"], training=False)
    return predict_stream(model, stream, callback_list)


def predict_stream(model: Any, stream: BatchStream, callback_list: Any) -> np.ndarray:
    """The model's outputs over one pass of ``stream`` (batches of x, (x,), (x, y) or (x, y, w))."""
    backend, comm = model.backend, distributed.world()
    outputs = []
    batch_hooks = callback_list.wants("predict")
    callback_list.call("on_predict_begin", {})
    for k, batch in enumerate(stream.epoch()):
        where = f"{stream.argument}, batch {k}"
        xh = model._check_x(host_data(split_batch(batch, where, predicting=True)[0]), f"{where}: x")
        model._ensure_built(xh.shape[1])
        if batch_hooks:
            callback_list.call("on_predict_batch_begin", k, {})
        lo, hi = distributed.shard_bounds(xh.shape[0], comm.rank, comm.size)
        out = np.empty((xh.shape[0], model.output_features), model.output_layer.compute_dtype)
        if hi > lo:
            out[lo:hi] = backend.to_numpy(model.infer(backend.from_numpy(xh[lo:hi])))
        if comm.size > 1:
            comm.allgather_rows(out[lo:hi].copy(), out)
        outputs.append(out)
        if batch_hooks:
            callback_list.call("on_predict_batch_end", k, {"outputs": out})
    callback_list.call("on_predict_end", {})
    if not outputs:
        raise ValueError(f"{stream.argument}: the data gave no batch to predict")
    return np.concatenate(outputs)
