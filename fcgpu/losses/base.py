"""The loss protocol: the ``Loss`` base class, the ``from_logits`` switch of the cross-entropies,
and the host-side label checks the losses in ``fcgpu.losses`` share.

``forward(pred, labels)`` returns a Python float and remembers what ``backward()`` needs;
``backward()`` returns dL/dpred, a backend array of pred's shape written into a buffer that is
reused for the next batch of the same shape (unless the caller still holds it).

Labels are checked on the host; the model checks a whole data set once per ``fit`` and then
calls ``compute`` / ``step`` with labels already prepared on the device.

A subclass may instead define Keras's ``call(y_true, y_pred)`` with ``fcgpu.ops`` (constructor
``name``, ``reduction``, ``dtype``): ``fcgpu.losses.tracing`` then computes it and its gradient.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import tracing as loss_tracing
from ..backends import Backend, get_backend, to_numpy
from ..backends.base import Array, Scalar
from ..backends.buffers import Buffers

__all__ = ["Loss", "FromLogits", "ElementwiseLoss", "host_labels", "class_ids", "target_rows", "outputs_of",
           "check_fraction"]


def host_labels(labels: Any, argument: str) -> np.ndarray:
    """``labels`` as a host array of a numeric type (else a TypeError naming ``argument``)."""
    host = to_numpy(labels)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected numeric labels, got dtype {host.dtype}")
    return host


def outputs_of(pred: Array) -> int:
    """Outputs per row: pred's second axis, 1 for a (B,) vector."""
    return pred.shape[1] if pred.ndim == 2 else 1


def class_ids(host: np.ndarray, batch: int, classes: int, argument: str) -> np.ndarray:
    """Checked class ids (B,) as int64: whole numbers (integers or integral floats) in [0, classes)."""
    if host.shape[0] != batch:
        raise ValueError(f"{argument}: expected {batch} class ids (one per row of the predictions), got {host.shape[0]}")
    if host.dtype.kind == "f":
        if not np.isfinite(host).all() or not np.array_equal(host, np.round(host)):
            raise ValueError(f"{argument}: class ids must be whole numbers, got non-integral floats")
    elif host.dtype.kind == "b":
        raise TypeError(f"{argument}: expected integer class ids, got booleans")
    if host.size and (host.min() < 0 or host.max() >= classes):
        bad = host[(host < 0) | (host >= classes)][0].item()
        raise ValueError(f"{argument}: class ids must be in [0, {classes}), got {bad!r}")
    return host.astype(np.int64)


def target_rows(host: np.ndarray, classes: int, dtype: Any, argument: str) -> np.ndarray:
    """Checked one-hot or probability rows (B, C) in ``dtype``: finite, in [0, 1], each summing to 1
    (the gradient softmax - y is that of the loss only when every row is a distribution)."""
    targets = host.astype(dtype)
    if not np.isfinite(targets).all() or (targets < 0).any() or (targets > 1).any():
        raise ValueError(f"{argument}: one-hot targets must be finite and in [0, 1]")
    sums = targets.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1.0) > 1e-3
    if off.any():
        row = int(np.argmax(off))
        raise ValueError(
            f"{argument}: each row of one-hot or probability targets must sum to 1, row {row} sums to {sums[row]:.6g}"
        )
    return targets


