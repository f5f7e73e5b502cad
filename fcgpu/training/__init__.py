"""Training: the Trainer that models inherit (compile, fit, evaluate, predict, the step) and the
loops around the step (``epoch``). History, what fit returns, is a callback (``fcgpu.callbacks``)."""
from __future__ import annotations

from ..callbacks import History
from .trainer import Trainer

__all__ = ["Trainer", "History"]
