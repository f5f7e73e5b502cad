"""Losses, each the mean over the batch, with Keras 3's names and semantics and PyTorch's numerics.

- ``CategoricalCrossentropy`` (one-hot or probability rows) and ``SparseCategoricalCrossentropy``
  (class ids): probabilities unless ``from_logits=True``, as Keras's; after a softmax output layer
  the model computes them from that layer's logits (``Loss.fused_with``), stable for any logit.
  ``SoftmaxCrossEntropy`` is fcgpu's own name: logits, class ids or rows.
- ``BinaryCrossentropy`` (Keras's name, probabilities by default; fused with a sigmoid output) and
  ``BinaryCrossEntropy`` (fcgpu 0.1's, logits by default).
- ``MeanSquaredError``, ``MeanAbsoluteError``, ``Huber(delta)``: mean over all elements.

Custom losses, as in Keras 3: a ``Loss`` subclass defining ``call(y_true, y_pred)``, or a function
``fn(y_true, y_pred)`` (``get`` wraps it in ``LossFunctionWrapper``), written with ``fcgpu.ops``.

``get`` resolves an instance, a config dict (what saving stores) or a Keras name. The protocol
(``forward``/``backward``, ``compute``/``step`` for the model) is ``fcgpu.losses.base.Loss``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..backends import Backend
from ..backends.base import Array, Scalar
from .custom import LossFunctionWrapper
from .base import (
    ElementwiseLoss,
    FromLogits,
    Loss,
    check_fraction,
    class_ids,
    host_labels,
    outputs_of,
    target_rows,
)

__all__ = [
    "Loss",
    "SoftmaxCrossEntropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "BinaryCrossEntropy",
    "BinaryCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "LossFunctionWrapper",
    "get",
]

#: Keras's backend epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7


# -- categorical cross-entropies ----------------------------------------------------------------
class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits (B, C), mean over the batch.

    Labels: class ids (B,) (or (B, 1)) of an integer type, or integral floats, in [0, C);
    or one-hot / probability targets (B, C): values in [0, 1], each row summing to 1.
    Value: mean_b(logsumexp(z_b) - sum_c y_bc z_bc); gradient (softmax(z) - y) / B.
    """

    name = "softmax_cross_entropy"
    _pred_kind = "logits"

    def _shape(self, pred_shape: tuple[int, ...]) -> tuple[int, int]:
        if len(pred_shape) != 2:
            raise ValueError(f"pred: expected {self._pred_kind} of shape (batch, classes), got {tuple(pred_shape)}")
        return pred_shape[0], pred_shape[1]

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        batch, classes = self._shape(pred_shape)
        host = host_labels(labels, argument)
        if host.ndim == 2 and host.shape[1] == 1 and classes != 1:
            host = host[:, 0]
        if host.ndim == 1:
            return class_ids(host, batch, classes, argument)
        if host.shape == (batch, classes):
            return target_rows(host, classes, dtype, argument)
        raise ValueError(
            f"{argument}: expected class ids of shape ({batch},) or one-hot targets of shape ({batch}, {classes}), "
            f"got shape {host.shape}"
        )

    def _pred_array(self, backend, pred):
        pred = super()._pred_array(backend, pred)
        self._shape(pred.shape)
        return pred

    _cache = Loss._cache + ("_lse",)

    weighs_rows = True

    def step(self, backend, pred, labels, acc, count, *, scale=None, sample_weight=None):
        out = self._buffers.get(backend, "grad", pred.shape, pred.dtype)
        return backend.softmax_xent_step(pred, labels, 1.0 / pred.shape[0], 1.0, count, out, acc, gscale=scale,
                                         sample_weight=sample_weight)

    def correct(self, backend, pred, labels):
        # The argmax whatever the number of classes, as the fused step counts it.
        return backend.count_correct(pred, labels, None)

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


