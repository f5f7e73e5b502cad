"""Dynamic loss scaling for float16 training: Keras 3's LossScaleOptimizer, PyTorch GradScaler's rules.

The loss is multiplied by the loss scale before backward (the loss steps read it from this
optimizer's device state, no extra pass), so that small float16 gradients do not flush to zero.
Each step one kernel a gradient buffer (``Backend.loss_scale_check``) flags inf/NaN in the flat
gradients and applies the rules on the device: a non-finite step is skipped (the guarded fused
update leaves parameters, half copies and the inner state as they were, and Adam's step count t
does not advance) and halves the scale; ``dynamic_growth_steps`` finite steps in a row double it; a
finite step is applied with the gradients unscaled inside the update. Nothing is read on the host
in a step: ``loss_scale``, ``iterations``, ``steps``, ``skipped_steps`` and ``state_dict`` read the
device state when asked (one read) and correct the inner optimizer's counts for the skipped steps.

The device state is a float64 array of ``Backend.LS_SIZE`` (``kernels/optimizers.cuh``,
``FC_LS_*``): scale, good steps, this step's overflow flag, its 1/scale, steps skipped, the inner
optimizer's applied steps t, and Adam's bias corrections for t. Where the flat path cannot serve
a step (parameters with different step counts, layers stepped on their own), a step reads the
check on the host as before. With a learning-rate schedule each step reads the state once, so the
schedule is evaluated at the applied step count, as Keras does.

bfloat16 needs no loss scaling (float32's exponent range): ``compile`` wraps the optimizer only
under 'mixed_float16', as Keras does, and PyTorch's autocast with bfloat16 skips GradScaler too.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backends import to_numpy
from ..backends.base import Backend
from .base import Optimizer, check_number, flat_of, layers_of
from .wrapper import OptimizerWrapper

__all__ = ["LossScaleOptimizer"]


class LossScaleOptimizer(OptimizerWrapper):
    """Wraps ``inner`` (an Optimizer): scale the loss, skip non-finite steps, adapt the scale.

    Args:
        inner: the optimizer that applies the (unscaled) gradients.
        initial_scale: the first loss scale (Keras's default 2**15).
        dynamic_growth_steps: finite steps in a row after which the scale doubles (2000).
    """

    def __init__(self, inner: Optimizer, initial_scale: float = 2.0**15, dynamic_growth_steps: int = 2000) -> None:
        if not isinstance(inner, Optimizer) or isinstance(inner, LossScaleOptimizer):
            raise TypeError(f"inner: expected an optimizer (not a LossScaleOptimizer), got {inner!r}")
        if inner.reduces_gradients:  # the overflow check would read unreduced gradients
            raise TypeError("inner: an AllReduceOptimizer goes around the LossScaleOptimizer, not inside it: "
                            "AllReduceOptimizer(LossScaleOptimizer(opt)), so that every rank skips alike")
        self.inner = inner
        self.initial_scale = check_number(initial_scale, "initial_scale", 1.0)
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, (int, np.integer)) or dynamic_growth_steps < 1:
            raise ValueError(f"dynamic_growth_steps: expected an int >= 1, got {dynamic_growth_steps!r}")
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self._scale = self.initial_scale
        self._good_steps = 0
        self._skipped = 0
        self._device: Any = None  # the device state (Backend.LS_SIZE float64), made at the first step
        self._unread = False  # whether steps ran on the device since the host values were read
        self._stale = False  # whether the host's step counts changed since the device state was written
        self._bound: Any = None  # the flat buffers bound to (bind)
        self._device_backend: Any = None

    # -- the inner optimizer's surface -------------------------------------------------

    @property
    def loss_scale(self) -> float:
        """The current loss scale (read from the device when steps ran since the last read)."""
        self._read()
        return self._scale

    @property
    def dynamic_scale(self) -> float:
        """Keras's name of the current loss scale."""
        return self.loss_scale

    @property
    def step_counter(self) -> int:
        """Keras's name: finite steps in a row since the scale last changed."""
        self._read()
        return self._good_steps

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite gradient since this optimizer was made (or reset)."""
        self._read()
        return self._skipped

    @property
    def scale_state(self) -> Any:
        """The device state the loss steps and guarded updates read (``Backend.LS_SIZE`` float64;
        its first element is the loss scale), or None before the first step on the flat path."""
        return self._device

    # Names this wrapper sets on itself; every other attribute is read from the inner optimizer
    # and is refused here when set (it would shadow the inner optimizer's setting and change nothing).
    _OWN = frozenset({"inner", "initial_scale", "dynamic_growth_steps", "_scale", "_good_steps", "_skipped", "_device",
                      "_unread", "_stale", "_bound",
                      "_device_backend"})


    @property
    def iterations(self) -> int:  # type: ignore[override]
        self._read()
        return self.inner.iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._read()
        self.inner.iterations = value

    @property
    def steps(self) -> dict:  # type: ignore[override]
        """The inner optimizer's step counts, read and settled: a caller may change them (the
        device's step count is taken from them again at the next step)."""
        self._read()
        self._stale = True
        return self.inner.steps


    def to(self, backend: Any) -> "LossScaleOptimizer":
        self._read()
        self._device, self._bound = None, None  # made again on the new backend by the next bind
        self.inner.to(backend)
        return self

    def forget(self, names: Any) -> None:
        self._read()
        self._bound = None
        self.inner.forget(names)

    def reset(self) -> None:
        self.inner.reset()
        self._scale, self._good_steps, self._skipped = self.initial_scale, 0, 0
        self._unread, self._bound = False, None
        self._push()

    # -- the device state -------------------------------------------------------------
    def _read(self) -> None:
        """Take the device's scale, good steps and skips onto the host (one read), and take the
        steps skipped since the last read off the inner optimizer's iterations and step counts
        (each step counted them as applied)."""
        if not self._unread:
            return
        host = to_numpy(self._device)
        skipped = int(host[Backend.LS_SKIPPED]) - self._skipped
        self._scale, self._good_steps = float(host[Backend.LS_SCALE]), int(host[Backend.LS_GOOD])
        self._skipped = int(host[Backend.LS_SKIPPED])
        if skipped:
            inner = self.inner
            inner.iterations -= skipped
            for name in inner.steps:
                inner.steps[name] -= skipped
        self._unread = False

    def ran_on_device(self) -> None:
        """A step ran on the device outside ``apply`` (a captured step's replay): the next read of
        the scale or the counts takes the device state, skipped steps included."""
        self._unread = True

    def _push(self) -> None:
        """Write the host values (scale, good steps, skips, the inner optimizer's step count) into
        the device state where there is one: after a load, a reset, a host-decided step. The array
        stays the same, so what the loss steps and layers were given keeps serving."""
        state = self._device
        self._stale = False
        if state is None:
            return
        values = np.zeros(Backend.LS_SIZE, np.float64)
        t = max(self.inner.steps.values(), default=0)
        values[[Backend.LS_SCALE, Backend.LS_GOOD, Backend.LS_UNSCALE, Backend.LS_SKIPPED, Backend.LS_T]] = (
            self._scale, self._good_steps, 1.0 / self._scale, self._skipped, t)
        state[...] = self._device_backend.from_numpy(values)

    def loss_scale_state(self, flat: Any) -> Any:
        return None if flat is None else self._state_on(flat.backend)

    def _state_on(self, backend: Any) -> Any:
        """The device state on ``backend`` (made there, from the host values, where it is not)."""
        state = self._device
        if state is None or not backend.owns(state):
            self._read()
            self._device, self._device_backend = backend.zeros((Backend.LS_SIZE,), np.float64), backend
            self._push()
        elif self._stale:
            self._push()
        return self._device

    # -- stepping ----------------------------------------------------------------------
    def bind(self, flat: Any) -> bool:
        """Bind the inner optimizer to the model's flat buffers, and the device state beside them."""
        self._bound = None
        if not self.inner.bind(flat):
            return False
        self._state_on(flat.backend)
        self._bound = flat
        return True

    def apply(self, *, unscale: float = 1.0, guard: Any = None) -> None:
        """One step of the bound flat buffers, decided on the device: one overflow check a gradient
        buffer (which halves or grows the scale there), then the inner update guarded by it."""
        flat = self._bound
        state = self._state_on(flat.backend) if self._stale or self._device is None else self._device
        inner = self.inner
        if inner.schedule is not None:
            self._read()  # the schedule at the applied step count: one read a step
        beta1, beta2 = inner.bias_correction_betas()
        flat.backend.loss_scale_check(list(flat.grads.values()), state, self.dynamic_growth_steps,
                                      inner.learning_rate, beta1, beta2)
        inner.apply(guard=state)
        self._unread = True

    def step(self, model_or_layers: Any, *, unscale: float = 1.0) -> None:
        """Apply the inner optimizer's update with the gradients unscaled, or skip a non-finite
        step: decided on the device for a model's flat buffers, on the host otherwise."""
        flat = flat_of(model_or_layers)
        if unscale != 1.0 or not self.inner.flat_step_ready(flat):
            self._host_step(model_or_layers, unscale)
            return
        if self.bound_flat is not flat:
            self.inner.check_owner(model_or_layers)
            if not self.bind(flat):
                self._host_step(model_or_layers, unscale)
                return
        self.apply()

    def _host_step(self, model_or_layers: Any, unscale: float) -> None:
        """The step decided on the host: one overflow check and one read."""
        self._read()
        if not self._grads_finite(model_or_layers):
            self._scale = max(self._scale / 2.0, 1.0)
            self._good_steps = 0
            self._skipped += 1
        else:
            self.inner.step(model_or_layers, unscale=unscale / self._scale)
            self._good_steps += 1
            if self._good_steps >= self.dynamic_growth_steps:
                self._scale *= 2.0
                self._good_steps = 0
        self._push()

    def _grads_finite(self, model_or_layers: Any) -> bool:
        """One reduction per gradient buffer (one for a float32-master model) and one host read."""
        flat = flat_of(model_or_layers)
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
        self._read()
        return {**self.inner.state_dict(), "loss_scale": self._scale, "good_steps": self._good_steps}

    def load_state_dict(self, state_dict: dict[str, Any], backend: Any) -> None:
        scale = check_number(
            state_dict.get("loss_scale", self.initial_scale), "state_dict['loss_scale']", 1.0, math.inf, high_open=True
        )
        good = state_dict.get("good_steps", 0)
        if isinstance(good, bool) or not isinstance(good, (int, np.integer, float)) or good != int(good) or good < 0:
            raise ValueError(f"state_dict['good_steps']: expected an int >= 0, got {good!r}")
        self._read()
        self._bound = None
        self.inner.load_state_dict(state_dict, backend)
        self._scale, self._good_steps = scale, int(good)
        self._push()

    def __repr__(self) -> str:
        return f"LossScaleOptimizer({self.inner!r}, loss_scale={self.loss_scale})"
