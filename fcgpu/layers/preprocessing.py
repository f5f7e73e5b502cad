"""Normalization: Keras's preprocessing layer y = (x - mean) / max(sqrt(variance), 1e-7).

The mean and variance are given (``mean=``, ``variance=``: then they are constants of the layer,
no weights, as in Keras) or learned by ``adapt(data)`` from arrays: then they are the
non-trainable weights mean, variance and count (Keras's three, in its order; count stays 0 as
Keras leaves it after adapting arrays). ``invert=True`` maps normalized values back: mean + x *
max(sqrt(variance), 1e-7). No parameter trains; backward passes dy / denominator on.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends.base import Array
from ..saving.serialization import register
from ..backends.validation import float_array
from .context import INFERENCE, ForwardContext
from .variables import VariableLayer, VariableSpec, check_axis, check_flag

__all__ = ["Normalization"]


def _statistic(value: Any, argument: str) -> np.ndarray:
    a = float_array(np.asarray(value), argument, np.float64, numpy_only=True, copy=True)
    if a.ndim > 1:
        raise ValueError(f"{argument}: expected a number or a 1-D array (one value per feature), got shape {a.shape}")
    return a


@register
class Normalization(VariableLayer):
    """Keras's ``Normalization`` of (batch, features) inputs over the batch (axis=-1).

    Args:
        axis: -1 (or 1): a mean and variance per feature.
        mean, variance: both None (call ``adapt`` or load weights), or both given: numbers or
            arrays (features,), the variance >= 0.
        invert: map normalized values back instead.
        dtype, name: as BatchNormalization's.
    """

    def __init__(self, axis: Any = -1, mean: Any = None, variance: Any = None, invert: bool = False,
                 dtype: Any = None, name: str | None = None) -> None:
        # axis=None (Keras): one mean and one variance over every value, as for a single feature
        self.axis = None if axis is None else check_axis(axis, "Normalization")
        if (mean is None) != (variance is None):
            raise ValueError(f"mean and variance: give both or neither, got mean={mean!r} and variance={variance!r}")
        self.input_mean = self.input_variance = None
        if mean is not None:
            self.input_mean, self.input_variance = _statistic(mean, "mean"), _statistic(variance, "variance")
            if self.input_mean.shape != self.input_variance.shape:
                raise ValueError(f"mean and variance: expected the same shape, got {self.input_mean.shape} and "
                                 f"{self.input_variance.shape}")
            if np.any(self.input_variance < 0):
                raise ValueError(f"variance: expected values >= 0, got {variance!r}")
        self.invert = check_flag(invert, "invert")
        super().__init__(dtype, name)
        self._constants: tuple[Array, Array] | None = None  # (mean, denominator) as forward reads them

    def variable_specs(self) -> list[VariableSpec]:
        if self.input_mean is not None:
            return []
        return [VariableSpec("mean", "zeros", False), VariableSpec("variance", "ones", False),
                VariableSpec("count", "zeros", False, scalar=True)]

    def config_entries(self) -> dict[str, Any]:
        given = self.input_mean is not None
        return {"axis": self.axis, "invert": self.invert,
                "mean": self.input_mean.tolist() if given else None,
                "variance": self.input_variance.tolist() if given else None}

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        super().build(input_shape)
        if self.input_mean is not None and self.input_mean.shape not in ((), (self.in_features,)):
            raise ValueError(f"mean: expected a number or {self.in_features} values (one per feature), got shape "
                             f"{self.input_mean.shape}")
        self.weights_changed()

    def weights_changed(self) -> None:
        if not self.built:
            return
        b, n = self.backend, self.in_features
        if self.input_mean is not None:
            mean = b.from_numpy(np.broadcast_to(self.input_mean, (n,)).astype(self.dtype))
            variance = b.from_numpy(np.broadcast_to(self.input_variance, (n,)).astype(self.dtype))
        else:
            mean, variance = self.variable("mean"), self.variable("variance")
        self._constants = (mean, b.normalize_denominator(variance, b.empty((n,), self.dtype)))

    def take_input_dtype(self, dtype: np.dtype) -> None:
        super().take_input_dtype(dtype)
        self.weights_changed()

    @property
    def mean(self) -> Array | None:
        """The mean subtracted, shape (1, features) as Keras's ``layer.mean`` (None before build)."""
        return None if self._constants is None else self._constants[0].reshape(1, -1)

    @property
    def variance(self) -> Array | None:
        """The variance divided by (its square root), shape (1, features) as Keras's ``layer.variance``."""
        if not self.built:
            return None
        if self.input_variance is not None:
            return self.backend.from_numpy(np.broadcast_to(self.input_variance, (1, self.in_features)).astype(self.dtype))
        return self.variable("variance").reshape(1, -1)

    def adapt(self, data: Any) -> None:
        """The mean and (biased) variance of each feature of ``data`` (samples, features): an array, or
        a list of such batches, as Keras's ``adapt``; builds the layer from their width."""
        if isinstance(data, (list, tuple)) and data and all(np.ndim(d) == 2 for d in data):
            data = np.concatenate([np.asarray(d) for d in data])
        x = float_array(np.asarray(data), "data", np.float64, numpy_only=True)
        if x.ndim == 1:  # Keras: a 1-D array is one feature per sample
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"data: expected a non-empty array (samples, features), got shape {x.shape}")
        if self.built and x.shape[1] != self.in_features:
            raise ValueError(f"data: expected {self.in_features} features (the layer is built for them), got shape {x.shape}")
        if self.input_mean is not None:
            raise ValueError("adapt: the layer was given mean and variance; make it without them to adapt it")
        if not self.built:
            self.build(x.shape[1])
        axis = None if self.axis is None else 0
        mean = np.broadcast_to(x.mean(axis=axis), (x.shape[1],))
        variance = np.broadcast_to(x.var(axis=axis), (x.shape[1],))
        self.variable("mean")[...] = self.backend.from_numpy(mean.astype(self.dtype))
        self.variable("variance")[...] = self.backend.from_numpy(variance.astype(self.dtype))
        self.weights_changed()

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        x_dev, squeeze = self.start_forward(x)
        y = self._apply(x_dev, "y")
        return self.output(y, squeeze, ctx)

    def _apply(self, x_dev: Array, key: str) -> Array:
        mean, denom = self._constants
        out = self._buffers.get(self.backend, key, x_dev.shape, self.dtype)
        return self.backend.normalize_forward(x_dev, mean, denom, self.invert, out)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        y = self._apply(x_dev, "y_infer")
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx = dy / denominator (dy * denominator inverted); nothing trains."""
        dy_dev = self.device_dy(dy)
        if not input_grad:
            return None
        dx = self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype)
        return self.gradient(self.backend.normalize_backward(dy_dev, self._constants[1], self.invert, dx))
