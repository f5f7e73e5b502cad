"""Adagrad with Keras 3's update, arguments and defaults (keras/src/optimizers/adagrad.py)."""
from __future__ import annotations

from typing import Any

from .base import Optimizer, check_number
from .schedules import LearningRateSchedule

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Keras 3's Adagrad, one fused pass per parameter buffer:

        accumulator += g^2                       (starting at initial_accumulator_value)
        p -= lr g / sqrt(accumulator + epsilon)

    Defaults are Keras's (torch.optim.Adagrad starts at 0, adds eps outside the root and decays
    the learning rate). ``weight_decay`` is Keras's decoupled decay, p -= p wd lr before the
    update. State slot: 'accumulator' (float32 for half parameters).
    """

    _slots = ("accumulator",)

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule | None = None,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        *,
        lr: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(learning_rate, lr=lr, **options)
        self.initial_accumulator_value = check_number(initial_accumulator_value, "initial_accumulator_value")
        self.epsilon = check_number(epsilon, "epsilon")
        self.weight_decay = None if weight_decay is None else check_number(weight_decay, "weight_decay")

    def initial_value(self, slot: str) -> float:
        return self.initial_accumulator_value

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
            "weight_decay": self.weight_decay,
        }

    def _update_call(self, backend, param, grad, state):
        return backend.adagrad_update, (param, grad, state["accumulator"]), (self.epsilon, self.weight_decay or 0.0), None
