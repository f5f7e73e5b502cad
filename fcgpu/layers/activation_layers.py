"""Keras's activation layers with arguments: ReLU, LeakyReLU, ELU, PReLU and Softmax.

ReLU(max_value, negative_slope, threshold), LeakyReLU(negative_slope) and ELU(alpha) compute
Keras's ``activations.relu`` / ``leaky_relu`` / ``elu`` with those arguments (kernels/layers.cuh on
CuPy), backward from the kept input. PReLU learns one slope ``alpha`` per feature (a trainable
parameter, zeros at first, as Keras's). Softmax is ``Activation('softmax')`` with Keras's ``axis``
argument: as a model's last layer it hands its logits to a cross-entropy loss as Activation does.
"""
from __future__ import annotations

from typing import Any

from .. import regularizers
from ..backends.base import Array
from ..saving.serialization import register
from .activation import Activation
from .context import INFERENCE, ForwardContext
from .elementwise import ElementwiseLayer
from .variables import VariableLayer, VariableSpec, check_axis, check_number, initializer_entry

__all__ = ["ELU", "LeakyReLU", "PReLU", "ReLU", "Softmax"]


class _KeptInput(ElementwiseLayer):
    """An elementwise layer whose backward reads its input x (kept, a copy where it is the caller's)."""

    def __init__(self, dtype: Any = None, name: str | None = None) -> None:
        super().__init__(dtype, name)
        self._x: Array | None = None

    def release(self) -> None:
        super().release()
        self._x = None

    def apply(self, x: Array, out: Array) -> Array:
        raise NotImplementedError

    def apply_backward(self, x: Array, dy: Array, out: Array) -> Array:
        raise NotImplementedError

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = f(x (B, N)), one device operation; x kept for backward."""
        x_dev, squeeze = self.start_forward(x)
        y = self.apply(x_dev, self._buffers.get(self.backend, "y", x_dev.shape, self.dtype))
        if not ctx.input_owned and self.borrowed(x, x_dev):
            x_dev = self.backend.copy(x_dev, out=self._buffers.get(self.backend, "x", x_dev.shape, self.dtype))
        self._x = x_dev
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        y = self.apply(x_dev, self._buffers.get(self.backend, "y_infer", x_dev.shape, self.dtype))
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N) = dy * f'(x), one device operation; ``input_grad=False``: None."""
        dy_dev = self.device_dy(dy)
        if not input_grad:
            return None
        dx = self.apply_backward(self._x, dy_dev, self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype))
        return self.gradient(dx)


@register
class ReLU(_KeptInput):
    """Keras's ``ReLU``: y = x above ``threshold`` (at most ``max_value``), ``negative_slope`` *
    (x - threshold) below it. max_value: None or >= 0; negative_slope, threshold: >= 0."""

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 dtype: Any = None, name: str | None = None) -> None:
        self.max_value = None if max_value is None else check_number(max_value, "max_value", 0.0)
        self.negative_slope = check_number(negative_slope, "negative_slope", 0.0)
        self.threshold = check_number(threshold, "threshold", 0.0)
        super().__init__(dtype, name)

    def config_entries(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold}

    def apply(self, x: Array, out: Array) -> Array:
        return self.backend.relu_forward(x, self.max_value, self.negative_slope, self.threshold, out)

    def apply_backward(self, x: Array, dy: Array, out: Array) -> Array:
        return self.backend.relu_backward(x, dy, self.max_value, self.negative_slope, self.threshold, out)


@register
class LeakyReLU(ReLU):
    """Keras's ``LeakyReLU``: y = x for x >= 0, else ``negative_slope`` * x (default 0.3, >= 0)."""

    def __init__(self, negative_slope: float = 0.3, dtype: Any = None, name: str | None = None) -> None:
        super().__init__(None, negative_slope, 0.0, dtype, name)

    def config_entries(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


@register
class ELU(_KeptInput):
    """Keras's ``ELU``: y = x for x > 0, else alpha * (exp(x) - 1) (alpha any finite number, default 1)."""

    def __init__(self, alpha: float = 1.0, dtype: Any = None, name: str | None = None) -> None:
        self.alpha = check_number(alpha, "alpha")
        super().__init__(dtype, name)

    def config_entries(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def apply(self, x: Array, out: Array) -> Array:
        return self.backend.elu_forward(x, self.alpha, out)

    def apply_backward(self, x: Array, dy: Array, out: Array) -> Array:
        return self.backend.elu_backward(x, dy, self.alpha, out)


@register
class Softmax(Activation):
    """Keras's ``Softmax(axis=-1)`` over the features of (batch, features) inputs."""

    def __init__(self, axis: Any = -1, dtype: Any = None, name: str | None = None) -> None:
        self.axis = check_axis(axis, "Softmax")
        super().__init__("softmax", dtype, name)

    def config_entries(self) -> dict[str, Any]:
        return {"axis": self.axis}


@register
class PReLU(VariableLayer):
    """Keras's ``PReLU``: y = x for x > 0, else alpha * x, one trainable alpha per feature.

    Args:
        alpha_initializer: Keras's default 'zeros'. alpha_regularizer: as Dense's regularizers.
        alpha_constraint, shared_axes: not supported (None). dtype, name: as BatchNormalization's.
    """

    def __init__(self, alpha_initializer: Any = "zeros", alpha_regularizer: Any = None, alpha_constraint: Any = None,
                 shared_axes: Any = None, dtype: Any = None, name: str | None = None) -> None:
        self.alpha_initializer = initializer_entry(alpha_initializer, "alpha_initializer")
        self.alpha_regularizer = regularizers.get(alpha_regularizer, "alpha_regularizer")
        for value, argument in ((alpha_constraint, "alpha_constraint"), (shared_axes, "shared_axes")):
            if value is not None:
                raise ValueError(f"{argument}: fcgpu's PReLU takes None (one alpha per feature), got {value!r}")
        super().__init__(dtype, name)
        self._x: Array | None = None

    def variable_specs(self) -> list[VariableSpec]:
        return [VariableSpec("alpha", self.alpha_initializer, True, self.alpha_regularizer)]

    def config_entries(self) -> dict[str, Any]:
        return {"alpha_initializer": self.alpha_initializer,
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer)}

    @property
    def alpha(self) -> Array | None:
        return self.variable("alpha")

    def release(self) -> None:
        super().release()
        self._x = None

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        x_dev, squeeze = self.start_forward(x)
        y = self.backend.prelu_forward(x_dev, self.alpha, self._buffers.get(self.backend, "y", x_dev.shape, self.dtype))
        if not ctx.input_owned and self.borrowed(x, x_dev):
            x_dev = self.backend.copy(x_dev, out=self._buffers.get(self.backend, "x", x_dev.shape, self.dtype))
        self._x = x_dev
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        y = self.backend.prelu_forward(x_dev, self.alpha,
                                       self._buffers.get(self.backend, "y_infer", x_dev.shape, self.dtype))
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N) and alpha's gradient, the sum over rows of x * dy where x <= 0."""
        dy_dev = self.device_dy(dy)
        dx = self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype) if input_grad else None
        self.backend.prelu_backward(self._x, dy_dev, self.alpha, dx, self.gradient_buffer("alpha"))
        self.add_regularization_gradients(scale)
        return None if dx is None else self.gradient(dx)
