"""Callbacks for ``fit``, with Keras's class names, hook names, arguments and behaviour.

``fit`` calls each hook with Keras's ``logs`` dicts: ``on_epoch_end(epoch, logs)`` gets the
epoch's 'loss', metrics and 'val_'-prefixed figures. Batch hooks are called for every batch; their
``logs`` carry the running figures only at the batches where fit reads them from the device (a
few times an epoch: every read waits for the device), and are empty in between. A callback stops
training by setting ``self.model.stop_training = True``.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import warnings
from typing import Any, Callable

import numpy as np

from ..backends.validation import positive_int
from ..saving import OTHER_FORMATS

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "EarlyStopping",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "CSVLogger",
    "LambdaCallback",
]

_HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


class Callback:
    """Base class: override the hooks you need; ``self.model`` and ``self.params`` are set by fit.

    As in Keras 3, ``on_train_batch_begin``/``on_train_batch_end`` call ``on_batch_begin``/
    ``on_batch_end`` (the older names), so a subclass may override either.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None: ...
    def on_train_end(self, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None: ...
    def on_test_end(self, logs: dict[str, float] | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_predict_begin(self, logs: dict[str, float] | None = None) -> None: ...
    def on_predict_end(self, logs: dict[str, float] | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict[str, float] | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None: ...


_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


_MODE_OF = {hook: mode for mode, hooks in _BATCH_HOOKS.items() for hook in hooks}


class CallbackList:
    """The callbacks of one fit, evaluate or predict call. Batch hooks reach only the callbacks that
    define one (on the class or, as LambdaCallback does, on the instance): fit reads the running
    figures from the device for every batch only when some callback asks for them."""

    def __init__(self, callbacks: Any, model: Any, params: dict[str, Any]) -> None:
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks: expected a list of fcgpu.callbacks.Callback, got {type(callbacks).__name__}")
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}]: expected a fcgpu.callbacks.Callback, got {type(cb).__name__}")
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self._batch = {
            mode: [cb for cb in self.callbacks if any(_defines(cb, hook) for hook in hooks)]
            for mode, hooks in _BATCH_HOOKS.items()
        }

    def wants(self, mode: str) -> bool:
        """Whether some callback has a batch hook of ``mode`` ('train', 'test' or 'predict')."""
        return bool(self._batch[mode])

    @property
    def wants_batches(self) -> bool:
        return self.wants("train")

    @property
    def draws_progress(self) -> bool:
        """Whether a callback draws fit's progress itself (a ProgbarLogger), so fit draws none."""
        return any(getattr(cb, "draws_progress", False) for cb in self.callbacks)

    def call(self, hook: str, *args: Any) -> None:
        mode = _MODE_OF.get(hook)
        for cb in self._batch[mode] if mode else self.callbacks:
            getattr(cb, hook)(*args)


def _defines(cb: Callback, hook: str) -> bool:
    """Whether ``cb`` has its own ``hook``: set on the instance, or overridden by its class."""
    return hook in vars(cb) or getattr(type(cb), hook) is not getattr(Callback, hook)


class History(Callback):
    """What ``fit`` returns (Keras's History callback): ``history`` maps 'loss', 'accuracy',
    'val_loss', ... to one value per epoch, ``epoch`` lists the epochs run."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_times: list[float] = []  # seconds of each epoch, validation included
        self.params: dict[str, Any] = {}
        self.stopped: dict[str, int] | None = None  # {'epoch', 'batch'} when a non-finite loss ended fit

    def record(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        """Append one epoch's figures."""
        self.epoch.append(epoch)
        self.epoch_times.append(seconds)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _monitor_op(monitor: str, mode: str, argument: str = "mode") -> Callable[[float, float], bool]:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{argument}: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.startswith("fmeasure") or "auc" in monitor) else "min"
    return np.greater if mode == "max" else np.less


def _number(value: Any, argument: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value) or value < low:
        raise ValueError(f"{argument}: expected a finite number >= {low}, got {value!r}")
    return float(value)


def _count(value: Any, argument: str) -> int:
    return positive_int(value, argument, allow_zero=True)


