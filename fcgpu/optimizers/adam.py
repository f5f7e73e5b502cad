"""Adam and AdamW with torch.optim's updates and defaults; Keras's spellings accepted as aliases."""
from __future__ import annotations

from typing import Any

from .base import Optimizer, check_number, one_of
from .schedules import LearningRateSchedule

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected moments; ``weight_decay`` adds wd p to the gradient (L2).

    Args (defaults are PyTorch's, whichever spelling is used):
        learning_rate (or ``lr``): a number > 0 (default 1e-3) or a schedule.
        beta1 (or Keras's ``beta_1``): 0.9; beta2 (or ``beta_2``): 0.999.
        eps (or Keras's ``epsilon``): 1e-8, added to sqrt(v_hat) as PyTorch does. Keras adds its
            epsilon (default 1e-7) to sqrt(v) before the bias correction, a different update:
            ``epsilon=`` here sets PyTorch's eps.
        weight_decay: Adam's L2 term (default 0); AdamW's decoupled decay (default 0.01).

    Two spellings of one argument given together are an error.
    """

    _slots = ("exp_avg", "exp_avg_sq")
    _decoupled = False
    default_weight_decay = 0.0  # what weight_decay=None means

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        *,
        lr: float | None = None,
        beta_1: float | None = None,
        beta_2: float | None = None,
        epsilon: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(learning_rate, lr=lr, **options)
        value, name = one_of(beta1, beta_1, "beta1", "beta_1", 0.9)
        self.beta1 = check_number(value, name, 0.0, 1.0, high_open=True)
        value, name = one_of(beta2, beta_2, "beta2", "beta_2", 0.999)
        self.beta2 = check_number(value, name, 0.0, 1.0, high_open=True)
        value, name = one_of(eps, epsilon, "eps", "epsilon", 1e-8)
        self.eps = check_number(value, name)
        decay = self.default_weight_decay if weight_decay is None else weight_decay
        self.weight_decay = check_number(decay, "weight_decay")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def bias_correction_betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2

    def _update_call(self, backend, param, grad, state):
        head = (param, grad, state["exp_avg"], state["exp_avg_sq"])
        return backend.adam_update, head, (self.beta1, self.beta2, self.eps, self.weight_decay), (self._decoupled,)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled decay p *= 1 - lr wd before the update (default wd 0.01,
    PyTorch's; Keras's is 0.004)."""

    _decoupled = True
    default_weight_decay = 0.01
