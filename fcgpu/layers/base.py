"""What every layer shares: naming, reusable output buffers, and the protocol the model uses.

The model drives its layers only through the methods of ``Layer`` below (public names, so no
object reaches into another's private state):

- ``build(input_shape)`` / ``built`` / ``in_features`` / ``units`` / ``dtype`` / ``backend``;
- ``forward(x)`` and ``backward(dy, input_grad=...)``, and ``release()`` which drops what the last
  forward kept for backward, so that the next forward may write into the same buffers;
- ``parameters()`` [(name, parameter, gradient)], ``validate_weights`` then ``assign_weights``
  (the model checks every layer's weights before it changes any), ``adopt_storage`` (parameters
  and gradients become views of the model's flat buffers, ``fcgpu.params``);
- ``get_config()`` / ``from_config(config)``, symmetric, and ``to(backend)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends import Backend
from ..backends.base import Array
from ..buffers import Buffers

__all__ = ["Buffers", "Layer"]


class Layer:
    """Base class of fcgpu's layers: a name (assigned by the model when left None) and the protocol."""

    in_features: int | None
    units: int
    dtype: np.dtype
    backend: Backend | None

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name: expected a non-empty string without '/', got {name!r}")
        self._name = name

    # -- identity ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name or type(self).__name__.lower()

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def name_is_set(self) -> bool:
        """Whether the layer was given a name (else the model names it on ``add``)."""
        return self._name is not None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        """The layer ``get_config()`` describes (unbuilt); the inverse of ``get_config``."""
        config = dict(config)
        if config.pop("class_name", cls.__name__) != cls.__name__:
            raise ValueError(f"config: expected class_name {cls.__name__!r}")
        return cls(**config)

    # -- the model's protocol (see the module docstring) ------------------------
    @property
    def built(self) -> bool:
        raise NotImplementedError

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        raise NotImplementedError

    def forward(
        self,
        x: Any,
        *,
        input_owned: bool = False,
        output_private: bool = False,
        logits: bool = False,
        training: bool = False,
    ) -> Array:
        """y from x, keeping what backward needs (see ``Dense.forward`` for the keywords)."""
        raise NotImplementedError

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """y from x, keeping nothing (inference)."""
        raise NotImplementedError

    def backward(self, dy: Any, *, input_grad: bool = True) -> Array | None:
        raise NotImplementedError

    def release(self) -> None:
        """Drop the references the last forward kept for backward."""

    def parameters(self) -> list[tuple[str, Array, Array | None]]:
        return []

    def count_params(self) -> int:
        return 0

    def weight_count(self) -> int:
        """How many arrays ``get_weights`` returns (and ``set_weights`` takes)."""
        return 0

    def get_weights(self) -> list[np.ndarray]:
        return []

    def adopt_storage(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Move the parameters into the given views (by name) of a model's flat buffers."""

    def validate_weights(self, weights: Sequence[np.ndarray], first: int = 0) -> Any:
        """``weights`` checked and cast, changing nothing; ``first`` is their index in the caller's list."""
        return None

    def assign_weights(self, checked: Any) -> None:
        """Load what ``validate_weights`` returned."""

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "name": self.name}

    def to(self, backend: str | Backend) -> "Layer":
        return self

    def __call__(self, x: Any) -> Array:
        return self.forward(x)
