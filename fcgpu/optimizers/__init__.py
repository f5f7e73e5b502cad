"""Optimizers: SGD, Adam and AdamW with torch.optim's semantics; RMSprop and Adagrad with Keras 3's.

Every optimizer takes ``learning_rate=`` (``lr=`` is another name for it), a number or a schedule
from ``fcgpu.optimizers.schedules``. The base class and the two step paths (one fused call per
flat parameter buffer, or one per parameter) are in ``base``; each optimizer is its own module.
``get`` turns a name, a config dict or an instance into an optimizer.
"""
from __future__ import annotations

from typing import Any

from . import schedules
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer, state_dtype
from .loss_scale import LossScaleOptimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["LossScaleOptimizer", "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "get", "schedules", "state_dtype"]

_NAMES: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(identifier: str | Optimizer | dict[str, Any]) -> Optimizer:
    """An optimizer from an instance, a config dict (``get_config()``'s), or a name ('sgd', 'adam',
    'adamw', 'rmsprop', 'adagrad') with its defaults."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") == "LossScaleOptimizer":
        config = dict(identifier)
        config["inner_optimizer"] = get(config["inner_optimizer"])
        return LossScaleOptimizer.from_config(config)
    if isinstance(identifier, dict):
        cls = {c.__name__: c for c in _NAMES.values()}.get(identifier.get("class_name"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"optimizer: unknown config {identifier!r}")
        return cls.from_config(identifier)
    if isinstance(identifier, str) and identifier.lower() in _NAMES:
        return _NAMES[identifier.lower()]()
    raise ValueError(f"optimizer: expected an Optimizer instance or one of {sorted(_NAMES)}, got {identifier!r}")
