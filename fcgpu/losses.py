"""Losses: each the mean over the batch, stable for any logit size.

``forward(pred, labels)`` returns a Python float and remembers what ``backward()`` needs;
``backward()`` returns dL/dpred, a backend array of pred's shape written into a buffer that is
reused for the next batch of the same shape (unless the caller still holds it).

Labels are checked on the host; the model checks a whole data set once per ``fit`` and then
calls ``compute`` with labels already prepared on the device.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Backend, get_backend, to_numpy
from .backends.base import Array, Scalar
from .buffers import Buffers

__all__ = ["Loss", "SoftmaxCrossEntropy", "BinaryCrossEntropy", "MeanSquaredError", "get"]


def _host_labels(labels: Any, argument: str) -> np.ndarray:
    host = to_numpy(labels)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected numeric labels, got dtype {host.dtype}")
    return host


class Loss:
    """Base class: subclasses define ``prepare_labels`` (host checks) and ``_value`` / ``_grad``."""

    name = "loss"

    def __init__(self) -> None:
        self._buffers = Buffers()
        self.release()

    # -- public ------------------------------------------------------------------
    def __call__(self, pred: Any, labels: Any) -> float:
        return self.forward(pred, labels)

    def forward(self, pred: Any, labels: Any) -> float:
        """The mean loss of ``pred`` (an array of the active backend, or NumPy) against ``labels``."""
        backend = get_backend()
        pred = self._pred_array(backend, pred)
        host = self.prepare_labels(labels, pred.shape, pred.dtype, "labels")
        if self.takes_probabilities:
            values = backend.to_numpy(pred)
            if not ((values >= 0) & (values <= 1)).all():
                raise ValueError(
                    f"pred: {type(self).__name__}(from_logits=False) takes probabilities in [0, 1], got values "
                    f"in [{np.nanmin(values)}, {np.nanmax(values)}]{' and NaN' if np.isnan(values).any() else ''}; "
                    f"pass logits with from_logits=True"
                )
        return float(self.compute(backend, pred, backend.from_numpy(host)))

    def backward(self) -> Array:
        """dL/dpred, a backend array of pred's shape."""
        if self._pred is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward: call forward(pred, labels) first")
        out = self._buffers.get(self._backend, "grad", self._pred.shape, self._pred.dtype)
        return self._grad(self._backend, self._pred, self._labels, out)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__}

    #: Whether predictions are probabilities in [0, 1] (checked), not logits or values.
    takes_probabilities = False

    def fused_with(self, activation: str) -> "Loss | None":
        """The same loss computed from the logits of an output layer with ``activation``, where this
        loss fuses with it (as Keras: a probability cross-entropy after the matching sigmoid or
        softmax), else None. The model then skips the activation and feeds this loss the logits:
        stable for any logit, and a saturated output still gets a gradient."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    # -- for subclasses and the model -------------------------------------------
    def prepare_labels(self, labels: Any, pred_shape: tuple[int, ...], dtype: Any, argument: str) -> np.ndarray:
        """Check ``labels`` against predictions of ``pred_shape`` on the host; the array to upload."""
        raise NotImplementedError

    def _pred_array(self, backend: Backend, pred: Any) -> Array:
        dtype = getattr(pred, "dtype", None)
        if dtype is None or np.dtype(dtype).kind != "f":
            dtype = np.float32
        pred = backend.asarray(pred, dtype, "pred")
        if pred.ndim not in (1, 2) or pred.shape[0] < 1:
            raise ValueError(f"pred: expected shape (batch, outputs) with batch >= 1, got {tuple(pred.shape)}")
        return pred

    _cache = ("_backend", "_pred", "_labels")  # what compute keeps for backward

    def compute(self, backend: Backend, pred: Array, labels: Array, keep: bool = True) -> Scalar:
        """The loss for prepared labels (no checks), left where it was computed: the model's
        per-batch path, which reads it only when it reports. ``keep=False`` (evaluation) leaves
        what a pending ``backward`` uses as it was."""
        saved = None if keep else {k: getattr(self, k) for k in self._cache}
        self._backend, self._pred, self._labels = backend, pred, labels
        value = self._prepare_value(backend, pred, labels)
        if saved is not None:
            for k, v in saved.items():
                setattr(self, k, v)
        return value

    def _prepare_value(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        return self._value(backend, pred, labels)

    def step(self, backend: Backend, pred: Array, labels: Array, acc: Array, count: bool) -> Array:
        """The training step's loss: returns dL/dpred (the loss's reused buffer) and adds the batch's
        loss x rows (and, with ``count``, its correct rows) into ``acc``, a float64 device array (2,).
        Keeps nothing for a later ``backward``. One fused pass where the backend has one (softmax
        cross-entropy, binary cross-entropy from logits, MSE); this generic form takes several."""
        value = self.compute(backend, pred, labels)
        grad = self.backward()
        self.release()
        acc[0] += value * pred.shape[0]
        if count:
            acc[1] += self.correct(backend, pred, labels)
        return grad

    def correct(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        """Correct rows of ``pred`` (Keras's accuracy for this loss): the argmax for several outputs,
        else the fraction of a row's outputs on the right side of 0.5."""
        outputs = pred.shape[1] if pred.ndim == 2 else 1
        if outputs > 1:
            return backend.count_correct(pred, labels, None)
        return backend.count_correct(pred, labels, 0.5) / outputs

    def _grad_buffer(self, backend: Backend, pred: Array) -> Array:
        return self._buffers.get(backend, "grad", pred.shape, pred.dtype)

    def release(self) -> None:
        """Drop references to the last batch so the layers can reuse their output buffers."""
        self._backend: Backend | None = None
        self._pred: Array | None = None
        self._labels: Array | None = None

    def clear_buffers(self) -> None:
        self.release()
        self._buffers.clear()

    def _value(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        raise NotImplementedError

    def _grad(self, backend: Backend, pred: Array, labels: Array, out: Array) -> Array:
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits (B, C), mean over the batch.

    Labels: class ids (B,) (or (B, 1)) of an integer type, or integral floats, in [0, C);
    or one-hot / probability targets (B, C): values in [0, 1], each row summing to 1.
    Value: mean_b(logsumexp(z_b) - sum_c y_bc z_bc); gradient (softmax(z) - y) / B.
    """

    name = "softmax_cross_entropy"

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        if len(pred_shape) != 2:
            raise ValueError(f"pred: expected logits of shape (batch, classes), got {pred_shape}")
        batch, classes = pred_shape
        host = _host_labels(labels, argument)
        if host.ndim == 2 and host.shape[1] == 1 and classes != 1:
            host = host[:, 0]
        if host.ndim == 1:
            if host.shape[0] != batch:
                raise ValueError(
                    f"{argument}: expected {batch} class ids (one per row of the predictions), got {host.shape[0]}"
                )
            if host.dtype.kind == "f":
                if not np.isfinite(host).all() or not np.array_equal(host, np.round(host)):
                    raise ValueError(f"{argument}: class ids must be whole numbers, got non-integral floats")
            elif host.dtype.kind == "b":
                raise TypeError(f"{argument}: expected integer class ids, got booleans")
            if host.size and (host.min() < 0 or host.max() >= classes):
                bad = host[(host < 0) | (host >= classes)][0]
                raise ValueError(f"{argument}: class ids must be in [0, {classes}), got {bad!r}")
            return host.astype(np.int64)
        if host.ndim == 2:
            if host.shape != (batch, classes):
                raise ValueError(
                    f"{argument}: expected class ids of shape ({batch},) or one-hot targets of shape "
                    f"({batch}, {classes}), got shape {host.shape}"
                )
            targets = host.astype(dtype)
            if not np.isfinite(targets).all() or (targets < 0).any() or (targets > 1).any():
                raise ValueError(f"{argument}: one-hot targets must be finite and in [0, 1]")
            # The gradient softmax - y is that of the loss only when every row is a distribution.
            sums = targets.sum(axis=1, dtype=np.float64)
            off = np.abs(sums - 1.0) > 1e-3
            if off.any():
                row = int(np.argmax(off))
                raise ValueError(
                    f"{argument}: each row of one-hot or probability targets must sum to 1, "
                    f"row {row} sums to {sums[row]:.6g}"
                )
            return targets
        raise ValueError(
            f"{argument}: expected class ids of shape ({batch},) or one-hot targets of shape ({batch}, {classes}), "
            f"got shape {host.shape}"
        )

    def _pred_array(self, backend, pred):
        pred = super()._pred_array(backend, pred)
        if pred.ndim != 2:
            raise ValueError(f"pred: expected logits of shape (batch, classes), got {tuple(pred.shape)}")
        return pred

    _cache = Loss._cache + ("_lse",)

    def step(self, backend, pred, labels, acc, count):
        out = self._grad_buffer(backend, pred)
        return backend.softmax_xent_step(pred, labels, 1.0 / pred.shape[0], 1.0, count, out, acc)

    def _prepare_value(self, backend, pred, labels):
        self._lse = backend.logsumexp_rows(pred)
        return self._value(backend, pred, labels)

    def release(self):
        super().release()
        self._lse = None

    def _value(self, backend, pred, labels):
        return backend.softmax_xent_sum(pred, self._lse, labels) / pred.shape[0]

    def _grad(self, backend, pred, labels, out):
        return backend.softmax_xent_grad(pred, self._lse, labels, 1.0 / pred.shape[0], out)


class _Elementwise(Loss):
    """Losses whose labels have pred's shape (a (B,) / (B, 1) mismatch is reshaped), mean over all elements."""

    check_unit_interval = False

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        host = _host_labels(labels, argument)
        batch = pred_shape[0]
        if host.shape != tuple(pred_shape):
            if host.ndim >= 1 and host.shape[0] != batch:
                raise ValueError(
                    f"{argument}: expected {batch} labels (one per row of the predictions), got {host.shape[0]} "
                    f"(shape {host.shape})"
                )
            if host.size != int(np.prod(pred_shape)) or host.ndim not in (1, 2) or (host.ndim == 2 and host.shape[1] != 1):
                raise ValueError(f"{argument}: expected shape {tuple(pred_shape)}, got {host.shape}")
            host = host.reshape(pred_shape)
        out = host.astype(dtype)
        if not np.isfinite(out).all():
            raise ValueError(f"{argument}: expected finite values, got NaN or inf")
        if self.check_unit_interval and ((out < 0).any() or (out > 1).any()):
            raise ValueError(f"{argument}: binary labels must be in [0, 1]")
        return out


class BinaryCrossEntropy(_Elementwise):
    """Binary cross-entropy; pred (B,) or (B, 1) (or (B, K) independent outputs), labels in [0, 1].

    ``from_logits=True``: pred are logits z, value softplus(z) - y z (stable at any |z|), gradient
    (sigmoid(z) - y) / n. ``from_logits=False``: pred are probabilities, clipped to [eps, 1 - eps]
    as Keras does. n is the number of elements of pred (the batch size for one output).
    """

    name = "binary_crossentropy"
    check_unit_interval = True

    def __init__(self, from_logits: bool = True, eps: float = 1e-7) -> None:
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits: expected a bool, got {from_logits!r}")
        if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
            raise ValueError(f"eps: expected a float in (0, 0.5), got {eps!r}")
        super().__init__()
        self.from_logits = bool(from_logits)
        self.eps = float(eps)
        self._on_logits: BinaryCrossEntropy | None = None

    @property
    def takes_probabilities(self) -> bool:  # type: ignore[override]
        return not self.from_logits

    def fused_with(self, activation: str) -> "Loss | None":
        if self.from_logits or activation != "sigmoid":
            return None
        if self._on_logits is None:
            self._on_logits = BinaryCrossEntropy(from_logits=True, eps=self.eps)
        return self._on_logits

    def get_config(self):
        return {"class_name": "BinaryCrossEntropy", "from_logits": self.from_logits, "eps": self.eps}

    def correct(self, backend, pred, labels):
        outputs = pred.shape[1] if pred.ndim == 2 else 1
        return backend.count_correct(pred, labels, 0.0 if self.from_logits else 0.5) / outputs

    def step(self, backend, pred, labels, acc, count):
        if not self.from_logits:
            return super().step(backend, pred, labels, acc, count)
        outputs = pred.shape[1] if pred.ndim == 2 else 1
        out = self._grad_buffer(backend, pred)
        return backend.bce_logits_step(pred, labels, 1.0 / pred.size, 1.0 / outputs, count, out, acc)

    def _value(self, backend, pred, labels):
        if self.from_logits:
            return backend.bce_logits_sum(pred, labels) / pred.size
        return backend.bce_prob_sum(pred, labels, self.eps) / pred.size

    def _grad(self, backend, pred, labels, out):
        if self.from_logits:
            return backend.bce_logits_grad(pred, labels, 1.0 / pred.size, out)
        return backend.bce_prob_grad(pred, labels, self.eps, 1.0 / pred.size, out)


class MeanSquaredError(_Elementwise):
    """mean((pred - y)^2) over all elements (Keras and PyTorch agree); gradient 2 (pred - y) / n."""

    name = "mean_squared_error"

    def step(self, backend, pred, labels, acc, count):
        if count:  # accuracy on a regression loss: the generic path counts it
            return super().step(backend, pred, labels, acc, count)
        outputs = pred.shape[1] if pred.ndim == 2 else 1
        return backend.mse_step(pred, labels, 1.0 / pred.size, 1.0 / outputs, self._grad_buffer(backend, pred), acc)

    def _value(self, backend, pred, labels):
        return backend.mse_sum(pred, labels) / pred.size

    def _grad(self, backend, pred, labels, out):
        return backend.mse_grad(pred, labels, 1.0 / pred.size, out)


_ALIASES: dict[str, Any] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "categorical_crossentropy": SoftmaxCrossEntropy,
    "sparse_categorical_crossentropy": SoftmaxCrossEntropy,
    "binary_crossentropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
_CLASSES = {c.__name__: c for c in (SoftmaxCrossEntropy, BinaryCrossEntropy, MeanSquaredError)}


def get(identifier: str | Loss | dict[str, Any]) -> Loss:
    """A loss from an instance, a config dict, or a Keras-style name.

    The categorical cross-entropy names take logits (the last Dense has no softmax);
    'binary_crossentropy' takes probabilities, as Keras's: after a sigmoid output layer the model
    computes it from that layer's logits (``Loss.fused_with``).
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        cls = _CLASSES.get(config.pop("class_name", None))
        if cls is None:
            raise ValueError(f"loss: unknown config {identifier!r}")
        return cls(**config)
    if isinstance(identifier, str) and identifier.lower() in _ALIASES:
        cls = _ALIASES[identifier.lower()]
        if cls is BinaryCrossEntropy:
            return BinaryCrossEntropy(from_logits=False)
        return cls()
    raise ValueError(f"loss: expected a Loss instance or one of {sorted(_ALIASES)}, got {identifier!r}")
