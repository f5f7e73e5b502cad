"""Flatten and Reshape: layers that change a sample's shape, not its values (Keras's names).

fcgpu's layers compute on flat features (batch, M), so both hand their input on unchanged (no
device operation) and change only the shape a model reports (``summary``, the symbolic tensors of
the functional API). ``Flatten(input_shape=(28, 28))`` as a Sequential's first layer makes the model
take (N, 28, 28) samples, flattened on the host as they are checked.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..backends.base import Array
from ..saving.serialization import register
from .context import INFERENCE, ForwardContext
from .elementwise import ElementwiseLayer
from .input import sample_shape

__all__ = ["Flatten", "Reshape"]


class _ShapeLayer(ElementwiseLayer):
    """A layer whose output is its input (B, N), reported under another sample shape."""

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y = x (B, N): no device operation (a copy only where another layer's output would reach the caller)."""
        x_dev, squeeze = self.start_forward(x)
        return self.passed_on(x_dev, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        return x_dev[0] if squeeze else x_dev

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx = dy (B, N); None when ``input_grad`` is False."""
        dy_dev = self.device_dy(dy)
        return self.gradient(dy_dev) if input_grad else None


@register
class Flatten(_ShapeLayer):
    """(batch, d_1, ..., d_k) -> (batch, d_1 * ... * d_k), as ``keras.layers.Flatten``.

    Args:
        data_format: accepted for Keras's signature ('channels_last' or None).
        input_shape: a sample's shape such as (28, 28): as a Sequential's first layer, its Input.
    """

    flattens = True

    def __init__(self, data_format: str | None = None, dtype: str | None = None, name: str | None = None,
                 input_shape: Sequence[int] | None = None) -> None:
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format: fcgpu flattens 'channels_last' data, got {data_format!r}")
        super().__init__(dtype, name)
        self.declared_input_shape = None if input_shape is None else sample_shape(input_shape, "input_shape")

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        shape = tuple(input_shape)
        dims = shape[1:]
        return (shape[0], None if any(d is None for d in dims) else int(math.prod(dims)))

    def config_entries(self) -> dict[str, Any]:
        return {"input_shape": list(self.declared_input_shape)} if self.declared_input_shape else {}


@register
class Reshape(_ShapeLayer):
    """(batch, *s) -> (batch, *target_shape) with the same number of values; one entry may be -1.

    fcgpu's other layers take flat features, so after a Reshape to more than one dimension only
    layers acting elementwise, a Flatten, or the model's output may follow.
    """

    def __init__(self, target_shape: Sequence[int], dtype: str | None = None, name: str | None = None) -> None:
        dims = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
        if not dims or sum(1 for d in dims if d == -1) > 1 or any(
            isinstance(d, bool) or not isinstance(d, int) or (d < 1 and d != -1) for d in dims
        ):
            raise ValueError(
                f"target_shape: expected a tuple of positive ints (at most one -1) such as (4, 5), got {target_shape!r}"
            )
        super().__init__(dtype, name)
        self.target_shape = dims

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        shape = tuple(input_shape)
        if any(d is None for d in shape[1:]):
            return (shape[0], *self.target_shape)
        size = int(math.prod(shape[1:]))
        known = int(math.prod(d for d in self.target_shape if d != -1))
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"target_shape: {self.target_shape} cannot take {size} values (input shape {shape})")
            return (shape[0], *(size // known if d == -1 else d for d in self.target_shape))
        if known != size:
            raise ValueError(
                f"target_shape: {self.target_shape} has {known} values per sample, the input {size} (shape {shape})"
            )
        return (shape[0], *self.target_shape)

    def config_entries(self) -> dict[str, Any]:
        return {"target_shape": list(self.target_shape)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Reshape":
        config = dict(config)
        config["target_shape"] = tuple(config["target_shape"])
        return super().from_config(config)
