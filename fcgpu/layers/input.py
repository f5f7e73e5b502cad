"""Input: a model's input (Keras's ``keras.Input(shape=(784,))``): the symbolic tensor a functional
graph starts from, or the first entry of a Sequential.

In a Sequential it is not listed in ``model.layers`` or in ``summary()`` (as in Keras 3), but the
model keeps it, builds itself at once (every layer's parameters drawn as they are added, as Keras
does), and writes it into its config. ``Dense(..., input_shape=(784,))`` or ``Dense(...,
input_dim=784)`` as a first layer stands for the same Input. A functional model lists its Inputs
in ``layers`` as Keras lists its InputLayers; they compute nothing.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..saving.serialization import register, register_alias
from .base import Layer
from .elementwise import optional_float_dtype
from .symbolic import KerasTensor

__all__ = ["Input", "InputLayer"]


@register
class InputLayer(KerasTensor, Layer):
    """The shape of the samples a model takes, and optionally their batch size and dtype.

    Args:
        shape: one sample's shape without the batch: (M,) for flat features, or e.g. (28, 28) for
            an image that a ``Flatten`` layer flattens (fcgpu's other layers take flat features).
        batch_size: None (any), or the fixed batch size shown in ``summary()``.
        dtype: None, or 'float32' | 'float64' | 'float16': the dtype a first layer without a dtype
            of its own (Dropout, Activation) takes.
        name: Keras's default 'input_layer'.
    """

    is_input = True
    any_rank = True

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        batch_size: int | None = None,
        dtype: str | None = None,
        name: str | None = None,
        batch_shape: Sequence[int | None] | None = None,
        sparse: bool | None = None,
    ) -> None:
        if sparse:
            raise ValueError("sparse: fcgpu takes dense inputs only")
        if batch_shape is not None:
            if shape is not None or batch_size is not None:
                raise ValueError("batch_shape: give batch_shape, or shape (and batch_size), not both")
            if not isinstance(batch_shape, (tuple, list)) or len(batch_shape) < 2:
                raise ValueError(f"batch_shape: expected (batch_size or None, *sample shape), got {batch_shape!r}")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is None:
            raise ValueError("shape: expected the shape of one sample such as (784,), got None")
        sample = sample_shape(shape, "shape")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size: expected None or a positive int, got {batch_size!r}")
        resolved = optional_float_dtype(dtype)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
        Layer.__init__(self, name)
        self.batch_size = None if batch_size is None else int(batch_size)
        KerasTensor.__init__(self, (self.batch_size, *sample), resolved, self, ())
        self.in_features = self.units = int(math.prod(sample))
        self.record_call([], self)  # Keras: an InputLayer's output is its tensor

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name or "input_layer"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def built(self) -> bool:
        return True

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return self.shape

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "InputLayer",
            "shape": list(self.sample_shape),
            "batch_size": self.batch_size,
            "dtype": None if self.dtype is None else self.dtype.name,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "InputLayer":
        config = dict(config)
        if config.pop("class_name", "InputLayer") not in ("Input", "InputLayer"):
            raise ValueError("config: expected class_name 'InputLayer'")
        shape = config.pop("shape", None)
        return cls(tuple(shape) if isinstance(shape, list) else shape, **config)

    def __repr__(self) -> str:
        return f"InputLayer(shape={self.sample_shape}, name={self.name!r})"


Input = InputLayer  # Keras's keras.Input(shape=...): the input tensor of a functional graph
register_alias("Input", InputLayer)  # the class name in configs written by fcgpu 0.2


def sample_shape(shape: Any, argument: str) -> tuple[int, ...]:
    """One sample's shape: a tuple of positive ints (fcgpu needs every dimension known)."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,) if isinstance(shape, (int, np.integer)) else None
    if (
        dims is None
        or not dims
        or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims)
    ):
        raise ValueError(
            f"{argument}: expected a tuple of positive ints such as (784,) or (28, 28) (one sample, without the "
            f"batch), got {shape!r}"
        )
    return tuple(int(d) for d in dims)
