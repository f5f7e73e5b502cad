"""evaluate and predict over host arrays, and fit's validation rows: checked host arrays in, each
rank's share of them on the device, global figures out.

``Trainer.evaluate`` and ``Trainer.predict`` check their arguments and call ``evaluate_host`` and
``predict_host``; ``fit`` takes its validation rows from ``validation_rows`` and uploads them with
``validation_on_device``. On N ranks (``fcgpu.distributed``) every rank starts from rank 0's
parameters (``start_from_rank0``), computes its contiguous share of the rows, and the sums (or the
outputs) are gathered, so every rank gets what one process gets; only rank 0 prints.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import callbacks as callbacks_module
from .. import distributed
from ..distributed.data_parallel import quiet_callbacks, start_from_rank0
from .epoch import evaluate_arrays, progress_bar
from .graph_calls import predict_graph

__all__ = ["evaluate_host", "predict_host", "validation_on_device", "validation_rows"]


def evaluate_host(model: Any, xh: np.ndarray, yh: np.ndarray, wh: Any, batch_size: int, verbose: int,
                  callbacks: Any) -> dict[str, float]:
    """The logs of ``evaluate`` over checked host arrays (``wh``: the rows' weights, or None)."""
    backend, comm = model.backend, distributed.world()
    params = {"batch_size": batch_size, "steps": -(-xh.shape[0] // batch_size), "verbose": verbose}
    callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, model, params), comm)
    start_from_rank0(model, "evaluate", {"x": xh, "y": yh}, batch_size, training=False)
    lo, hi = distributed.shard_bounds(xh.shape[0], comm.rank, comm.size)
    x_dev, y_dev = backend.from_numpy(xh[lo:hi]), backend.from_numpy(yh[lo:hi])
    w_dev = None if wh is None else backend.from_numpy(wh[lo:hi])
    logs = evaluate_arrays(model, x_dev, y_dev, batch_size, xh.shape[0], callback_list, w_dev)
    if verbose and comm.rank == 0:
        print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
    return logs


def predict_host(model: Any, xh: np.ndarray, batch_size: int, verbose: int, callbacks: Any) -> np.ndarray:
    """The model's outputs (N, N_last) for checked host inputs, in batches, with the predict hooks
    (a batch's logs hold its outputs, as Keras's); structured as the model's outputs."""
    backend, comm = model.backend, distributed.world()
    params = {"batch_size": batch_size, "steps": -(-xh.shape[0] // batch_size), "verbose": verbose}
    callback_list = quiet_callbacks(callbacks_module.CallbackList(callbacks, model, params), comm)
    batch_hooks = callback_list.wants("predict")
    start_from_rank0(model, "predict", {"x": xh}, batch_size, training=False)
    lo, hi = distributed.shard_bounds(xh.shape[0], comm.rank, comm.size)  # data parallel: this rank's rows
    x_dev = backend.from_numpy(xh[lo:hi])
    graph = predict_graph(model, batch_size, x_dev)  # the forward captured, where it can be
    out = np.empty((xh.shape[0], model.output_features), model.output_layer.compute_dtype)
    bar = progress_bar(0, 1, -(-(hi - lo) // batch_size), verbose if comm.rank == 0 else 0, "Predict")
    callback_list.call("on_predict_begin", {})
    for k, i in enumerate(range(0, hi - lo, batch_size)):
        if batch_hooks:
            callback_list.call("on_predict_batch_begin", k, {})
        rows = slice(lo + i, min(lo + i + batch_size, hi))
        xb = x_dev[i : i + batch_size]
        out[rows] = backend.to_numpy(graph.run(xb) if graph is not None else model.infer(xb))
        if batch_hooks:
            callback_list.call("on_predict_batch_end", k, {"outputs": out[rows]})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if comm.size > 1:
        comm.allgather_rows(out[lo:hi].copy(), out)
    callback_list.call("on_predict_end", {})
    return model.structure_outputs(out)


def validation_rows(model: Any, validation_data: Any, validation_split: float, xh: np.ndarray, yh: np.ndarray,
                    wh: Any, y: Any) -> tuple[Any, np.ndarray, np.ndarray, Any]:
    """(validation (x, y, weights or None) or None, then the training x, y and weights): from
    ``validation_data`` (checked as fit's data), else the last ``validation_split`` of the rows."""
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data: expected a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight)")
        val = model._prepare(*validation_data[:2], ("validation_data[0]", "validation_data[1]"), width=xh.shape[1])
        val_w = validation_data[2] if len(validation_data) == 3 else None
        val = (*val, model._weights(val_w, None, validation_data[1], val[0].shape[0], "validation_data[2]"))
    elif validation_split:
        split = int(math.floor(xh.shape[0] * (1.0 - validation_split)))
        if split in (0, xh.shape[0]):
            raise ValueError(
                f"validation_split: {validation_split} of {xh.shape[0]} samples leaves "
                f"{'no training' if split == 0 else 'no validation'} samples"
            )
        val = (xh[split:], yh[split:], None if wh is None else wh[split:])
        xh, yh, wh = xh[:split], yh[:split], None if wh is None else wh[:split]
    return val, xh, yh, wh


def validation_on_device(model: Any, val: Any) -> Any:
    """This rank's share of the validation rows on the device (x, y, all the rows, weights or
    None), or None without validation: each rank evaluates its share."""
    if val is None:
        return None
    backend, comm = model.backend, distributed.world()
    lo, hi = distributed.shard_bounds(val[0].shape[0], comm.rank, comm.size)
    return (backend.from_numpy(val[0][lo:hi]), backend.from_numpy(val[1][lo:hi]), val[0].shape[0],
            None if val[2] is None else backend.from_numpy(val[2][lo:hi]))
