"""Input: the input a Sequential takes, given as its first entry (Keras's ``keras.Input(shape=(784,))``).

Not a layer: as in Keras 3 it is not listed in ``model.layers`` or in ``summary()``, but the model
keeps it, builds itself at once (every layer's parameters drawn as they are added, as Keras does),
and writes it into its config. ``Dense(..., input_shape=(784,))`` or ``Dense(..., input_dim=784)``
as a first layer stands for the same Input.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..serialization import register
from .base import declared_input
from .elementwise import optional_float_dtype

__all__ = ["Input"]


@register
class Input:
    """The shape (features,) of the samples a model takes, and optionally their batch size and dtype.

    Args:
        shape: (M,), one sample's shape without the batch; fcgpu's layers take flat features.
        batch_size: None (any), or the fixed batch size shown in ``summary()``.
        dtype: None, or 'float32' | 'float64' | 'float16': the dtype a first layer without a dtype
            of its own (Dropout, Activation) takes.
        name: Keras's default 'input_layer'.
    """

    def __init__(
        self,
        shape: Sequence[int] | None = None,
        batch_size: int | None = None,
        dtype: str | None = None,
        name: str | None = None,
    ) -> None:
        if shape is None:
            raise ValueError("shape: expected the shape of one sample such as (784,), got None")
        features = declared_input(shape, argument="shape")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
        ):
            raise ValueError(f"batch_size: expected None or a positive int, got {batch_size!r}")
        resolved = optional_float_dtype(dtype)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        self.features: int = features[0]
        self.batch_size = None if batch_size is None else int(batch_size)
        self.dtype = resolved
        self.name = name or "input_layer"

    @property
    def shape(self) -> tuple[int | None, int]:
        """(batch_size, features), as Keras's symbolic input: (None, 784)."""
        return (self.batch_size, self.features)

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "Input",
            "shape": [self.features],
            "batch_size": self.batch_size,
            "dtype": None if self.dtype is None else self.dtype.name,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Input":
        config = dict(config)
        if config.pop("class_name", "Input") != "Input":
            raise ValueError("config: expected class_name 'Input'")
        shape = config.pop("shape", None)
        return cls(tuple(shape) if isinstance(shape, list) else shape, **config)

    def __repr__(self) -> str:
        return f"Input(shape=({self.features},), name={self.name!r})"
