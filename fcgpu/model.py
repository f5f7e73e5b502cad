"""Sequential: a stack of Dense layers with Keras's training loop (compile, fit, evaluate, predict).

Inputs to ``fit``/``evaluate``/``predict``/``train_step`` are checked once per call on the host
(shape, finiteness, labels) before anything changes; a data set is then copied to the model's
backend once, and batches are slices of it.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import losses as losses_module
from . import optimizers as optimizers_module
from .backends import Backend, get_backend, resolve_backend, to_numpy, use_backend
from .backends.base import Array, Scalar
from .initializers import get_rng
from .layers import Dense, _in_features
from .losses import Loss
from .optimizers import Optimizer

__all__ = ["Sequential", "History"]

_METRICS = {"accuracy": "accuracy", "acc": "accuracy"}


class History:
    """What ``fit`` returns: ``history`` maps 'loss', 'accuracy', 'val_loss', ... to one value per epoch."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_times: list[float] = []  # seconds of each epoch, validation included
        self.params: dict[str, Any] = {}

    def _append(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        self.epoch.append(epoch)
        self.epoch_times.append(seconds)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Sequential:
    """A linear stack of layers.

    Shapes: x (B, M) -> layers -> y (B, N_last). Unnamed layers are named 'dense', 'dense_1', ...
    in the order they are added; names are unique within the model.
    """

    def __init__(self, layers: Sequence[Dense] | None = None, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.name = name or "sequential"
        self._layers: list[Dense] = []
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.metrics: list[str] = []
        self._target: Backend | None = None
        if layers is not None:
            if isinstance(layers, Dense) or not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # -- structure ---------------------------------------------------------------
    @property
    def layers(self) -> list[Dense]:
        return list(self._layers)

    def add(self, layer: Dense) -> None:
        """Append a layer, naming it if unnamed; built models build the new layer at once."""
        if not isinstance(layer, Dense):
            raise TypeError(f"layer: expected a fcgpu layer such as Dense, got {type(layer).__name__}")
        if any(layer is existing for existing in self._layers):
            raise ValueError(f"layer: '{layer.name}' is already in this model")
        names = {existing.name for existing in self._layers}
        if layer._name is None:
            base, k = "dense", 0
            candidate = base
            while candidate in names:
                k += 1
                candidate = f"{base}_{k}"
            layer.name = candidate
        elif layer.name in names:
            raise ValueError(f"layer: the name '{layer.name}' is already used in this model; names must be unique")
        previous = self._layers[-1] if self._layers else None
        if previous is not None and previous.built:
            if layer.built and layer.in_features != previous.units:
                raise ValueError(
                    f"layer: '{layer.name}' takes {layer.in_features} features but '{previous.name}' gives {previous.units}"
                )
            if not layer.built:
                with _using(previous.backend):
                    layer.build(previous.units)
        self._layers.append(layer)

    @property
    def built(self) -> bool:
        return bool(self._layers) and all(layer.built for layer in self._layers)

    @property
    def backend(self) -> Backend:
        """The backend the parameters live on (before the model is built: the one given to ``to``, else the active one)."""
        for layer in self._layers:
            if layer.built:
                return layer.backend
        return self._target or get_backend()

    @property
    def input_features(self) -> int | None:
        return self._layers[0].in_features if self._layers and self._layers[0].built else None

    @property
    def output_features(self) -> int:
        self._require_layers()
        return self._layers[-1].units

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Create every layer's parameters for inputs of ``input_shape`` (an int or e.g. (None, 784))."""
        self._require_layers()
        features = _in_features(input_shape)
        if self.built and self.input_features == features:
            return
        for i, layer in enumerate(self._layers):
            if layer.built and layer.in_features != features:
                source = f"the layer before it gives {features}" if i else f"the input has {features}"
                raise ValueError(
                    f"input_shape: layer '{layer.name}' is built for {layer.in_features} features, but {source}"
                )
            features = layer.units
        features = _in_features(input_shape)
        with _using(self.backend):
            for layer in self._layers:
                if not layer.built:
                    layer.build(features)
                features = layer.units

    def _require_layers(self) -> None:
        if not self._layers:
            raise ValueError(f"model '{self.name}' has no layers: add some with model.add(Dense(...))")

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{what}: model '{self.name}' is not built yet: call model.build((None, in_features)) or call the "
                f"model on a batch of data first"
            )

    def count_params(self) -> int:
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self._layers)

    def parameters(self) -> list[tuple[str, Array, Array]]:
        """[(name, parameter, gradient)] of every layer, as the optimizers take them."""
        return [p for layer in self._layers for p in layer.parameters()]

    @property
    def trainable_variables(self) -> list[tuple[str, Array]]:
        """[(name, backend array)] such as ('dense/kernel', W): the live parameters, not copies."""
        return [(name, p) for name, p, _ in self.parameters()]

    def get_weights(self) -> list[np.ndarray]:
        """Host copies [kernel_0, bias_0, kernel_1, ...] in layer order."""
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load ``get_weights()``-style host arrays; all are checked before any layer changes."""
        self._require_built("set_weights")
        counts = [2 if layer.use_bias else 1 for layer in self._layers]
        if not isinstance(weights, (list, tuple)) or len(weights) != sum(counts):
            got = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(f"weights: expected a list of {sum(counts)} arrays, got {got}")
        checked, first = [], 0
        for layer, n in zip(self._layers, counts):
            checked.append(layer._checked_weights(weights[first : first + n], first))
            first += n
        for layer, (kernel, bias) in zip(self._layers, checked):
            layer._load_weights(kernel, bias)

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "Sequential",
            "name": self.name,
            "input_features": self.input_features,
            "layers": [layer.get_config() for layer in self._layers],
        }

    def summary(self, line_length: int = 65, print_fn: Callable[[str], Any] | None = None) -> None:
        """Print the Keras table: Layer (type) | Output Shape | Param #, then the parameter totals."""
        self._require_built("summary")
        print_fn = print_fn or print
        positions = [int(line_length * 0.45), int(line_length * 0.85), line_length]

        def row(fields: Sequence[Any]) -> str:
            line = ""
            for field, end in zip(fields, positions):
                if line:
                    line = line[:-1] + " "
                line = (line + str(field))[:end]
                line += " " * (end - len(line))
            return line

        print_fn(f'Model: "{self.name}"')
        print_fn("_" * line_length)
        print_fn(row(["Layer (type)", "Output Shape", "Param #"]))
        print_fn("=" * line_length)
        for i, layer in enumerate(self._layers):
            print_fn(row([f"{layer.name} ({type(layer).__name__})", f"(None, {layer.units})", layer.count_params()]))
            print_fn("=" * line_length if i == len(self._layers) - 1 else "_" * line_length)
        total = self.count_params()
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {total:,}")
        print_fn("Non-trainable params: 0")
        print_fn("_" * line_length)

    def __repr__(self) -> str:
        return f"Sequential(name={self.name!r}, layers={self._layers!r})"

    # -- computation -------------------------------------------------------------
    def __call__(self, x: Any) -> Array:
        return self.forward(x)

    def forward(self, x: Any) -> Array:
        """y (B, N_last) from x (B, M): every layer in turn; builds the model on the first call."""
        self._require_layers()
        for layer in self._layers:
            # A layer's cached input is the previous layer's output buffer; dropping all of them
            # first lets every layer write into its own buffer again instead of allocating.
            layer._reset_cache()
        if self.loss is not None:
            self.loss._reset_cache()
        if not self.built:
            width = getattr(x, "shape", np.shape(x))
            if len(width) in (1, 2):
                self.build(width[-1])
        h = x
        for layer in self._layers:
            h = layer.forward(h)
        return h

    def backward(self, dy: Any, *, input_grad: bool = True) -> Array | None:
        """dx (B, M) from dy = dL/dy (B, N_last); sets every layer's gradients.

        ``input_grad=False`` skips the first layer's input gradient (training does not need it).
        """
        self._require_layers()
        g = dy
        for i in range(len(self._layers) - 1, -1, -1):
            g = self._layers[i].backward(g, input_grad=input_grad or i > 0)
        return g

    def to(self, backend: str | Backend) -> "Sequential":
        """Move parameters, gradients and optimizer state to 'numpy' | 'cupy' | 'auto' (or a Backend)."""
        target, _ = resolve_backend(backend)
        self._target = target
        for layer in self._layers:
            layer.to(target)
        if self.optimizer is not None:
            self.optimizer.to(target)
        if self.loss is not None:
            self.loss._clear_buffers()
        return self

    # -- training ----------------------------------------------------------------
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
        last = self._layers[-1].activation.name if self._layers else None
        loss_obj = losses_module.get(loss, last_activation=last)
        opt = optimizers_module.get(optimizer)
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

    def _require_compiled(self, what: str) -> None:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(
                f"{what}: the model must be compiled first: model.compile(loss=..., optimizer=..., metrics=['accuracy'])"
            )

    def _check_x(self, x: Any, argument: str = "x", width: int | None = None) -> np.ndarray:
        self._require_layers()
        host = to_numpy(x)
        if host.dtype.kind not in "biuf":
            raise TypeError(f"{argument}: expected a numeric array, got dtype {host.dtype}")
        if host.ndim != 2:
            raise ValueError(f"{argument}: expected shape (samples, features), got {host.shape}")
        if host.shape[0] < 1:
            raise ValueError(f"{argument}: expected at least one sample, got shape {host.shape}")
        width = width or self.input_features
        if width is not None and host.shape[1] != width:
            raise ValueError(
                f"{argument}: model '{self.name}' takes {width} features (shape (samples, {width})), got shape {host.shape}"
            )
        dtype = self._layers[0].dtype
        with np.errstate(over="ignore"):
            cast = host.astype(dtype, copy=False)
        # Checked after the cast: 1e5 is finite in float32 but inf in a float16 model.
        if not np.isfinite(cast).all():
            row = int(np.nonzero(~np.isfinite(cast).all(axis=1))[0][0])
            what = "NaN or inf" if not np.isfinite(host[row]).all() else f"values that overflow {dtype.name}"
            raise ValueError(f"{argument}: expected finite values, got {what} (first in row {row})")
        return cast

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
        yh = self.loss.prepare_labels(y, (xh.shape[0], self.output_features), self._layers[-1].dtype, names[1])
        return xh, yh

    def _ensure_built(self, features: int) -> None:
        if not self.built:
            self.build(features)

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
        return self._batch_step(x, y, self.backend)

    def _batch_step(self, xb: Array, yb: Array, backend: Backend) -> tuple[Scalar, Scalar]:
        logits = self.forward(xb)
        value = self.loss._forward(backend, logits, yb)
        correct = self._correct(logits, yb) if self.metrics else 0
        grad = self.loss.backward()
        self.loss._reset_cache()
        del logits
        self.backward(grad, input_grad=False)
        del grad
        self.optimizer.step(self)
        return value, correct

    def _correct(self, pred: Array, labels: Array) -> Scalar:
        """Correct rows of ``pred``: argmax for several classes; for binary outputs (one output, or a
        binary loss) the fraction of a row's outputs on the right side of the threshold."""
        outputs = pred.shape[1] if pred.ndim == 2 else 1
        binary = isinstance(self.loss, losses_module.BinaryCrossEntropy)
        if outputs > 1 and not binary:
            return self.backend.count_correct(pred, labels, None)
        threshold = 0.0 if binary and self.loss.from_logits else 0.5
        return self.backend.count_correct(pred, labels, threshold) / outputs

    def train_step(self, x: Any, y: Any) -> float:
        """One forward, backward and optimizer step on a batch; returns the mean loss."""
        self._require_compiled("train_step")
        xh, yh = self._prepare(x, y)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        value, _ = self._batch_step(backend.from_numpy(xh), backend.from_numpy(yh), backend)
        return float(value)

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
        epochs = _positive_int(epochs, "epochs", allow_zero=True)
        batch_size = _positive_int(batch_size, "batch_size")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose: expected 0, 1 or 2, got {verbose!r}")
        xh, yh = self._prepare(x, y)
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
            # The bar's figures are read from the device about 20 times an epoch, not every batch.
            report_every = max(1, steps // 20)
            loss_sum, correct, seen = 0.0, 0, 0
            for step, i in enumerate(range(0, n, batch_size), 1):
                value, right = self._batch_step(xe[i : i + batch_size], ye[i : i + batch_size], backend)
                b = min(batch_size, n - i)
                loss_sum = loss_sum + value * b
                correct = correct + right
                seen += b
                if bar is not None:
                    bar.update(1)
                    if step % report_every == 0 or step == steps:
                        bar.set_postfix(self._logs(float(loss_sum) / seen, float(correct) / seen), refresh=False)
            logs = self._logs(float(loss_sum) / n, float(correct) / n)
            if val_dev is not None:
                for key, value in self._evaluate_device(*val_dev, 256).items():
                    logs[f"val_{key}"] = value
            backend.synchronize()
            seconds = time.perf_counter() - start
            history._append(epoch, logs, seconds)
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
        n = x_dev.shape[0]
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):
            logits = self.forward(x_dev[i : i + batch_size])
            yb = y_dev[i : i + batch_size]
            loss_sum = loss_sum + self.loss._forward(backend, logits, yb) * logits.shape[0]
            if self.metrics:
                correct = correct + self._correct(logits, yb)
            self.loss._reset_cache()
            del logits
        return self._logs(float(loss_sum) / n, float(correct) / n)

    def evaluate(self, x: Any, y: Any, batch_size: int = 256, verbose: int = 0) -> dict[str, float]:
        """{'loss': mean loss, 'accuracy': fraction correct (when compiled with it)} over (x, y)."""
        self._require_compiled("evaluate")
        batch_size = _positive_int(batch_size, "batch_size")
        xh, yh = self._prepare(x, y)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        logs = self._evaluate_device(backend.from_numpy(xh), backend.from_numpy(yh), batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        return logs

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs (N, N_last) for x (N, M), computed in batches, as a NumPy array."""
        self._require_layers()
        batch_size = _positive_int(batch_size, "batch_size")
        xh = self._check_x(x)
        self._ensure_built(xh.shape[1])
        backend = self.backend
        x_dev = backend.from_numpy(xh)
        out = np.empty((xh.shape[0], self.output_features), self._layers[-1].dtype)
        for i in range(0, xh.shape[0], batch_size):
            out[i : i + batch_size] = backend.to_numpy(self.forward(x_dev[i : i + batch_size]))
        return out

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write architecture, weights, and compile settings with optimizer state to ``path`` (see fcgpu.io)."""
        from .io import save_model

        save_model(self, path)


@contextlib.contextmanager
def _using(backend: Backend | None) -> Iterator[None]:
    """Activate ``backend`` for a block when it is not already the active one."""
    if backend is None or backend is get_backend():
        yield
    else:
        with use_backend(backend):
            yield


def _positive_int(value: Any, argument: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{argument}: expected a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")
    return int(value)


def _progress(epoch: int, epochs: int, steps: int, verbose: int):
    if verbose != 1:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=True, dynamic_ncols=True)
