"""Metrics that fit and evaluate report beside the loss, computed where the arrays live.

A metric adds the sum over a batch's rows of its per-row value into one float64 slot of the
trainer's device accumulator; the trainer divides by the rows seen when it reads the sums (a few
times an epoch). 'accuracy' is Keras's rule chosen from the loss (``Loss.correct``: argmax for
several outputs, the 0.5 threshold of a probability, or 0 of a logit, for one) and is counted by
the loss's own fused step at no extra device operation. Other metrics take one or two operations
a batch of their own.

Shapes: pred (B, C) predictions (probabilities or values, after the output activation), labels as
the loss prepared them ((B,) class ids or (B, C)).
"""
from __future__ import annotations

from typing import Any

from .backends import Backend
from .backends.base import Array

__all__ = ["Metric", "Accuracy", "get", "METRICS"]


class Metric:
    """Base class: ``name`` (the key in logs and History) and ``update``."""

    name = "metric"
    #: Counted by the loss's fused step (Loss.step with count=True) into the accumulator's slot 1.
    fused_with_loss = False

    def update(self, backend: Backend, pred: Array, labels: Array, loss: Any, slot: Array) -> None:
        """Add the sum over rows of this metric for ``pred`` against ``labels`` into ``slot`` (a
        float64 device array of shape (1,))."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Keras's 'accuracy': the variant the loss implies (``Loss.correct``), fused into its step."""

    name = "accuracy"
    fused_with_loss = True

    def update(self, backend, pred, labels, loss, slot):
        slot += loss.correct(backend, pred, labels)


METRICS: dict[str, type[Metric]] = {"accuracy": Accuracy, "acc": Accuracy}


def get(identifier: str | Metric | dict[str, Any]) -> Metric:
    """A metric from an instance, a config dict or a Keras name ('accuracy', 'acc', ...)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        classes = {cls.__name__: cls for cls in METRICS.values()}
        cls = classes.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"metrics: unknown config {identifier!r}")
        config = {k: v for k, v in identifier.items() if k != "class_name"}
        return cls(**config)
    if isinstance(identifier, str) and identifier.lower() in METRICS:
        return METRICS[identifier.lower()]()
    raise ValueError(f"metrics: expected names from {sorted(METRICS)} or Metric instances, got {identifier!r}")
