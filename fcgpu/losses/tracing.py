"""Losses written with ``fcgpu.ops``: how ``fcgpu.losses.Loss`` computes one whose subclass defines
Keras's ``call(y_true, y_pred)`` (a function passed to ``compile`` is one too, wrapped by
``fcgpu.losses.custom.LossFunctionWrapper``).

Keras 3's semantics (``keras/src/losses/loss.py``): y_true and y_pred are converted to the loss's
dtype, ``call`` returns per-sample values (any shape), and the reduction makes them one number:
'sum_over_batch_size' (the default) and 'mean' divide their sum by their number of elements,
'sum' leaves the sum, 'none' (or None) leaves them as they are; a 0-d result is not reduced.
In training the gradient with respect to y_pred is taken by ``fcgpu.ops`` on the model's backend
and handed to the model's backward as any loss's dL/dpred. The loss's dtype is its ``dtype``
argument, else the predictions' (float32 for 16-bit predictions, as Keras computes losses in floatx).
"""
from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np

from .. import ops
from ..backends import Backend, to_numpy
from ..backends.base import Array, Scalar
from ..ops.core import Tensor, call_traced, gradients, not_traced

__all__ = ["OpsLoss", "REDUCTIONS", "check_reduction", "check_dtype", "loss_name", "compute_dtype", "prepare_labels",
           "keras_call", "reduce_values", "traced_value", "traced_grad"]

#: Keras 3's reductions ('mean_with_sample_weight' is 'mean' without sample weights).
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


class OpsLoss(Protocol):
    """What these functions read of a loss written with ``call``."""

    name: str
    reduction: str | None
    dtype: np.dtype | None

    def call(self, y_true: Any, y_pred: Any) -> Any: ...


