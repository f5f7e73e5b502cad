"""Dynamic loss scaling for float16 training: Keras 3's LossScaleOptimizer, PyTorch GradScaler's rules.

The loss is multiplied by ``loss_scale`` before backward (folded into the loss step's gradient
scale, no extra pass), so that small float16 gradients do not flush to zero. Each step then checks
the flat gradient buffer(s) for inf/NaN with one reduction and one host read; a finite step is
applied by the inner optimizer with the gradients unscaled inside its fused update (``unscale`` =
1/scale), a non-finite one is skipped (parameters, inner state and iteration count unchanged) and
halves the scale. ``dynamic_growth_steps`` finite steps in a row double it.

bfloat16 needs no loss scaling (float32's exponent range): ``compile`` wraps the optimizer only
under 'mixed_float16', as Keras does, and PyTorch's autocast with bfloat16 skips GradScaler too.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backends import to_numpy
from .base import Optimizer, check_number, layers_of

__all__ = ["LossScaleOptimizer"]


class LossScaleOptimizer(Optimizer):
    """Wraps ``inner`` (an Optimizer): scale the loss, skip non-finite steps, adapt the scale.

    Args:
        inner: the optimizer that applies the (unscaled) gradients.
        initial_scale: the first loss scale (Keras's default 2**15).
        dynamic_growth_steps: finite steps in a row after which the scale doubles (2000).
    """

    def __init__(self, inner: Optimizer, initial_scale: float = 2.0**15, dynamic_growth_steps: int = 2000) -> None:
        if not isinstance(inner, Optimizer) or isinstance(inner, LossScaleOptimizer):
            raise TypeError(f"inner: expected an optimizer (not a LossScaleOptimizer), got {inner!r}")
        self.inner = inner
        self.initial_scale = check_number(initial_scale, "initial_scale", 1.0)
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, (int, np.integer)) or dynamic_growth_steps < 1:
            raise ValueError(f"dynamic_growth_steps: expected an int >= 1, got {dynamic_growth_steps!r}")
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self._scale = self.initial_scale
        self._good_steps = 0
        self.skipped_steps = 0

    # -- the inner optimizer's surface -------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found here (steps, schedule, lr, ...): the inner optimizer's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def loss_scale(self) -> float:
        """The current loss scale."""
        return self._scale

    # Names this wrapper sets on itself; every other attribute is read from the inner optimizer
    # and is refused here when set (it would shadow the inner optimizer's setting and change nothing).
    _OWN = frozenset({"inner", "initial_scale", "dynamic_growth_steps", "_scale", "_good_steps", "skipped_steps"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(
                f"{name}: LossScaleOptimizer does not have a setting {name!r} of its own; set it on the optimizer "
                f"it wraps (opt.inner.{name} = ...)"
            )

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
    def state(self) -> dict:  # type: ignore[override]
        return self.inner.state

    def check_owner(self, model_or_layers: Any) -> None:
        self.inner.check_owner(model_or_layers)

    def to(self, backend: Any) -> "LossScaleOptimizer":
        self.inner.to(backend)
        return self

    def forget(self, names: Any) -> None:
        self.inner.forget(names)

    def reset(self) -> None:
        self.inner.reset()
        self._scale, self._good_steps, self.skipped_steps = self.initial_scale, 0, 0

    # -- stepping ----------------------------------------------------------------------
    def step(self, model_or_layers: Any, *, unscale: float = 1.0) -> None:
        """Apply the inner optimizer's update with the gradients unscaled, or skip a non-finite step."""
        if not self._grads_finite(model_or_layers):
            self._scale = max(self._scale / 2.0, 1.0)
            self._good_steps = 0
            self.skipped_steps += 1
            return
        self.inner.step(model_or_layers, unscale=unscale / self._scale)
        self._good_steps += 1
        if self._good_steps >= self.dynamic_growth_steps:
            self._scale *= 2.0
            self._good_steps = 0

    def _grads_finite(self, model_or_layers: Any) -> bool:
        """One reduction per gradient buffer (one for a float32-master model) and one host read."""
        flat_parameters = getattr(model_or_layers, "flat_parameters", None)
        flat = flat_parameters() if callable(flat_parameters) else None
        if flat is not None and flat.grads_ready():
            checks = [flat.backend.all_finite(g) for g in flat.grads.values()]
        else:
            checks = [
                layer.backend.all_finite(g)
                for layer in layers_of(model_or_layers)
                for _, _, g in layer.parameters()
                if g is not None
            ]
        if not checks:
            return True
        total = checks[0]
        for c in checks[1:]:
            total = total & c
        return bool(to_numpy(total))

    # -- config and state ---------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "LossScaleOptimizer",
            "inner_optimizer": self.inner.get_config(),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LossScaleOptimizer":
        """From ``get_config()``'s dict whose 'inner_optimizer' is already an Optimizer
        (``fcgpu.optimizers.get`` resolves it first)."""
        config = dict(config)
        config.pop("class_name", None)
        return cls(config.pop("inner_optimizer"), **config)

    def state_dict(self) -> dict[str, Any]:
        return {**self.inner.state_dict(), "loss_scale": self._scale, "good_steps": self._good_steps}

    def load_state_dict(self, state_dict: dict[str, Any], backend: Any) -> None:
        scale = check_number(
            state_dict.get("loss_scale", self.initial_scale), "state_dict['loss_scale']", 1.0, math.inf, high_open=True
        )
        good = state_dict.get("good_steps", 0)
        if isinstance(good, bool) or not isinstance(good, (int, np.integer, float)) or good != int(good) or good < 0:
            raise ValueError(f"state_dict['good_steps']: expected an int >= 0, got {good!r}")
        self.inner.load_state_dict(state_dict, backend)
        self._scale, self._good_steps = scale, int(good)

    def __repr__(self) -> str:
        return f"LossScaleOptimizer({self.inner!r}, loss_scale={self._scale})"
