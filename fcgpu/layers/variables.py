"""The base of layers that keep their input's width and hold per-feature variables (the
normalization layers, PReLU): trainable ones (gamma, beta, alpha) and non-trainable state.

A subclass declares its variables with ``variable_specs()`` in Keras's creation order, which is
the order of ``get_weights``/``set_weights`` and of Keras's weight files. The trainable ones are
``parameters()``: a model lays them in its flat buffers (``adopt_storage``) and the optimizer
updates them as it updates a Dense layer's; the non-trainable ones (moving statistics, adapted
mean and variance) stay arrays of the layer, never seen by an optimizer. The layers compute in
float32 or float64: their statistics would lose too much in float16, so half dtypes and mixed
policies are refused (at construction, or when a model hands the layer a half input).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import mixed_precision
from ..backends import Backend, resolve_backend
from ..backends.base import Array
from ..initializers import get_initializer, serialize as serialize_initializer
from ..backends.validation import float_array
from .elementwise import ElementwiseLayer

__all__ = ["VariableLayer", "VariableSpec", "check_axis", "check_flag", "check_number", "initializer_entry", "refuse_half"]

_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class VariableSpec:
    """One variable: its name ('gamma'), initializer (name or instance), whether it trains, its
    regularizer (an ``fcgpu.regularizers`` object or None), and its shape: (features,), or () for a scalar count (Normalization's)."""

    name: str
    initializer: Any
    trainable: bool = True
    regularizer: Any = None
    scalar: bool = False


def check_flag(value: Any, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected True or False, got {value!r}")
    return bool(value)


def check_number(value: Any, argument: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] ((low, high] with ``low_open``), or a ValueError
    (TypeError for a non-number) naming ``argument``, the range and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a number, got {value!r}")
    v = float(value)
    below = low is not None and (v <= low if low_open else v < low)
    if not np.isfinite(v) or below or (high is not None and v > high):
        lo = "-inf" if low is None else f"{low}"
        raise ValueError(f"{argument}: expected a finite number in {'(' if low_open else '['}{lo}, "
                         f"{'inf' if high is None else high}], got {value!r}")
    return v


def check_axis(axis: Any, layer: str) -> int:
    """Keras's axis=-1 (the features; 1 is the same axis of fcgpu's 2-D inputs), else a ValueError."""
    value = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in (-1, 1):
        raise ValueError(f"axis: {layer} normalizes the features of (batch, features) inputs, axis -1 (or 1); "
                         f"got {axis!r}")
    return -1


class VariableLayer(ElementwiseLayer):
    """A layer y = f(x) of x's shape with per-feature variables (see the module docstring)."""

    def __init__(self, dtype: Any = None, name: str | None = None) -> None:
        refuse_half(dtype, type(self).__name__)
        super().__init__(None if dtype is None else mixed_precision.get_policy(dtype).variable_dtype.name, name)
        self._vars: dict[str, Array] = {}
        self._grads: dict[str, Array | None] = {}
        self._grad_storage: dict[str, Array] = {}

    # -- what a subclass declares ------------------------------------------------------------
    def variable_specs(self) -> list[VariableSpec]:
        raise NotImplementedError

    # -- dtype ---------------------------------------------------------------------------------
    def take_input_dtype(self, dtype: np.dtype) -> None:
        if np.dtype(dtype).name not in _DTYPES:
            raise TypeError(
                f"layer '{self.name}': {type(self).__name__} computes in float32 or float64, but the layer before "
                f"it gives {np.dtype(dtype).name} (a half or mixed policy); fcgpu does not support it in half precision"
            )
        before = self.dtype
        super().take_input_dtype(dtype)
        if self.built and self.dtype != before:  # cast the variables to the dtype the model computes in
            for key, value in self._vars.items():
                self._vars[key] = value.astype(self.dtype)
            self._grads = {k: None for k in self._grads}
            self._grad_storage = {}
            self._buffers.clear()

    # -- build and variables -----------------------------------------------------------------
    def build(self, input_shape: int | Sequence[int | None]) -> None:
        before = self.in_features
        super().build(input_shape)
        if before == self.in_features and self._vars:
            return
        n = self.in_features
        values = {}
        for spec in self.variable_specs():
            if spec.scalar:
                values[spec.name] = self.backend.from_numpy(np.zeros((), np.int64))
                continue
            init = get_initializer(spec.initializer, f"{spec.name}_initializer")
            values[spec.name] = self.backend.from_numpy(np.asarray(init((n,)), dtype=self.dtype))
        self._vars = values
        self._grads = {spec.name: None for spec in self.variable_specs() if spec.trainable}
        self._grad_storage = {}

    def _specs(self) -> list[VariableSpec]:
        return self.variable_specs() if self.built else []

    def variable(self, key: str) -> Array | None:
        """The live array of variable ``key`` ('gamma', 'moving_mean', ...), None where absent."""
        return self._vars.get(key)

    def variables(self) -> list[tuple[str, Array, bool]]:
        return [(f"{self.name}/{s.name}", self._vars[s.name], s.trainable and self.trainable) for s in self._specs()]

    def parameters(self) -> list[tuple[str, Array, Array | None]]:
        return [(f"{self.name}/{s.name}", self._vars[s.name], self._grads.get(s.name)) for s in self._specs()
                if s.trainable and self.trainable]

    def gradient_buffer(self, key: str) -> Array:
        """Where backward writes the gradient of ``key``: the model's flat view, or the layer's own."""
        grad = self._grads.get(key)
        if grad is None:
            grad = self._grad_storage.get(key)
            if grad is None:
                grad = self.backend.empty(self._vars[key].shape, self.dtype)
            self._grads[key] = grad
        return grad

    def add_regularization_gradients(self, scale: Any = 1.0) -> None:
        """Add each regularized variable's penalty gradient, times ``scale`` (the factor the loss
        gradient carries, backward's argument), into its gradient."""
        for spec in self.variable_specs():
            regularizer = spec.regularizer
            if spec.trainable and self.trainable and regularizer is not None and regularizer.active and self._grads.get(spec.name) is not None:
                regularizer.add_gradient(self.backend, self._vars[spec.name], self._grads[spec.name], scale)

    def regularization_loss(self, scale: float = 1.0) -> Any:
        total = None
        for spec in self._specs():
            regularizer = spec.regularizer
            if spec.trainable and self.trainable and regularizer is not None and regularizer.active:
                value = regularizer.penalty(self.backend, self._vars[spec.name], scale)
                total = value if total is None else total + value
        return total

    def adopt_storage(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Keep the trainable variables (and gradients) in the given views of a model's flat buffers."""
        for spec in self._specs():
            name = f"{self.name}/{spec.name}"
            if name not in params:
                continue
            params[name][...] = self._vars[spec.name]
            self._vars[spec.name] = params[name]
            if self._grads.get(spec.name) is not None:
                grads[name][...] = self._grads[spec.name]
                self._grads[spec.name] = grads[name]
        self._grad_storage = {k.rpartition("/")[2]: v for k, v in grads.items()}

    def count_params(self) -> int:
        super().count_params()
        return sum(int(np.prod(v.shape)) for _, v, _ in self.variables())

    def weight_count(self) -> int:
        return len(self.variable_specs())

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(self.backend.to_numpy(v), copy=True) for _, v, _ in self.variables()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        if not isinstance(weights, (list, tuple)) or len(weights) != self.weight_count():
            count = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            names = [s.name for s in self.variable_specs()]
            raise ValueError(f"weights: expected a list of {len(names)} arrays {names} for layer '{self.name}', got {count}")
        self.assign_weights(self.validate_weights(weights))

    def validate_weights(self, weights: Sequence[np.ndarray], first: int = 0) -> list[np.ndarray]:
        """The arrays checked (shape (features,), or () for a count) and cast, changing nothing."""
        checked: list[np.ndarray] = []
        width = self.in_features
        for k, (spec, value) in enumerate(zip(self.variable_specs(), weights)):
            what = f"weights[{first + k}] ({spec.name})"
            if spec.scalar:
                a = np.asarray(value)
                if a.shape != () or a.dtype.kind not in "iuf" or not np.isfinite(a) or a < 0 or a != np.round(a):
                    raise ValueError(f"{what}: expected a non-negative integer count of shape () for layer "
                                     f"'{self.name}', got {value!r}")
                checked.append(a.astype(np.int64))
                continue
            a = float_array(value, what, self.dtype, numpy_only=True, copy=True)
            width = a.shape[0] if width is None and a.ndim == 1 else width
            if a.shape != (width,):
                raise ValueError(f"{what}: expected shape ({width if width else 'features'},) for layer "
                                 f"'{self.name}', got {a.shape}")
            checked.append(a)
        return checked

    def assign_weights(self, checked: list[np.ndarray]) -> None:
        if not self.built:
            widths = [a.shape[0] for a in checked if a.ndim == 1]
            if not widths:
                raise ValueError(f"weights: layer '{self.name}' is not built; build it first")
            self.build(widths[0])
        for spec, value in zip(self.variable_specs(), checked):
            self._vars[spec.name][...] = self.backend.from_numpy(value)
        self.weights_changed()

    def weights_changed(self) -> None:
        """Called after ``set_weights`` (a subclass refreshes what it derives from its variables)."""

    def to(self, backend: str | Backend) -> "VariableLayer":
        target, _ = resolve_backend(backend)
        if self.built and target is not self.backend:
            source = self.backend
            self._vars = {k: target.from_numpy(source.to_numpy(v)) for k, v in self._vars.items()}
            self._grads = {k: None if v is None else target.from_numpy(source.to_numpy(v)) for k, v in self._grads.items()}
            self._grad_storage = {}
        super().to(target)
        self.weights_changed()
        return self



def refuse_half(dtype: Any, layer: str) -> None:
    """A half dtype or mixed policy (given, or the global one) refused with the reason."""
    try:
        policy = mixed_precision.get_policy(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"dtype: expected None, 'float32' or 'float64' for {layer}, got {dtype!r}") from None
    if policy.mixed or policy.compute_dtype.name not in _DTYPES:
        where = "the global policy is" if dtype is None else "dtype is"
        raise TypeError(
            f"dtype: {layer} computes in float32 or float64, but {where} {policy.name!r}; fcgpu does not support "
            f"{layer} in half precision or under a mixed policy (use 'float32')"
        )


def initializer_entry(value: Any, argument: str) -> Any:
    """An initializer argument checked (ValueError naming ``argument``) and as ``get_config`` writes it."""
    get_initializer(value, argument)
    return serialize_initializer(value)