def check_reduction(reduction: Any) -> str | None:
    if reduction not in REDUCTIONS or isinstance(reduction, bool):
        raise ValueError(f"reduction: expected one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_dtype(dtype: Any) -> np.dtype | None:
    """None (the predictions' float type) or a float dtype."""
    if dtype is None:
        return None
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: expected a float dtype such as 'float32', got {dtype!r}") from None
    if out.kind != "f":
        raise ValueError(f"dtype: a loss computes in a float type, got {out.name}")
    return out


def loss_name(name: Any, class_name: str) -> str:
    """``name``, or Keras's default: the class name in snake case, as Keras's ``to_snake_case``
    (MyLoss -> 'my_loss', MyMSE -> 'my_mse'; Keras also numbers repeats, fcgpu does not)."""
    if name is None:
        name = re.sub(r"\W+", "", class_name)
        name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
        return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return name


def compute_dtype(loss: OpsLoss, pred_dtype: Any) -> np.dtype:
    """The loss's dtype, else the predictions' (float32 for 16-bit ones)."""
    if loss.dtype is not None:
        return loss.dtype
    pred_dtype = np.dtype(pred_dtype)
    return pred_dtype if pred_dtype.kind == "f" and pred_dtype.itemsize >= 4 else np.dtype(np.float32)


def _trainable(loss: OpsLoss) -> None:
    if loss.reduction in ("none", None):
        raise ValueError(
            f"loss '{loss.name}': reduction={loss.reduction!r} leaves per-sample values, which training cannot "
            f"minimise (Keras's torch and JAX backends refuse them too); use 'sum_over_batch_size' (the default), "
            f"'mean' or 'sum'"
        )


def prepare_labels(loss: OpsLoss, labels: Any, pred_shape: tuple[int, ...], dtype: Any, argument: str) -> np.ndarray:
    """Labels checked on the host for predictions of ``pred_shape``: numeric, one row per prediction
    row, finite in ``dtype`` (the predictions'), into which they are converted (Keras hands y_true to
    ``call`` as floats; cast back with ``ops.cast`` for class ids). Their shape is kept, as Keras
    keeps it: the function (or ``LossFunctionWrapper``) meets it."""
    _trainable(loss)
    host = to_numpy(labels)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{argument}: expected numeric labels, got dtype {host.dtype}")
    if host.ndim == 0 or host.shape[0] != pred_shape[0]:
        raise ValueError(f"{argument}: expected {pred_shape[0]} labels (one per row of the predictions), got shape {host.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = host.astype(dtype)
    if not np.isfinite(out).all():
        raise ValueError(f"{argument}: expected finite labels in {np.dtype(dtype).name}")
    return out


def squeeze_or_expand_to_same_rank(x1: Any, x2: Any, expand_rank_1: bool = True) -> tuple[Any, Any]:
    """Keras's: where the ranks differ by one and the longer ends in 1, squeeze it (or expand a
    rank-1 partner) so that (B,) labels meet (B, 1) predictions elementwise."""
    r1, r2 = len(ops.shape(x1)), len(ops.shape(x2))
    if r1 == r2 + 1 and ops.shape(x1)[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = ops.expand_dims(x2, -1)
        else:
            x1 = ops.squeeze(x1, axis=-1)
    if r2 == r1 + 1 and ops.shape(x2)[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = ops.expand_dims(x1, -1)
        else:
            x2 = ops.squeeze(x2, axis=-1)
    return x1, x2


def reduce_values(values: Any, reduction: str | None, dtype: Any, sample_weight: Any = None) -> Any:
    """Keras's ``reduce_weighted_values`` with ``fcgpu.ops`` (so it traces; operators on plain
    arrays would be NumPy's, so the ops are called by name): the values (times the
    sample weights, if any) summed, then divided by their number of elements (or by the weights' sum
    for 'mean_with_sample_weight'); 'none' and 0-d values are returned as they are."""
    values = ops.convert_to_tensor(values, dtype)
    if sample_weight is not None:
        weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        values, weight = squeeze_or_expand_to_same_rank(values, weight)
        values = ops.multiply(values, weight)
    shape = ops.shape(values)
    if reduction in (None, "none") or shape in ((), (0,)):
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = ops.sum(weight)
        return ops.where(ops.equal(divisor, 0), ops.zeros_like(total), ops.divide(total, ops.where(ops.equal(divisor, 0), 1, divisor)))
    count = int(np.prod(shape))
    return ops.divide(total, count) if count else ops.zeros_like(total)


def keras_call(loss: OpsLoss, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
    """``loss(y_true, y_pred)`` as Keras computes it: both converted to the loss's dtype, ``call``,
    then the reduction. Backend arrays in, a backend array out (a Tensor when traced)."""
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = compute_dtype(loss, y_pred.dtype)
    y_pred = ops.cast(y_pred, dtype)
    y_true = ops.cast(ops.convert_to_tensor(y_true), dtype)
    return reduce_values(loss.call(y_true, y_pred), loss.reduction, dtype, sample_weight)


def traced_value(loss: OpsLoss, backend: Backend, pred: Array, labels: Array) -> tuple[Scalar, tuple[Tensor, Tensor]]:
    """(the loss of ``pred`` against prepared ``labels``, left on the device; the traced result and
    the traced predictions, which ``traced_grad`` differentiates)."""
    _trainable(loss)
    y_pred = Tensor(pred, backend, requires_grad=True)
    y_true = Tensor(labels, backend)
    out = call_traced(lambda t, p: keras_call(loss, t, p), (y_true, y_pred), f"loss '{loss.name}'")
    if not isinstance(out, Tensor) or not out.requires_grad:
        raise ValueError(not_traced(f"loss '{loss.name}'"))
    if out.shape != ():
        raise ValueError(f"loss '{loss.name}': expected one number from the reduction, got shape {out.shape}")
    return out.value, (out, y_pred)


def traced_grad(traced: tuple[Tensor, Tensor], backend: Backend, out: Array) -> Array:
    """dL/dpred of a ``traced_value`` result, written into ``out`` (pred's shape and dtype)."""
    result, y_pred = traced
    (grad,) = gradients(result, [y_pred])
    if grad is None:
        out[...] = 0
        return out
    return backend.copy(grad, out)