class EarlyStopping(Callback):
    """Stop when ``monitor`` stopped improving for ``patience`` epochs (Keras 3's rules: an
    improvement beats the best by more than ``min_delta``; ``baseline`` must be beaten too;
    ``restore_best_weights`` puts back the best epoch's weights at the end; no stop before
    ``start_from_epoch``)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        super().__init__()
        self.monitor = str(monitor)
        self.patience = _count(patience, "patience")
        self.verbose = verbose
        self.baseline = None if baseline is None else float(baseline)
        self.min_delta = abs(_number(abs(min_delta) if isinstance(min_delta, (int, float)) else min_delta, "min_delta"))
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _count(start_from_epoch, "start_from_epoch")
        self.monitor_op = _monitor_op(self.monitor, mode)
        if self.monitor_op is np.less:
            self.min_delta *= -1
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float = math.inf if self.monitor_op is np.less else -math.inf
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, 0, 0, None
        self.best = math.inf if self.monitor_op is np.less else -math.inf

    def _is_improvement(self, value: float, reference: float) -> bool:
        return bool(self.monitor_op(value - self.min_delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            if current is None:
                warnings.warn(f"EarlyStopping: monitor {self.monitor!r} is not in the logs {sorted(logs or {})}", RuntimeWarning)
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", file=sys.stdout, flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (``model.save``: atomic, code-free) at the end of every epoch, or only when
    ``monitor`` improved (``save_best_only``). ``filepath`` may hold ``{epoch}`` (1-based) and log
    keys with a format, e.g. ``'ckpt-{epoch:02d}-{val_loss:.3f}.fcgpu'``. ``save_weights_only``
    writes ``model.save_weights`` (a ``.weights.h5`` name, as Keras 3 requires). A Keras file name
    (``.keras``, ``.weights.h5``) needs h5py: checked here, not at the first epoch's end."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.save_weights_only = bool(save_weights_only)
        if self.save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError(f"filepath: with save_weights_only=True it must end in '.weights.h5', got {self.filepath!r}")
        other = next((s for s in OTHER_FORMATS if self.filepath.lower().endswith(s)), None)
        if not self.save_weights_only and other is not None:
            raise ValueError(f"filepath: {self.filepath!r} names {OTHER_FORMATS[other]}; model.save writes '.keras' "
                             f"(Keras 3's format) or fcgpu's own format (another name); save_weights_only=True "
                             f"writes '.weights.h5'")
        if self.filepath.endswith((".keras", ".weights.h5")):
            from ..interop.keras_weights import h5py_module

            h5py_module()  # an ImportError saying what to install, before training starts
        self.monitor = str(monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.monitor_op = _monitor_op(self.monitor, mode)
        default = math.inf if self.monitor_op is np.less else -math.inf
        self.best = default if initial_value_threshold is None else float(initial_value_threshold)
        try:
            self.filepath.format(epoch=1, **{k: 0.0 for k in ("loss", "val_loss", "accuracy", "val_accuracy")})
        except (KeyError, IndexError, ValueError):
            pass  # other log keys are only known at the first epoch's end
        if "{" not in self.filepath and os.path.isdir(self.filepath):
            raise ValueError(f"filepath: expected a file name, but {self.filepath!r} is a folder")
        folder = os.path.dirname(os.path.abspath(self.filepath.split("{")[0] or "."))
        if "{" not in os.path.dirname(self.filepath) and not os.path.isdir(folder):
            raise ValueError(f"filepath: the folder {folder!r} does not exist")

    def on_train_begin(self, logs=None):
        """A model that cannot be written as a ``.keras`` archive is refused before training, not after
        its first epoch (Keras's format has no place for what fcgpu would have to write)."""
        if self.filepath.endswith(".keras") and not self.save_weights_only:
            from ..interop.keras_config import UnsupportedKeras, model_to_keras  # noqa: PLC0415 - only for .keras

            try:
                model_to_keras(self.model.get_config(), None)
            except UnsupportedKeras as e:
                raise ValueError(f"filepath: {self.filepath!r}: this model cannot be saved as .keras ({e}); use a "
                                 f"file name without that extension for fcgpu's own format") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"filepath: {self.filepath!r} cannot be formatted with epoch and the logs {sorted(logs)}: {e}") from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint: monitor {self.monitor!r} is not in the logs {sorted(logs)}; not saved", RuntimeWarning)
                return
            if not self.monitor_op(current, self.best):
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, saving model to {path}", flush=True)
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}", flush=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop at a non-finite loss. fit always does (naming the epoch and batch); this callback also
    checks the running loss whenever a batch's logs carry one, as Keras's does."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to ``schedule(epoch, lr)`` (or ``schedule(epoch)``)."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule: expected a function of (epoch, lr), got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(opt.learning_rate))
        except TypeError:
            lr = self.schedule(epoch)
        opt.learning_rate = lr  # checked by the optimizer's setter
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # as Keras 3: the epoch's learning rate in the logs (and so in History)
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by ``min_delta``
    for ``patience`` epochs, then wait ``cooldown`` epochs; never below ``min_lr`` (Keras's rules)."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"factor: expected a number in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.verbose = str(monitor), float(factor), verbose
        self.patience, self.cooldown = _count(patience, "patience"), _count(cooldown, "cooldown")
        self.min_delta, self.min_lr = _number(min_delta, "min_delta"), _number(min_lr, "min_lr")
        self.monitor_op = _monitor_op(self.monitor, mode)
        self.wait = self.cooldown_counter = 0
        self.best = math.inf if self.monitor_op is np.less else -math.inf

    def _improved(self, current: float) -> bool:
        delta = -self.min_delta if self.monitor_op is np.less else self.min_delta
        return bool(self.monitor_op(current, self.best + delta))

    def on_train_begin(self, logs=None):
        self.wait = self.cooldown_counter = 0
        self.best = math.inf if self.monitor_op is np.less else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau: monitor {self.monitor!r} is not in the logs {sorted(logs)}", RuntimeWarning)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose > 0:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.", flush=True)
                    self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Append one row per epoch (epoch, then the logs' keys in sorted order) to a CSV file; under
    data parallel only rank 0 writes it (the logs are the same global figures on every rank)."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), str(separator), bool(append)
        folder = os.path.dirname(os.path.abspath(self.filename))
        if not os.path.isdir(folder):
            raise ValueError(f"filename: the folder {folder!r} does not exist")
        self._keys: list[str] | None = None
        self._writes = True

    def on_train_begin(self, logs=None):
        from ..distributed.communicator import world

        self._writes = world().is_root
        if not self._writes:
            return
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._header = not exists
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self._writes:
            return
        if self._keys is None:
            self._keys = sorted(logs)
        writer = csv.writer(self._file, delimiter=self.sep)
        if self._header:
            writer.writerow(["epoch", *self._keys])
            self._header = False
        writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._writes:
            self._file.close()


class LambdaCallback(Callback):
    """A callback from functions: ``on_epoch_end=lambda epoch, logs: ...`` and the other hooks."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in _HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}; expected some of {list(_HOOKS)}")
            if fn is not None and not callable(fn):
                raise TypeError(f"{name}: expected a function, got {type(fn).__name__}")
            if fn is not None:
                setattr(self, name, fn)