class _KerasCategorical(FromLogits, SoftmaxCrossEntropy):
    """Keras's categorical cross-entropies. ``from_logits=True``: softmax cross-entropy (one fused
    row pass in training). Else pred are probability rows, computed as Keras does: each row divided
    by its sum, clipped to [1e-7, 1 - 1e-7], -sum_c y_c log(q_c); the gradient goes through the
    normalisation and is zero where a value was clipped."""

    fuses_with = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self._set_from_logits(from_logits)
        self.label_smoothing = check_fraction(label_smoothing, "label_smoothing")
        super().__init__()

    @property
    def _pred_kind(self) -> str:  # type: ignore[override]
        return "logits" if self.from_logits else "probabilities"

    @property
    def weighs_rows(self) -> bool:  # type: ignore[override]
        return self.from_logits

    def step(self, backend, pred, labels, acc, count, *, scale=None, sample_weight=None):
        if self.from_logits:
            return super().step(backend, pred, labels, acc, count, scale=scale, sample_weight=sample_weight)
        return Loss.step(self, backend, pred, labels, acc, count, scale=scale, sample_weight=sample_weight)

    def _prepare_value(self, backend, pred, labels):
        if self.from_logits:
            return super()._prepare_value(backend, pred, labels)
        return self._value(backend, pred, labels)

    def _value(self, backend, pred, labels):
        if self.from_logits:
            return super()._value(backend, pred, labels)
        return backend.cce_prob_sum(pred, labels, EPSILON) / pred.shape[0]

    def _grad(self, backend, pred, labels, out):
        if self.from_logits:
            return super()._grad(backend, pred, labels, out)
        return backend.cce_prob_grad(pred, labels, EPSILON, 1.0 / pred.shape[0], out)


