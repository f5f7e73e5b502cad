"""The base of layers without parameters whose output has their input's shape (Dropout, Activation).

Such a layer's width is its input's (``units`` = ``in_features``, set at build); it has no
parameters, so a model's flat buffers and saved files simply hold nothing of it; its dtype, unless
given, is that of the layer before it in a model (``take_input_dtype``), float32 on its own.

What forward returns follows Dense's rule: a backward never reads an array the caller holds, and
the caller never gets an array that a backward reads. A layer that passes its input on unchanged
therefore returns that very input, except where the input is another layer's output (the model
says ``ctx.input_owned``) and the caller would get it (no ``ctx.output_private``): then a copy.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends import Backend, get_backend, resolve_backend
from ..backends.base import Array
from ..backends.validation import input_features
from .base import Buffers, Layer
from .context import ForwardContext
from .dense import FLOAT_DTYPES

__all__ = ["ElementwiseLayer", "optional_float_dtype"]


class ElementwiseLayer(Layer):
    """A layer y = f(x) of x's shape, without parameters; subclasses give forward, infer, backward."""

    any_rank = True

    def __init__(self, dtype: str | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self._dtype_given = optional_float_dtype(dtype)
        self._dtype_taken: np.dtype | None = None
        self.in_features: int | None = None
        self.backend: Backend | None = None
        self._buffers = Buffers()
        self._out_shape: tuple[int, ...] | None = None  # the last forward's (B, N); None: no forward
        self._squeeze = False

    @property
    def dtype(self) -> np.dtype:  # type: ignore[override]
        if self._dtype_given is not None:
            return self._dtype_given
        return self._dtype_taken if self._dtype_taken is not None else np.dtype("float32")

    @property
    def units(self) -> int | None:  # type: ignore[override]
        """The output width: the input's, once built."""
        return self.in_features

    @property
    def built(self) -> bool:
        return self.in_features is not None

    def take_input_dtype(self, dtype: np.dtype) -> None:
        if self._dtype_given is None:
            self._dtype_taken = np.dtype(dtype)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """Take the input width (an int or a shape like (None, 512)) and the active backend."""
        features = input_features(input_shape)
        if self.built and self.in_features == features:
            return
        self.backend, self.in_features = get_backend(), features
        self.release()
        self._buffers.clear()

    def count_params(self) -> int:
        if not self.built:
            raise RuntimeError(f"layer '{self.name}' is not built: call build(in_features) or pass it an input first")
        return 0

    def config_entries(self) -> dict[str, Any]:
        """The subclass's constructor arguments for ``get_config`` (besides dtype and name)."""
        return {}

    def get_config(self) -> dict[str, Any]:
        dtype = None if self._dtype_given is None else self._dtype_given.name
        frozen = {"trainable": False} if not self.trainable else {}
        return {"class_name": type(self).__name__, **self.config_entries(), "dtype": dtype, "name": self.name, **frozen}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config_entries().items())
        return f"{type(self).__name__}({args}, name={self.name!r})"

    def to(self, backend: str | Backend) -> "ElementwiseLayer":
        """Run on another backend ('numpy' | 'cupy' | 'auto'): nothing to move but the buffers."""
        target, _ = resolve_backend(backend)
        self.backend = target if self.built else None
        self.release()
        self._buffers.clear()
        return self

    def release(self) -> None:
        self._out_shape = None

    # -- what forward and backward share --------------------------------------------
    def start_forward(self, x: Any) -> tuple[Array, bool]:
        """Drop what the last forward kept, then x as (B, N) and whether it was 1-D (``device_input``),
        its shape kept as the shape backward's dy must have."""
        self.release()
        x_dev, squeeze = self.device_input(x)
        self._out_shape, self._squeeze = tuple(x_dev.shape), squeeze
        return x_dev, squeeze

    def passed_on(self, x: Array, squeeze: bool, ctx: ForwardContext) -> Array:
        """x (B, N) handed on unchanged (no device operation), or a copy where x is another layer's
        output that the caller would get (see the module docstring)."""
        if ctx.input_owned and not ctx.output_private:
            x = self.backend.copy(x, out=self._buffers.get(self.backend, "y_out", x.shape, self.dtype))
        return x[0] if squeeze else x

    def output(self, y: Array, squeeze: bool, ctx: ForwardContext) -> Array:
        """The layer's own y (B, N) as forward returns it: a copy unless ``ctx.output_private``."""
        if not ctx.output_private:
            y = self.backend.copy(y, out=self._buffers.get(self.backend, "y_out", y.shape, self.dtype))
        return y[0] if squeeze else y

    def device_dy(self, dy: Any) -> Array:
        """dy as a (B, N) array of the layer's backend, checked against the last forward's output."""
        if self._out_shape is None:
            raise RuntimeError(f"backward called before forward on layer '{self.name}': run forward(x) first")
        expected = (self._out_shape[1],) if self._squeeze else self._out_shape
        shape = tuple(getattr(dy, "shape", None) or np.shape(dy))
        if shape != expected:
            raise ValueError(
                f"dy: expected shape {expected} (the shape of the last forward output) for layer "
                f"'{self.name}', got {shape}"
            )
        dy = self.backend.asarray(dy, self.dtype, "dy")
        return dy if self._squeeze is False else dy.reshape(self._out_shape)

    def gradient(self, dx: Array) -> Array:
        """dx (B, N) as backward returns it: (N,) after a 1-D forward."""
        return dx[0] if self._squeeze else dx


def optional_float_dtype(dtype: Any) -> np.dtype | None:
    """None, or ``dtype`` checked to be one of the layers' float dtypes."""
    if dtype is None:
        return None
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected None or one of {list(FLOAT_DTYPES)}, got {dtype!r}")
    return resolved
