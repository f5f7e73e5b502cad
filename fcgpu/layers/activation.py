"""Activation: one entry of the activation table applied as a layer of its own (Keras's ``Activation``).

y = act(x) elementwise (a row activation such as softmax: per row), through the same backend
methods and kernels a Dense layer's activation uses (``bias_act_forward`` without a bias,
``act_backward``); no parameters. As the last layer it stands for a Dense layer with that
activation: a forward with ``ctx.logits`` hands x on unchanged, so a loss that fuses with the activation
(softmax or sigmoid cross-entropy) takes x as its logits, as after ``Dense(activation=...)``.
"""
from __future__ import annotations

from typing import Any

from ..activations.table import get_activation
from ..backends.base import Array
from ..saving.serialization import register
from .context import INFERENCE, ForwardContext
from .elementwise import ElementwiseLayer

__all__ = ["Activation"]


@register
class Activation(ElementwiseLayer):
    """Applies ``activation`` (a name of ``fcgpu.activations``: 'relu', 'softmax', ...; None: linear).

    Shapes: x (B, N) or (N,) -> y of the same shape.
    """

    def __init__(self, activation: str | None, dtype: str | None = None, name: str | None = None) -> None:
        entry = get_activation(activation)
        super().__init__(dtype, name)
        self.activation = entry
        self._kept: Array | None = None  # what backward reads: y, or x for an entry with backward_from "z"
        self._act = entry.name  # what the last forward applied (linear when it gave logits)

    def config_entries(self) -> dict[str, Any]:
        return {"activation": self.activation.name}

    def release(self) -> None:
        super().release()
        self._kept = None

    # -- computation -------------------------------------------------------------
    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = act(x (B, N)), one device operation; ``ctx.logits`` (or 'linear'): x itself.

        The ownership flags as in Dense.forward: the caller gets a copy of y, which
        backward reads, unless the model says nobody else sees it.
        """
        x_dev, squeeze = self.start_forward(x)
        self._act = "linear" if ctx.logits else self.activation.name
        if self._act == "linear":
            return self.passed_on(x_dev, squeeze, ctx)
        backend = self.backend
        y = self._buffers.get(backend, "y", x_dev.shape, self.dtype)
        backend.bias_act_forward(x_dev, None, self._act, out=y)
        if self.activation.backward_from == "z":
            # Backward reads x: keep the layer's own copy where x is the caller's array.
            if not ctx.input_owned and self.borrowed(x, x_dev):
                x_dev = backend.copy(x_dev, out=self._buffers.get(backend, "x", x_dev.shape, self.dtype))
            self._kept = x_dev
        else:
            self._kept = y
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """forward keeping nothing for backward (predict, evaluate, validation)."""
        x_dev, squeeze = self.device_input(x)
        if logits or self.activation.name == "linear":
            return x_dev[0] if squeeze else x_dev
        y = self._buffers.get(self.backend, "y_infer", x_dev.shape, self.dtype)
        self.backend.bias_act_forward(x_dev, None, self.activation.name, out=y)
        return y[0] if squeeze else y

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N) = dy * act'(x), from what forward kept (one device operation); dy itself after a
        linear forward. ``input_grad=False``: None (the layer has nothing else to compute)."""
        dy_dev = self.device_dy(dy)
        if not input_grad:
            return None
        if self._act == "linear":
            return self.gradient(dy_dev)
        dx = self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype)
        self.backend.act_backward(self._kept, dy_dev, self._act, out=dx)
        return self.gradient(dx)
