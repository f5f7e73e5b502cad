"""``TensorBoard``: Keras 3's callback, writing the scalars TensorBoard plots (no TensorFlow needed).

As Keras writes them: under ``log_dir/train`` the epoch's figures as ``epoch_loss``,
``epoch_accuracy``, ..., and ``epoch_learning_rate``, at step = the epoch (0-based); under
``log_dir/validation`` the ``val_`` figures without their prefix (``epoch_loss``, ...) and, after
each evaluation, ``evaluation_loss_vs_iterations`` (and each metric's) at step = the optimizer's
iteration count. With ``update_freq='batch'`` or an int N, every (N-th) batch's running figures
as ``batch_loss``, ... at step = the batch's number counted over the whole fit from 1. The files
are event files (``event_file``) that TensorBoard reads (``tensorboard --logdir log_dir``).
Histograms, images, graphs, embeddings and profiling are not written: ``histogram_freq``,
``embeddings_freq`` and ``profile_batch`` other than 0 are refused; ``write_graph`` and
``write_images`` are accepted and have nothing to write. Data parallel: rank 0 writes.
"""
from __future__ import annotations

import os
import time
from typing import Any

from .core import Callback
from .event_file import EventFileWriter

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Scalars for TensorBoard, Keras 3's arguments and tag names (see the module)."""

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq: Any = "epoch",
                 profile_batch: Any = 0, embeddings_freq: int = 0, embeddings_metadata: Any = None) -> None:
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        for name, value in (("histogram_freq", histogram_freq), ("embeddings_freq", embeddings_freq),
                            ("profile_batch", profile_batch)):
            if value:
                raise ValueError(f"{name}: fcgpu's TensorBoard writes scalars only; expected 0, got {value!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError(f"update_freq: expected 'epoch', 'batch' or a positive int, got {update_freq!r}")
        self.update_freq = update_freq
        self.histogram_freq, self.embeddings_freq, self.embeddings_metadata = histogram_freq, embeddings_freq, embeddings_metadata
        self.write_graph, self.write_images = bool(write_graph), bool(write_images)
        self.write_steps_per_second = bool(write_steps_per_second)
        self._train_dir = os.path.join(self.log_dir, "train")
        self._val_dir = os.path.join(self.log_dir, "validation")
        self._writers: dict[str, EventFileWriter] = {}
        self._global_train_batch = 0
        self._epoch_start, self._epoch_iterations, self._batch_start = 0.0, 0, 0.0
        if update_freq != "epoch" or write_steps_per_second:
            # Batch hooks only when batches are written: otherwise fit need not read every batch.
            self.on_train_batch_begin = self._batch_begin
            self.on_train_batch_end = self._batch_end

    def _writer(self, which: str) -> EventFileWriter | None:
        from ..distributed.communicator import world

        if not world().is_root:
            return None
        if which not in self._writers:
            self._writers[which] = EventFileWriter(self._train_dir if which == "train" else self._val_dir)
        return self._writers[which]

    def _write(self, which: str, step: int, values: dict[str, Any]) -> None:
        writer = self._writer(which)
        if writer is not None:
            writer.scalars(step, {k: float(v) for k, v in values.items() if _scalar(v)})
            writer.flush()

    def _iterations(self) -> int:
        return int(getattr(getattr(self.model, "optimizer", None), "iterations", 0) or 0)

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        self._batch_start = time.perf_counter()

    def _batch_end(self, batch, logs=None):
        step = self._global_train_batch
        values = {}
        if self.write_steps_per_second:
            values["batch_steps_per_second"] = 1.0 / max(time.perf_counter() - self._batch_start, 1e-9)
        if self.update_freq != "epoch" and step % self.update_freq == 0:
            values.update({f"batch_{k}": v for k, v in (logs or {}).items()})
        self._write("train", step, values)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._epoch_iterations = time.perf_counter(), self._iterations()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            train["learning_rate"] = float(optimizer.learning_rate)
        if self.write_steps_per_second:
            seconds = max(time.perf_counter() - self._epoch_start, 1e-9)
            train["steps_per_second"] = (self._iterations() - self._epoch_iterations) / seconds
        self._write("train", epoch, {f"epoch_{k}": v for k, v in train.items()})
        self._write("validation", epoch, {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")})

    def on_test_end(self, logs=None):
        if getattr(self.model, "optimizer", None) is not None:
            self._write("validation", self._iterations(),
                        {f"evaluation_{k}_vs_iterations": v for k, v in (logs or {}).items()})


def _scalar(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