class CategoricalCrossentropy(_KerasCategorical):
    """Keras's CategoricalCrossentropy: labels are one-hot or probability rows (B, C), smoothed to
    y (1 - label_smoothing) + label_smoothing / C as Keras and PyTorch do; pred are probabilities
    unless ``from_logits``. Class ids are refused (``SparseCategoricalCrossentropy`` takes them)."""

    name = "categorical_crossentropy"

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        batch, classes = self._shape(pred_shape)
        host = host_labels(labels, argument)
        if host.shape == (batch, classes):
            rows = target_rows(host, classes, dtype, argument)
            if self.label_smoothing:
                rows = (rows * (1.0 - self.label_smoothing) + self.label_smoothing / classes).astype(dtype)
            return rows
        if host.ndim == 1 or (host.ndim == 2 and host.shape[1] == 1):
            raise ValueError(
                f"{argument}: {type(self).__name__} takes one-hot or probability rows of shape ({batch}, {classes}), "
                f"got class ids of shape {host.shape}; use SparseCategoricalCrossentropy "
                f"('sparse_categorical_crossentropy') for class ids"
            )
        raise ValueError(f"{argument}: expected one-hot or probability rows of shape ({batch}, {classes}), got shape {host.shape}")

    def get_config(self):
        return {"class_name": type(self).__name__, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class SparseCategoricalCrossentropy(_KerasCategorical):
    """Keras's SparseCategoricalCrossentropy: labels are class ids (B,) or (B, 1), whole numbers in
    [0, C); pred are probabilities unless ``from_logits``. One-hot rows are refused
    (``CategoricalCrossentropy`` takes them)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__(from_logits=from_logits)

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        batch, classes = self._shape(pred_shape)
        host = host_labels(labels, argument)
        if host.ndim == 2 and host.shape[1] == 1:
            host = host[:, 0]
        if host.ndim == 1:
            return class_ids(host, batch, classes, argument)
        if host.shape == (batch, classes):
            raise ValueError(
                f"{argument}: {type(self).__name__} takes class ids of shape ({batch},) or ({batch}, 1), got rows of "
                f"shape {host.shape} (one-hot?); use CategoricalCrossentropy ('categorical_crossentropy') for one-hot "
                f"labels, or pass labels.argmax(axis=1)"
            )
        raise ValueError(f"{argument}: expected class ids of shape ({batch},) or ({batch}, 1), got shape {host.shape}")

    def get_config(self):
        return {"class_name": type(self).__name__, "from_logits": self.from_logits}


# -- binary cross-entropies -----------------------------------------------------------------------
class BinaryCrossEntropy(FromLogits, ElementwiseLoss):
    """Binary cross-entropy; pred (B,) or (B, 1) (or (B, K) independent outputs), labels in [0, 1].

    ``from_logits=True``: pred are logits z, value softplus(z) - y z (stable at any |z|), gradient
    (sigmoid(z) - y) / n. ``from_logits=False``: pred are probabilities, clipped to [eps, 1 - eps]
    as Keras does. n is the number of elements of pred (the batch size for one output).
    """

    name = "binary_crossentropy"
    check_unit_interval = True
    fuses_with = "sigmoid"

    def __init__(self, from_logits: bool = True, eps: float = EPSILON) -> None:
        self._set_from_logits(from_logits)
        if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
            raise ValueError(f"eps: expected a float in (0, 0.5), got {eps!r}")
        self.eps = float(eps)
        super().__init__()

    def get_config(self):
        return {"class_name": "BinaryCrossEntropy", "from_logits": self.from_logits, "eps": self.eps}

    def correct(self, backend, pred, labels):
        # Binary accuracy per output: probabilities at 0.5, logits at 0 (the same decision).
        return backend.count_correct(pred, labels, 0.0 if self.from_logits else 0.5) / outputs_of(pred)

    @property
    def weighs_rows(self) -> bool:  # type: ignore[override]
        return self.from_logits

    def step(self, backend, pred, labels, acc, count, *, scale=None, sample_weight=None):
        if not self.from_logits:
            return super().step(backend, pred, labels, acc, count, scale=scale, sample_weight=sample_weight)
        out = self._buffers.get(backend, "grad", pred.shape, pred.dtype)
        return backend.bce_logits_step(pred, labels, 1.0 / pred.size, 1.0 / outputs_of(pred), count, out, acc,
                                       gscale=scale, sample_weight=sample_weight)

    def _value(self, backend, pred, labels):
        if self.from_logits:
            return backend.bce_logits_sum(pred, labels) / pred.size
        return backend.bce_prob_sum(pred, labels, self.eps) / pred.size

    def _grad(self, backend, pred, labels, out):
        if self.from_logits:
            return backend.bce_logits_grad(pred, labels, 1.0 / pred.size, out)
        return backend.bce_prob_grad(pred, labels, self.eps, 1.0 / pred.size, out)


class BinaryCrossentropy(BinaryCrossEntropy):
    """Keras's BinaryCrossentropy: probabilities unless ``from_logits``; labels smoothed to
    y (1 - label_smoothing) + 0.5 label_smoothing as Keras does; probabilities clipped at 1e-7."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        super().__init__(from_logits=from_logits)
        self.label_smoothing = check_fraction(label_smoothing, "label_smoothing")

    def prepare_labels(self, labels, pred_shape, dtype, argument):
        out = super().prepare_labels(labels, pred_shape, dtype, argument)
        if self.label_smoothing:
            out = (out * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing).astype(dtype)
        return out

    def get_config(self):
        return {"class_name": "BinaryCrossentropy", "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


# -- regression -----------------------------------------------------------------------------------
class _Regression(ElementwiseLoss):
    """Mean over all elements of an elementwise loss of p - y, in one fused pass a training step
    (unless 'accuracy' is asked for, which the generic step counts). The backend methods are
    ``{kernel}_step`` and ``{kernel}_grad`` and the sum ``total``, each taking ``_options()``
    after (p, y)."""

    kernel = ""
    total = ""

    def _options(self) -> tuple[float, ...]:
        return ()

    weighs_rows = True

    def step(self, backend, pred, labels, acc, count, *, scale=None, sample_weight=None):
        if count and sample_weight is None:
            return super().step(backend, pred, labels, acc, count, scale=scale)
        out = self._buffers.get(backend, "grad", pred.shape, pred.dtype)
        step = getattr(backend, f"{self.kernel}_step")
        grad = step(pred, labels, *self._options(), 1.0 / pred.size, 1.0 / outputs_of(pred), out, acc, gscale=scale,
                    sample_weight=sample_weight)
        if count:  # weighted: the fused step, and the correct count (unweighted, as Keras's metrics) apart
            acc[1:2] += self.correct(backend, pred, labels)
        return grad

    def _value(self, backend: Backend, pred: Array, labels: Array) -> Scalar:
        return getattr(backend, self.total)(pred, labels, *self._options()) / pred.size

    def _grad(self, backend: Backend, pred: Array, labels: Array, out: Array) -> Array:
        return getattr(backend, f"{self.kernel}_grad")(pred, labels, *self._options(), 1.0 / pred.size, out)


class MeanSquaredError(_Regression):
    """mean((pred - y)^2) over all elements (Keras and PyTorch agree); gradient 2 (pred - y) / n."""

    name = "mean_squared_error"
    kernel, total = "mse", "mse_sum"


class MeanAbsoluteError(_Regression):
    """mean(|pred - y|) over all elements; gradient sign(pred - y) / n with sign(0) = 0 (PyTorch's l1_loss)."""

    name = "mean_absolute_error"
    kernel, total = "mae", "abs_error_sum"


class Huber(_Regression):
    """Huber loss, mean over all elements: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta),
    d = pred - y (Keras's and PyTorch's huber_loss); gradient clip(d, -delta, delta) / n."""

    name = "huber_loss"
    kernel, total = "huber", "huber_sum"

    def __init__(self, delta: float = 1.0) -> None:
        if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.floating)) or not (
            0 < delta < np.inf
        ):
            raise ValueError(f"delta: expected a positive finite number, got {delta!r}")
        self.delta = float(delta)
        super().__init__()

    def get_config(self):
        return {"class_name": "Huber", "delta": self.delta}

    def _options(self) -> tuple[float, ...]:
        return (self.delta,)


