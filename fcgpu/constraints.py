"""Weight constraints with Keras 3's formulas, names and defaults: MaxNorm, NonNeg, UnitNorm, MinMaxNorm.

A constraint given to a layer (``Dense(kernel_constraint=..., bias_constraint=...)``) projects
the weight after every optimizer update, as Keras does (``BaseOptimizer.apply``: ``variable.assign(
variable.constraint(variable))``): the optimizer applies it in place where the weight lives, right
after its fused update, and writes a mixed-precision layer's half copy again. Under loss scaling
a skipped step leaves the weight as it was (Keras applies no constraint on a skipped step): the
projection is selected on the device by the scaler's state, with no host read.

Identifiers: 'max_norm', 'non_neg', 'unit_norm', 'min_max_norm' (and the class names), a
``{"class_name": ..., "config": {...}}`` dict (``serialize``'s), an instance, or None. ``axis`` is
the axis (or list of axes) the norms are taken over: 0 for a Dense kernel (inputs, units) keeps
each unit's incoming weight vector in bounds.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backends.base import Array
from .saving.config_objects import ConfigObject

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "get", "serialize", "deserialize", "EPSILON",
           "bound_constraints"]

EPSILON = 1e-7  # keras.backend.epsilon(), added to the norms


def _number(value: Any, argument: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a number, got {value!r}")
    if not (low <= float(value) < math.inf):
        raise ValueError(f"{argument}: expected a finite number >= {low}, got {value!r}")
    return float(value)


def _axis(axis: Any) -> int | list[int]:
    if isinstance(axis, (list, tuple)) and axis and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axis):
        return [int(a) for a in axis]
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return int(axis)
    raise TypeError(f"axis: expected an int or a list of ints, got {axis!r}")


class Constraint(ConfigObject):
    """The base: ``project(xp, w)`` returns the projected weight (a new array of w's module ``xp``);
    calling the constraint on an array gives it as NumPy, as Keras's ``constraint(w)``."""

    def get_config(self) -> dict[str, Any]:
        return {}

    def project(self, xp: Any, w: Array) -> Array:
        return w

    def __call__(self, w: Any) -> np.ndarray:
        return self.project(np, np.asarray(w))

    def apply(self, backend: Any, w: Array, half: Array | None = None, guard: Array | None = None) -> None:
        """Project ``w`` in place where it lives; ``half``: its half copy, written again from it;
        ``guard``: the loss scaler's device state: where it flags a skipped step, nothing changes."""
        xp = backend.xp
        new = self.project(xp, w)
        if guard is not None:
            new = xp.where(guard[backend.LS_SKIP:backend.LS_SKIP + 1] != 0.0, w, new)
        w[...] = new
        if half is not None:
            half[...] = w.astype(half.dtype)


def _norms(xp: Any, w: Array, axis: int | list[int]) -> Array:
    return xp.sqrt(xp.sum(xp.square(w), axis=tuple(axis) if isinstance(axis, list) else axis, keepdims=True))


class MaxNorm(Constraint):
    """w * clip(||w||, 0, max_value) / (epsilon + ||w||), the norms over ``axis``."""

    def __init__(self, max_value: float = 2, axis: Any = 0) -> None:
        self.max_value = _number(max_value, "max_value")
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}

    def project(self, xp: Any, w: Array) -> Array:
        norms = _norms(xp, w, self.axis)
        desired = xp.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))


class NonNeg(Constraint):
    """max(w, 0)."""

    def project(self, xp: Any, w: Array) -> Array:
        return xp.maximum(w, 0)


class UnitNorm(Constraint):
    """w / (epsilon + ||w||), the norms over ``axis``."""

    def __init__(self, axis: Any = 0) -> None:
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def project(self, xp: Any, w: Array) -> Array:
        return w / (EPSILON + _norms(xp, w, self.axis))


class MinMaxNorm(Constraint):
    """w * (rate * clip(||w||, min_value, max_value) + (1 - rate) * ||w||) / (epsilon + ||w||)."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Any = 0) -> None:
        self.min_value = _number(min_value, "min_value")
        self.max_value = _number(max_value, "max_value")
        if self.max_value < self.min_value:
            raise ValueError(f"max_value: expected a value >= min_value ({self.min_value}), got {max_value!r}")
        self.rate = _number(rate, "rate")
        self.axis = _axis(axis)

    def get_config(self) -> dict[str, Any]:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}

    def project(self, xp: Any, w: Array) -> Array:
        norms = _norms(xp, w, self.axis)
        desired = self.rate * xp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


def bound_constraints(entries: Any, half_copies: Any) -> list[tuple[Constraint, Any, Array, Array | None]]:
    """(constraint, backend, parameter, half copy or None) for each (layer, name, parameter) of
    ``entries`` whose layer constrains that parameter (``layer.weight_constraints()``);
    ``half_copies(layer)``: the layer's half copies by parameter name."""
    bound = []
    for layer, name, param in entries:
        constraints = getattr(layer, "weight_constraints", None)
        constraint = constraints().get(name) if callable(constraints) else None
        if constraint is not None:
            bound.append((constraint, layer.backend, param, half_copies(layer).get(name)))
    return bound


_CLASSES: dict[str, type[Constraint]] = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
                                         "MinMaxNorm": MinMaxNorm}
_STRINGS: dict[str, type[Constraint]] = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
                                         "min_max_norm": MinMaxNorm}


def serialize(constraint: Constraint | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": constraint.get_config()}`` (JSON-ready), None for None."""
    if constraint is None:
        return None
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}


def deserialize(config: dict[str, Any], argument: str = "constraint") -> Constraint:
    """The constraint ``serialize`` described."""
    cls = _CLASSES.get(config.get("class_name"))  # type: ignore[arg-type]
    if cls is None or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"{argument}: unknown constraint config {config!r}; known classes: {sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config", {})))


def get(identifier: Any, argument: str = "constraint") -> Constraint | None:
    """A constraint (or None) from None, a name ('max_norm', 'non_neg', 'unit_norm', 'min_max_norm'
    or a class name), a config dict or an instance."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, argument)
    if isinstance(identifier, str) and (identifier in _STRINGS or identifier in _CLASSES):
        return {**_STRINGS, **_CLASSES}[identifier]()
    raise ValueError(
        f"{argument}: expected None, one of {sorted(_STRINGS)}, a constraint config or an "
        f"fcgpu.constraints.Constraint (MaxNorm, NonNeg, UnitNorm, MinMaxNorm), got {identifier!r}"
    )
