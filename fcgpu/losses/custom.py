"""Loss functions as losses: ``LossFunctionWrapper`` (Keras 3's name), what ``compile(loss=fn)``
makes of a function ``fn(y_true, y_pred)`` written with ``fcgpu.ops``.

As Keras's, the wrapper first brings y_true and y_pred to one rank where they differ by a trailing
1 (class ids (B,) against predictions (B, 1) become (B, 1)), calls ``fn`` for per-sample values and
reduces them with the loss's ``reduction`` (the mean over the batch by default). Training takes
the gradient through ``fcgpu.ops`` (``fcgpu.losses.tracing``).
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Loss
from .tracing import squeeze_or_expand_to_same_rank
from ..ops.core import callable_name

__all__ = ["LossFunctionWrapper"]


class LossFunctionWrapper(Loss):
    """A loss from ``fn(y_true, y_pred, **kwargs)`` -> per-sample values (e.g. (B,)), written with
    ``fcgpu.ops``; named after the function unless ``name``."""

    def __init__(self, fn: Callable[..., Any], reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"loss: expected a function fn(y_true, y_pred), got {fn!r}")
        super().__init__(name=name or callable_name(fn), reduction=reduction, dtype=dtype)
        self.fn = fn
        self.fn_kwargs = kwargs

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def get_config(self) -> dict[str, Any]:
        fn = f"{self.fn.__module__ or ''}.{callable_name(self.fn)}".lstrip(".")  # a name: code is not stored
        return {**super().get_config(), "fn": fn, **self.fn_kwargs}

    def __repr__(self) -> str:
        return f"LossFunctionWrapper({callable_name(self.fn)}, name={self.name!r}, reduction={self.reduction!r})"
