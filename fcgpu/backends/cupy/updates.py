"""The CuPy backend's optimizer updates: ``Backend.sgd_update`` and the others as one fused kernel each.

A base of ``CupyBackend`` (which supplies ``kernel(name)``). The kernel's variant follows the
mixed-precision and clipping arguments: ``_mixed`` (the half copy written too), ``_unscaled``,
``_guarded`` (LossScaleOptimizer's device decision), ``_clip`` (Keras's gradient clipping), as
``kernel_specs`` declares them.
"""
from __future__ import annotations

from typing import Any

Array = Any


class CupyUpdates:
    """The four updates and their launch; ``kernel(name)`` is ``CupyBackend``'s."""

    kernel: Any
    adam_bias_corrections: Any

    # ``half``: the parameter's half copy, written in the same pass (the ``_mixed`` kernels);
    # ``unscale``: 1/loss scale, applied to the gradient as it is read (``_unscaled``, ``_mixed``).
    def _launch_update(
        self, name: str, ins: tuple, outs: tuple, half: Array | None, unscale: float, guard: Array | None = None,
        clip: tuple | None = None,
    ) -> None:
        if clip is not None:  # Keras's clipping as the gradient is read (the ``_clip`` kernels)
            factors, segs, nseg, clipvalue = clip
            tail = (factors, segs, int(nseg), float(clipvalue))
            mixed = (half,) if half is not None else ()
            if guard is not None:
                variant = "_clip_guarded_mixed" if half is not None else "_clip_guarded"
                self.kernel(name + variant)(*ins, guard, *tail, *outs, *mixed)
            else:
                variant = "_clip_mixed" if half is not None else "_clip"
                self.kernel(name + variant)(*ins, float(unscale), *tail, *outs, *mixed)
        elif guard is not None:  # LossScaleOptimizer: skip, unscale (and Adam's corrections) from the device
            tail = (half,) if half is not None else ()
            self.kernel(name + ("_guarded_mixed" if half is not None else "_guarded"))(*ins, guard, *outs, *tail)
        elif half is not None:
            self.kernel(name + "_mixed")(*ins, float(unscale), *outs, half)
        elif unscale != 1.0:
            self.kernel(name + "_unscaled")(*ins, float(unscale), *outs)
        else:
            self.kernel(name)(*ins, *outs)

    def sgd_update(
        self, param, grad, buf, lr, momentum, weight_decay, nesterov, *, half=None, unscale=1.0, guard=None, clip=None
    ) -> None:
        if momentum:
            ins = (grad, lr, momentum, weight_decay, bool(nesterov))
            self._launch_update("fcgpu_sgd_momentum", ins, (param, buf), half, unscale, guard, clip)
        else:
            self._launch_update("fcgpu_sgd", (grad, lr, weight_decay), (param,), half, unscale, guard, clip)

    def adam_update(
        self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, *, half=None, unscale=1.0,
        guard=None, clip=None,
    ) -> None:
        # 1 - beta and 1 - lr*wd in double here, as PyTorch (and the NumPy backend) compute them.
        head = (grad, beta1, beta2, 1.0 - beta1, 1.0 - beta2, eps, weight_decay, 1.0 - lr * weight_decay)
        if guard is not None:  # the bias corrections of the device's step count (loss scaling)
            self._launch_update("fcgpu_adam", (*head, bool(decoupled)), (param, m, v), half, unscale, guard, clip)
            return
        step_size, bc2_sqrt = self.adam_bias_corrections(lr, beta1, beta2, step)
        ins = (*head, step_size, bc2_sqrt, bool(decoupled))
        self._launch_update("fcgpu_adam", ins, (param, m, v), half, unscale, None, clip)

    def rmsprop_update(
        self, param, grad, v, mg, mom, lr, rho, momentum, eps, weight_decay, *, half=None, unscale=1.0, guard=None,
        clip=None,
    ) -> None:
        name = "fcgpu_rmsprop" + ("_centered" if mg is not None else "") + ("_momentum" if mom is not None else "")
        states = tuple(s for s in (v, mg, mom) if s is not None)
        # 1 - rho and Keras's decoupled decay 1 - lr*wd in double here, as the NumPy backend has them.
        ins = (grad, lr, rho, 1.0 - rho, momentum, eps, 1.0 - lr * weight_decay)
        self._launch_update(name, ins, (param, *states), half, unscale, guard, clip)

    def adagrad_update(
        self, param, grad, acc, lr, eps, weight_decay, *, half=None, unscale=1.0, guard=None, clip=None
    ) -> None:
        ins = (grad, lr, eps, 1.0 - lr * weight_decay)
        self._launch_update("fcgpu_adagrad", ins, (param, acc), half, unscale, guard, clip)
