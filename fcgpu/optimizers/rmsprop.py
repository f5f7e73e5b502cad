"""RMSprop with Keras 3's update, arguments and defaults (keras/src/optimizers/rmsprop.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Optimizer, check_number
from .schedules import LearningRateSchedule

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """Keras 3's RMSprop, one fused pass per parameter buffer:

        v = rho v + (1 - rho) g^2
        centered: mg = rho mg + (1 - rho) g; denominator = v - mg^2 + epsilon, else v + epsilon
        increment = lr g / sqrt(denominator)
        momentum > 0: m = momentum m + increment; p -= m, else p -= increment

    epsilon sits inside the square root (torch.optim.RMSprop adds it outside, and defaults to
    alpha=0.99, lr=0.01: a different optimizer under the same name). ``weight_decay`` is Keras's
    decoupled decay, p -= p wd lr before the update. Defaults are Keras's.
    State slots (Keras's names): 'velocity', 'average_gradient' when centered, 'momentum' when
    momentum > 0; float32 for half parameters.
    """

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule | None = None,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        weight_decay: float | None = None,
        *,
        lr: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(learning_rate, lr=lr, **options)
        self.rho = check_number(rho, "rho", 0.0, 1.0, high_open=True)
        self.momentum = check_number(momentum, "momentum")
        self.epsilon = check_number(epsilon, "epsilon")
        if not isinstance(centered, (bool, np.bool_)):
            raise TypeError(f"centered: expected True or False, got {centered!r}")
        self.centered = bool(centered)
        self.weight_decay = None if weight_decay is None else check_number(weight_decay, "weight_decay")
        self._slots = ("velocity",) + (("average_gradient",) if self.centered else ()) + (
            ("momentum",) if self.momentum > 0 else ()
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
            "weight_decay": self.weight_decay,
        }

    def _update_call(self, backend, param, grad, state):
        head = (param, grad, state["velocity"], state.get("average_gradient"), state.get("momentum"))
        return backend.rmsprop_update, head, (self.rho, self.momentum, self.epsilon, self.weight_decay or 0.0), None
