"""Weight regularizers with Keras 3's penalties, names and defaults: L1, L2, L1L2.

A regularizer adds ``l1 * sum|w| + l2 * sum w**2`` to the loss for a layer parameter it is given
to (``Dense(kernel_regularizer=..., bias_regularizer=...)``). The layer adds the penalty's
gradient ``2 l2 w + l1 sign(w)`` to the parameter's gradient in its backward pass (one backend
call, ``l1l2_grad``), and the trainer adds the penalty itself, computed where the parameter lives
(``l1l2_penalty``), to the loss it reports. Identifiers: 'l1' (l1=0.01), 'l2' (l2=0.01),
'l1_l2' (l1=0.01 and l2=0.01, the defaults Keras documents for the string), a
``{"class_name": ..., "config": {...}}`` dict (``serialize``'s), an instance, or None.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backends import Backend, to_numpy
from .backends.base import Array, Scalar
from .saving.config_objects import ConfigObject

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize", "deserialize"]


def _factor(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a non-negative number, got {value!r}")
    value = float(value)
    if not (0.0 <= value < math.inf):
        raise ValueError(f"{argument}: expected a finite number >= 0, got {value!r}")
    return value


class Regularizer(ConfigObject):
    """A penalty l1 * sum|w| + l2 * sum w**2 (the subclasses fix which factors they take)."""

    l1: float = 0.0
    l2: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any factor is non-zero (a zero penalty costs nothing in training)."""
        return bool(self.l1 or self.l2)

    def __call__(self, x: Any) -> float:
        """The penalty of an array of any backend (or host data), in float64."""
        w = np.asarray(to_numpy(x), dtype=np.float64)
        return float(self.l1 * np.sum(np.abs(w)) + self.l2 * np.sum(w * w))

    def penalty(self, backend: Backend, param: Array, scale: float = 1.0) -> Scalar:
        """The penalty of ``param`` times ``scale`` (folded into the factors on the host), as a float64
        scalar where the parameter lives (a 0-d device array on a GPU)."""
        return backend.l1l2_penalty(param, self.l1 * scale, self.l2 * scale)

    def add_gradient(self, backend: Backend, param: Array, grad: Array, scale: Any = 1.0) -> None:
        """grad += scale * d penalty / d param = scale (2 l2 param + l1 sign(param)), in place (one
        backend call); ``scale`` is the factor the loss gradient carries: a number, or under
        mixed_float16 the loss scaler's float64 device state, whose first element the kernel reads
        (the loss scale: no host read)."""
        if not self.active:
            return
        if isinstance(scale, (int, float)):
            backend.l1l2_grad(grad, param, self.l1 * scale, self.l2 * scale)
        else:
            backend.l1l2_grad(grad, param, self.l1, self.l2, gscale=scale)



class L1L2(Regularizer):
    """l1 * sum|w| + l2 * sum w**2; both factors default to 0 (Keras's class defaults)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """l1 * sum|w| (default l1=0.01)."""

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum w**2 (default l2=0.01)."""

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


def l1(l1: float = 0.01) -> L1:
    """Keras's ``regularizers.l1``: the L1 class under its function name."""
    return L1(l1)


def l2(l2: float = 0.01) -> L2:
    """Keras's ``regularizers.l2``."""
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    """Keras's ``regularizers.l1_l2`` (both factors 0.01 by default, as Keras's function)."""
    return L1L2(l1=l1, l2=l2)


_CLASSES: dict[str, type[Regularizer]] = {"L1": L1, "L2": L2, "L1L2": L1L2}
_STRINGS: dict[str, Any] = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01), "l1l2": L1L2}


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": regularizer.get_config()}`` (JSON-ready), None for None."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config: dict[str, Any], argument: str = "regularizer") -> Regularizer:
    """The regularizer ``serialize`` described."""
    cls = _CLASSES.get(config.get("class_name"))  # type: ignore[arg-type]
    if cls is None or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"{argument}: unknown regularizer config {config!r}; known classes: {sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config", {})))


def get(identifier: Any, argument: str = "regularizer") -> Regularizer | None:
    """A regularizer (or None) from None, a name ('l1', 'l2', 'l1_l2'), a config dict or an instance."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, argument)
    if isinstance(identifier, str) and identifier.lower() in _STRINGS:
        return _STRINGS[identifier.lower()]()
    raise ValueError(
        f"{argument}: expected None, one of {sorted(_STRINGS)}, a regularizer config or an "
        f"fcgpu.regularizers.Regularizer (L1, L2, L1L2), got {identifier!r}"
    )