# -- lookup ---------------------------------------------------------------------------------------
_ALIASES: dict[str, type[Loss]] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber,
    "huber_loss": Huber,
}
_CLASSES: dict[str, type[Loss]] = {
    c.__name__: c
    for c in (
        SoftmaxCrossEntropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        BinaryCrossEntropy,
        BinaryCrossentropy,
        MeanSquaredError,
        MeanAbsoluteError,
        Huber,
    )
}


def get(identifier: str | Loss | type[Loss] | Callable[..., Any] | dict[str, Any]) -> Loss:
    """A loss from an instance, a config dict (``get_config()``), a class name or a Keras name;
    a Loss subclass is instantiated, and a function ``fn(y_true, y_pred)`` written with
    ``fcgpu.ops`` is wrapped in ``LossFunctionWrapper`` (as Keras's ``compile`` wraps it).

    Keras's names take probabilities ('categorical_crossentropy', 'sparse_categorical_crossentropy',
    'binary_crossentropy'): after a softmax (sigmoid) output layer the model computes them from that
    layer's logits (``Loss.fused_with``). 'softmax_cross_entropy' takes logits.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and not isinstance(identifier, (str, dict, type)):
        return LossFunctionWrapper(identifier)
    if isinstance(identifier, dict):
        config = dict(identifier)
        cls = _CLASSES.get(config.pop("class_name", None))
        if cls is None:
            raise ValueError(
                f"loss: unknown config {identifier!r}; known classes: {sorted(_CLASSES)} (a custom loss, a function or "
                f"a Loss subclass, is not stored as code: load the model with compile=False and compile it again)"
            )
        try:
            return cls(**config)
        except TypeError as e:
            raise ValueError(f"loss: config {identifier!r} does not fit {cls.__name__}: {e}") from None
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is not None:
            return cls()
    raise ValueError(
        f"loss: expected a Loss instance or one of {sorted(_ALIASES)} (or a function fn(y_true, y_pred)), got {identifier!r}"
    )
