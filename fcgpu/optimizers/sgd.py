"""SGD with torch.optim.SGD's update (dampening 0); Keras's argument names."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import Optimizer, check_number
from .schedules import LearningRateSchedule

__all__ = ["SGD"]


class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): g += wd p; buf = mu buf + g; g = g + mu buf if nesterov else buf; p -= lr g.

    Args:
        learning_rate: a number > 0 (default 0.01) or a schedule; ``lr`` is another name for it.
        momentum, nesterov: PyTorch's momentum buffer (Nesterov needs momentum > 0).
        weight_decay: PyTorch's L2 term added to the gradient (not Keras's decoupled decay).

    Keras spells the arguments the same; its momentum keeps -lr*buf instead of buf, which is the
    same update while the learning rate is constant.
    """

    default_learning_rate = 0.01

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        *,
        lr: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(learning_rate, lr=lr, **options)
        self.momentum = check_number(momentum, "momentum")
        self.weight_decay = check_number(0.0 if weight_decay is None else weight_decay, "weight_decay")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {nesterov!r}")
        if nesterov and self.momentum <= 0:
            raise ValueError("nesterov: Nesterov momentum requires momentum > 0")
        self.nesterov = bool(nesterov)
        self._slots = ("momentum_buffer",) if self.momentum else ()

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _update_call(self, backend, param, grad, state):
        head = (param, grad, state.get("momentum_buffer"))
        return backend.sgd_update, head, (self.momentum, self.weight_decay, self.nesterov), None