def check_fraction(value: Any, argument: str) -> float:
    """A label-smoothing amount: a number in [0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ValueError(f"{argument}: expected a number in [0, 1], got {value!r}")
    return float(value)


class Loss:
    """Base class: subclasses define ``prepare_labels`` (host checks) and ``_value`` / ``_grad``,
    or, as in Keras 3, ``call(y_true, y_pred)`` written with ``fcgpu.ops``, returning per-sample
    values that ``reduction`` ('sum_over_batch_size', 'sum', 'mean'; 'none' outside training)
    makes one number."""

    name = "loss"

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype: Any = None) -> None:
        self._buffers = Buffers()
        self.release()
        if name is not None or self.written_with_ops:
            self.name = loss_tracing.loss_name(name, type(self).__name__)
        self.reduction = loss_tracing.check_reduction(reduction)
        self.dtype = loss_tracing.check_dtype(dtype)

    @property
    def written_with_ops(self) -> bool:
        """Whether this loss is Keras's ``call`` written with ``fcgpu.ops`` (not the protocol below)."""
        return type(self).call is not Loss.call

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Keras's hook: the per-sample losses of y_pred (B, ...) against y_true, with ``fcgpu.ops``."""
        raise NotImplementedError(f"{type(self).__name__}: define call(self, y_true, y_pred) with fcgpu.ops")

    # -- public ------------------------------------------------------------------
    def __call__(self, pred: Any, labels: Any, sample_weight: Any = None) -> Any:
        """fcgpu's losses: ``loss(pred, labels)``, the mean loss as a float. A loss written with
        ``call``: Keras's ``loss(y_true, y_pred, sample_weight=None)``, the reduced value as a
        backend array (a Tensor inside ``fcgpu.ops`` tracing)."""
        if self.written_with_ops:
            return loss_tracing.keras_call(self, pred, labels, sample_weight)
        if sample_weight is not None:
            raise TypeError(f"{type(self).__name__}: sample_weight is not supported")
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
        if self.written_with_ops:
            return {"class_name": type(self).__name__, "name": self.name, "reduction": self.reduction}
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
        if not self.written_with_ops:
            raise NotImplementedError(f"{type(self).__name__}: define call(self, y_true, y_pred) with fcgpu.ops")
        return loss_tracing.prepare_labels(self, labels, pred_shape, dtype, argument)

    def _pred_array(self, backend: Backend, pred: Any) -> Array:
        dtype = getattr(pred, "dtype", None)
        if dtype is None or np.dtype(dtype).kind != "f":
            dtype = np.float32
        pred = backend.asarray(pred, dtype, "pred")
        if pred.ndim not in (1, 2) or pred.shape[0] < 1:
            raise ValueError(f"pred: expected shape (batch, outputs) with batch >= 1, got {tuple(pred.shape)}")
        return pred

    _cache = ("_backend", "_pred", "_labels", "_traced")  # what compute keeps for backward

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
        self.keeps_batch = self._pred is not None
        return value

    def _prepare_value(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        return self._value(backend, pred, labels)

    #: Whether ``step`` weighs rows (``sample_weight``) in its fused pass.
    weighs_rows = False
    #: Whether labels come as a structure (a list or dict, one entry per output), checked by the loss.
    structured_labels = False

    def step(
        self, backend: Backend, pred: Array, labels: Array, acc: Array, count: bool, *, scale: Array | None = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """The training step's loss: returns dL/dpred (the loss's reused buffer) and adds the batch's
        loss x rows (and, with ``count``, its correct rows) into ``acc``, a float64 device array (2,).
        ``scale``: None, or a float64 device array whose first element multiplies the gradient
        (LossScaleOptimizer's loss scale, read there by the kernel: no host read). Keeps nothing for
        a later ``backward``. One fused pass where the backend has one (softmax cross-entropy,
        binary cross-entropy from logits, MSE, MAE, Huber); this generic form takes several.
        ``sample_weight``: one weight a row (a device array), which the fused steps read
        (``weighs_rows``); this generic form refuses them."""
        if sample_weight is not None:
            raise ValueError(f"sample_weight: {self!r} does not weigh rows in its step; the fused losses do")
        value = self.compute(backend, pred, labels)
        grad = self.backward()
        if scale is not None:  # the loss scale, where no fused step takes it: one pass on the device
            grad *= scale[:1]
        self.release()
        acc[0] += value * pred.shape[0]
        if count:
            acc[1] += self.correct(backend, pred, labels)
        return grad

    def correct(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        """Correct rows of ``pred`` (Keras's 'accuracy' for this loss): for one output, binary
        accuracy (the output on the right side of 0.5); for several, the argmax against class ids
        (sparse categorical accuracy) or against the argmax of label rows (categorical accuracy)."""
        outputs = outputs_of(pred)
        if outputs > 1:
            if labels.ndim == 2 and labels.shape[1] == 1:  # class ids (B, 1), as Keras reads them
                labels = labels[:, 0]
            return backend.count_correct(pred, labels, None)
        return backend.count_correct(pred, labels, 0.5) / outputs

    def _grad_buffer(self, backend: Backend, pred: Array) -> Array:
        return self._buffers.get(backend, "grad", pred.shape, pred.dtype)

    def release(self) -> None:
        """Drop references to the last batch so the layers can reuse their output buffers."""
        self.keeps_batch = False  # whether compute kept a batch for backward (release drops it)
        self._backend: Backend | None = None
        self._pred: Array | None = None
        self._labels: Array | None = None
        self._traced: Any = None  # a loss written with call: its traced result (loss_tracing.traced_value)

    def clear_buffers(self) -> None:
        self.release()
        self._buffers.clear()

    def _value(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        value, self._traced = loss_tracing.traced_value(self, backend, pred, labels)
        return value

    def _grad(self, backend: Backend, pred: Array, labels: Array, out: Array) -> Array:
        if self._traced is None:
            self._value(backend, pred, labels)
        return loss_tracing.traced_grad(self._traced, backend, out)


class FromLogits:
    """Mixin of the cross-entropies: Keras's ``from_logits`` switch. Probabilities (checked to lie
    in [0, 1]) unless ``from_logits``; after an output layer with the activation ``fuses_with``
    names, the model computes the loss from that layer's logits by the twin this returns from
    ``fused_with``: the same configuration with ``from_logits=True``, built once."""

    fuses_with = ""
    from_logits: bool

    def _set_from_logits(self, from_logits: Any) -> None:
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits: expected a bool, got {from_logits!r}")
        self.from_logits = bool(from_logits)
        self._on_logits: Loss | None = None

    @property
    def takes_probabilities(self) -> bool:
        return not self.from_logits

    def fused_with(self, activation: str) -> Loss | None:
        if self.from_logits or activation != self.fuses_with:
            return None
        if self._on_logits is None:
            config = {k: v for k, v in self.get_config().items() if k != "class_name"}  # type: ignore[attr-defined]
            self._on_logits = type(self)(**{**config, "from_logits": True})
        return self._on_logits


class ElementwiseLoss(Loss):
    """Losses whose labels have pred's shape (a (B,) / (B, 1) mismatch is reshaped), mean over all elements."""

    check_unit_interval = False

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        host = host_labels(labels, argument)
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
        with np.errstate(over="ignore", invalid="ignore"):
            out = host.astype(dtype)
        if not np.isfinite(out).all():
            what = "NaN or inf" if not np.isfinite(host.astype(np.float64)).all() else f"values that overflow {np.dtype(dtype).name}"
            raise ValueError(f"{argument}: expected finite values, got {what}")
        if self.check_unit_interval and ((out < 0).any() or (out > 1).any()):
            raise ValueError(f"{argument}: binary labels must be in [0, 1]")
        return out
