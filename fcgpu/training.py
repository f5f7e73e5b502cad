"""Trainer: compile, fit, evaluate, predict and train_step, and the History that fit returns.

The model class (``model.Sequential``) inherits this, as Keras 3's Model inherits its trainer.
Inputs are checked once per call on the host (shape, finiteness, labels) before anything
changes; a data set is then copied to the model's backend once, and batches are slices of it.
What the trainer needs of the model: ``layers``, ``forward``, ``backward``, ``build``, ``built``,
``backend``, ``input_features``, ``output_features`` and ``name``.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Sequence

import numpy as np

from . import losses as losses_module
from . import optimizers as optimizers_module
from .backends import Backend
from .backends.base import Array, Scalar
from .initializers import get_rng
from .losses import Loss
from .optimizers import Optimizer
from .params import FlatParameters
from .validation import float_array, positive_int

__all__ = ["Trainer", "History"]

_METRICS = {"accuracy": "accuracy", "acc": "accuracy"}


class History:
    """What ``fit`` returns: ``history`` maps 'loss', 'accuracy', 'val_loss', ... to one value per epoch."""

    def __init__(self) -> None:
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


class Trainer:
    """compile / fit / evaluate / predict / train_step for a model that subclasses it."""

    def __init__(self) -> None:
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.metrics: list[str] = []
        self._flat: FlatParameters | None = None

    # -- compile -----------------------------------------------------------------
    def compile(
        self,
        loss: str | Loss | None = None,
        optimizer: str | Optimizer = "adam",
        metrics: Sequence[str] | None = None,
    ) -> None:
        """Set the loss ('softmax_cross_entropy', 'categorical_crossentropy', 'binary_crossentropy', 'mse' or an
        instance), the optimizer ('sgd', 'adam', 'adamw' or an instance) and metrics (['accuracy'] or none)."""
        if loss is None:
            raise ValueError("loss: compile needs a loss, e.g. loss='softmax_cross_entropy'")
        layers = self.layers
        loss_obj = losses_module.get(loss)
        opt = optimizers_module.get(optimizer)
        opt.check_owner(layers)
        names: list[str] = []
        if isinstance(metrics, str):
            metrics = [metrics]
        for m in metrics or []:
            key = _METRICS.get(m.lower()) if isinstance(m, str) else None
            if key is None:
                raise ValueError(f"metrics: expected names from {sorted(_METRICS)}, got {m!r}")
            if key not in names:
                names.append(key)
        self.loss, self.optimizer, self.metrics = loss_obj, opt, names

    @property
    def compiled(self) -> bool:
        return self.loss is not None and self.optimizer is not None

    def get_compile_config(self) -> dict[str, Any] | None:
        """The compile settings as JSON-ready values (Keras 3's name), or None before compile."""
        if not self.compiled:
            return None
        return {"loss": self.loss.get_config(), "optimizer": self.optimizer.get_config(), "metrics": list(self.metrics)}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """``compile`` with what ``get_compile_config`` returned."""
        self.compile(
            loss=losses_module.get(config["loss"]),
            optimizer=optimizers_module.get(config["optimizer"]),
            metrics=config["metrics"],
        )

    def flat_parameters(self) -> FlatParameters | None:
        """The flat buffers holding every parameter and gradient (None before the model is built),
        laid out again when a layer was rebuilt, moved or renamed since."""
        if not self.built:
            return None
        layers = self.layers
        if self._flat is None or not self._flat.current(layers):
            self._flat = FlatParameters.of(layers)
        return self._flat

    def move_training_state(self, target: Backend) -> None:
        """Move the optimizer state to ``target`` (part of ``to``)."""
        if self.optimizer is not None:
            self.optimizer.to(target)
        if self.loss is not None:
            self.loss.clear_buffers()

    def release_loss(self) -> None:
        """Drop what the loss kept of the last batch (its predictions are a layer's output buffer)."""
        if self.loss is not None:
            self.loss.release()

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(
                f"{what}: the model must be compiled first: model.compile(loss=..., optimizer=..., metrics=['accuracy'])"
            )

    # -- host-side checks ----------------------------------------------------------
    def _check_x(self, x: Any, argument: str = "x", width: int | None = None) -> np.ndarray:
        layers = self.layers
        if not layers:
            raise ValueError(f"model '{self.name}' has no layers: add some with model.add(Dense(...))")
        return float_array(
            x, argument, layers[0].dtype, ndim=2, width=width or self.input_features, owner=f"model '{self.name}'"
        )

    def _prepare(
        self, x: Any, y: Any, names: tuple[str, str] = ("x", "y"), width: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Host-checked x (in the first layer's dtype) and labels prepared by the loss."""
        xh = self._check_x(x, names[0], width)
        y_len = len(y) if hasattr(y, "__len__") else None
        if y_len is not None and y_len != xh.shape[0] and np.ndim(y) > 0:
            raise ValueError(
                f"{names[0]} and {names[1]}: expected the same number of samples, got {xh.shape[0]} and {y_len}"
            )
        # Inputs meet the first layer, labels meet the last layer's predictions.
        last = self.layers[-1]
        yh = self.loss.prepare_labels(y, (xh.shape[0], self.output_features), last.dtype, names[1])
        return xh, yh

    def _ensure_built(self, features: int) -> None:
        if not self.built:
            self.build(features)

    def _output_loss(self) -> tuple[Loss, bool]:
        """(the loss to compute, whether it takes the last layer's logits), decided when the loss
        meets the model's output, whatever the order of compile and add: a probability
        cross-entropy after its matching activation runs on the logits (``Loss.fused_with``).
        A probability loss after a layer whose outputs can leave [0, 1] is refused."""
        last = self.layers[-1]
        activation = getattr(last, "activation", None)
        name = activation.name if activation is not None else "linear"
        fused = self.loss.fused_with(name)
        if fused is not None:
            return fused, True
        if self.loss.takes_probabilities:
            low, high = activation.outputs if activation is not None else (-np.inf, np.inf)
            if low < 0 or high > 1:
                raise ValueError(
                    f"loss: {self.loss!r} takes probabilities in [0, 1], but the last layer '{last.name}' has "
                    f"activation '{name}', whose outputs can leave [0, 1]; use activation='sigmoid' or from_logits=True"
                )
        return self.loss, False

    # -- one step ----------------------------------------------------------------
    def prepare_data(self, x: Any, y: Any) -> tuple[Array, Array]:
        """(x, y) checked on the host as ``fit`` checks them and copied to the model's backend:
        x (B, M) in the first layer's dtype, y as the loss takes it. Builds the model if needed."""
        self._require_compiled("prepare_data")
        xh, yh = self._prepare(x, y)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        return backend.from_numpy(xh), backend.from_numpy(yh)

    def train_batch(self, x: Array, y: Array) -> tuple[Scalar, Scalar]:
        """One forward/backward/update on arrays from ``prepare_data`` (or slices of them), unchecked:
        returns (mean loss, correct count), both left on the device so that a step does not wait."""
        acc = self.backend.zeros((2,), np.float64)
        self.accumulate_batch(x, y, acc)
        return acc[0] / x.shape[0], acc[1]

    def accumulate_batch(self, x: Array, y: Array, acc: Array) -> None:
        """The step ``fit`` takes: forward, the loss's fused step, backward (no input gradient) and
        one optimizer update, adding the batch's loss x rows and correct rows into ``acc`` (a float64
        array (2,) of the model's backend). On CuPy, a Dense-ReLU-Dense step is 12 device operations."""
        loss, on_logits = self._output_loss()
        logits = self.forward(x, input_owned=True, output_private=True, logits=on_logits)
        grad = loss.step(self.backend, logits, y, acc, bool(self.metrics))
        del logits
        self.backward(grad, input_grad=False)
        del grad
        self.optimizer.step(self)

    def _correct(self, pred: Array, labels: Array, on_logits: bool = False) -> Scalar:
        """Correct rows of ``pred`` under the loss that meets it (``Loss.correct``)."""
        loss, _ = self._output_loss() if on_logits else (self.loss, False)
        return loss.correct(self.backend, pred, labels)

    def train_step(self, x: Any, y: Any) -> float:
        """One forward, backward and optimizer step on a batch; returns the mean loss."""
        self._require_compiled("train_step")
        x_dev, y_dev = self.prepare_data(x, y)
        value, _ = self.train_batch(x_dev, y_dev)
        return float(value)

    # -- loops -------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        verbose: int = 1,
    ) -> History:
        """Train for ``epochs`` passes over (x (N, M), y); shuffling draws from ``fcgpu.set_seed``'s generator.

        verbose: 0 silent, 1 a progress bar per epoch (loss and metrics), 2 one line per epoch.
        Returns a History whose ``history`` has 'loss', the metrics, and 'val_'-prefixed ones.
        """
        self._require_compiled("fit")
        epochs = positive_int(epochs, "epochs", allow_zero=True)
        batch_size = positive_int(batch_size, "batch_size")
        if isinstance(verbose, bool) or verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle: expected True or False, got {shuffle!r}")
        xh, yh = self._prepare(x, y)
        self._output_loss()  # a loss that cannot meet this output fails before anything changes
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data: expected a tuple (x_val, y_val)")
            val = self._prepare(*validation_data, ("validation_data[0]", "validation_data[1]"), width=xh.shape[1])
        self._ensure_built(xh.shape[1])
        backend = self.backend
        n = xh.shape[0]
        x_dev, y_dev = backend.from_numpy(xh), backend.from_numpy(yh)
        val_dev = (backend.from_numpy(val[0]), backend.from_numpy(val[1])) if val is not None else None
        history = History()
        history.params = {"epochs": epochs, "batch_size": batch_size, "samples": n, "steps": -(-n // batch_size)}
        rng = get_rng()
        for epoch in range(epochs):
            start = time.perf_counter()
            if shuffle:
                perm = backend.from_numpy(rng.permutation(n))
                xe, ye = x_dev[perm], y_dev[perm]
                del perm
            else:
                xe, ye = x_dev, y_dev
            steps = history.params["steps"]
            bar = _progress(epoch, epochs, steps, verbose)
            # The running sums are read from the device about 20 times an epoch and at most once in
            # 10 batches: a read waits for the device.
            report_every = max(10, -(-steps // 20))
            # Row k holds batch k's [loss x rows, correct rows]; they are read (not reduced on the
            # device) a few times an epoch, so a non-finite loss is traced to its batch.
            sums = backend.zeros((steps, 2), np.float64)
            loss_sum = correct = 0.0
            seen, stopped_at, last_read = 0, None, 0
            for step, i in enumerate(range(0, n, batch_size), 1):
                self.accumulate_batch(xe[i : i + batch_size], ye[i : i + batch_size], sums[step - 1])
                seen += min(batch_size, n - i)
                if bar is not None:
                    bar.update(1)
                if step % report_every == 0 or step == steps:
                    rows = backend.to_numpy(sums[last_read:step])  # one transfer
                    bad = np.nonzero(~np.isfinite(rows[:, 0]))[0]
                    loss_sum, correct = loss_sum + float(rows[:, 0].sum()), correct + float(rows[:, 1].sum())
                    if bad.size:
                        stopped_at = last_read + int(bad[0]) + 1
                        break
                    last_read = step
                    if bar is not None:
                        bar.set_postfix(self._logs(loss_sum / seen, correct / seen), refresh=False)
            if stopped_at is not None:
                logs = self._logs(loss_sum / seen, correct / seen)
                history.record(epoch, logs, time.perf_counter() - start)
                if bar is not None:
                    bar.close()
                warnings.warn(
                    f"fit: the loss was not finite at epoch {epoch + 1}, batch {stopped_at}: training stopped "
                    f"there (the parameters are no longer finite); lower the learning rate or check the data",
                    RuntimeWarning,
                    stacklevel=2,
                )
                history.stopped = {"epoch": epoch, "batch": stopped_at}
                break
            logs = self._logs(loss_sum / n, correct / n)
            if val_dev is not None:
                for key, value in self._evaluate_device(*val_dev, 256).items():
                    logs[f"val_{key}"] = value
            backend.synchronize()
            seconds = time.perf_counter() - start
            history.record(epoch, logs, seconds)
            if bar is not None:
                bar.set_postfix(logs, refresh=False)
                bar.close()
            elif verbose == 2:
                text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                print(f"Epoch {epoch + 1}/{epochs} - {seconds:.2f}s - {text}", file=sys.stdout, flush=True)
            del xe, ye
        return history

    def _logs(self, loss: float, accuracy: float) -> dict[str, float]:
        logs = {"loss": float(loss)}
        if "accuracy" in self.metrics:
            logs["accuracy"] = float(accuracy)
        return logs

    def _evaluate_device(self, x_dev: Array, y_dev: Array, batch_size: int) -> dict[str, float]:
        backend = self.backend
        loss, on_logits = self._output_loss()
        n = x_dev.shape[0]
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):
            logits = self.infer(x_dev[i : i + batch_size], logits=on_logits)
            yb = y_dev[i : i + batch_size]
            loss_sum = loss_sum + loss.compute(backend, logits, yb, keep=False) * logits.shape[0]
            if self.metrics:
                correct = correct + self._correct(logits, yb, on_logits)
            del logits
        return self._logs(float(loss_sum) / n, float(correct) / n)

    def evaluate(self, x: Any, y: Any, batch_size: int = 256, verbose: int = 0) -> dict[str, float]:
        """{'loss': mean loss, 'accuracy': fraction correct (when compiled with it)} over (x, y)."""
        self._require_compiled("evaluate")
        batch_size = positive_int(batch_size, "batch_size")
        xh, yh = self._prepare(x, y)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        logs = self._evaluate_device(backend.from_numpy(xh), backend.from_numpy(yh), batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        return logs

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs (N, N_last) for x (N, M), computed in batches, as a NumPy array."""
        batch_size = positive_int(batch_size, "batch_size")
        xh = self._check_x(x)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        x_dev = backend.from_numpy(xh)
        out = np.empty((xh.shape[0], self.output_features), self.layers[-1].dtype)
        for i in range(0, xh.shape[0], batch_size):
            out[i : i + batch_size] = backend.to_numpy(self.infer(x_dev[i : i + batch_size]))
        return out


def _progress(epoch: int, epochs: int, steps: int, verbose: int):
    if verbose != 1:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=True, dynamic_ncols=True)
