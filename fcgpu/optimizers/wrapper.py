"""The base of optimizers that wrap another (``LossScaleOptimizer``, ``distributed.AllReduceOptimizer``):
every setting is the wrapped optimizer's, read through the wrapper and refused when set on it."""
from __future__ import annotations

from typing import Any

from .base import Optimizer

__all__ = ["OptimizerWrapper"]


class OptimizerWrapper(Optimizer):
    """An optimizer around ``inner``: a name the wrapper does not have is the inner optimizer's;
    setting one is refused (it would shadow the inner optimizer's setting and change nothing),
    except the names in ``_OWN`` and the wrapper's properties. The learning rate (``learning_rate``,
    ``lr``) is read from and written to the inner optimizer."""

    inner: Optimizer
    _OWN: frozenset[str] = frozenset({"inner", "_bound"})
    _bound: Any = None  # the flat buffers bound to (bind)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found on the wrapper (schedule, steps, lr, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        else:
            cls = type(self).__name__
            raise AttributeError(f"{name}: {cls} does not have a setting {name!r} of its own; set it on the "
                                 f"optimizer it wraps (opt.inner.{name} = ...)")

    @property
    def learning_rate(self) -> float:  # type: ignore[override]
        return self.inner.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.inner.learning_rate = value

    @property
    def lr(self) -> float:  # type: ignore[override]
        return self.inner.lr

    @lr.setter
    def lr(self, value: Any) -> None:
        self.inner.lr = value

    @property
    def iterations(self) -> int:  # type: ignore[override]
        return self.inner.iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self.inner.iterations = value

    @property
    def steps(self) -> dict:  # type: ignore[override]
        return self.inner.steps

    @property
    def state(self) -> dict:  # type: ignore[override]
        return self.inner.state

    @property
    def bound_flat(self) -> Any:  # type: ignore[override]
        """The flat buffers ``bind`` bound this optimizer (and its inner one) to, or None."""
        bound = self._bound
        return bound if bound is not None and self.inner.bound_flat is bound else None

    def check_owner(self, model_or_layers: Any) -> None:
        self.inner.check_owner(model_or_layers)
