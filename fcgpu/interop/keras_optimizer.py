"""Optimizer state in Keras 3's layout: the ``optimizer/vars`` of a ``.keras`` archive's weights file.

Keras stores an optimizer's variables in the order it builds them: ``iteration`` (int), the
``learning_rate`` (float32), then its slots for the model's trainable variables (kernel, bias of
each layer in order):

- Adam, AdamW: per variable, ``momentum`` then ``velocity`` (fcgpu's ``exp_avg``, ``exp_avg_sq``:
  the same moments);
- RMSprop: every variable's ``velocity``, then (momentum > 0) every ``momentum``, then (centered)
  every ``average_gradient``: fcgpu's RMSprop is Keras's;
- Adagrad: every ``accumulator``;
- SGD with momentum: every ``momentum``, Keras's m = mu m - lr g where PyTorch's (fcgpu's) buffer is
  b = mu b + g, so m = -lr b for a constant learning rate.

``state_to_keras`` and ``state_from_keras`` translate fcgpu's ``optimizer.state_dict()`` for those
optimizers (before the first step as Keras's built optimizer holds it: iteration 0, zero slots;
``unstepped`` tells such variables, and Keras's own unbuilt iteration and learning rate, apart);
anything else gives None and the file goes without optimizer state (Keras then starts its own, as
fcgpu does). fcgpu wraps a mixed_float16 model's optimizer in a LossScaleOptimizer
where Keras does so only under a global mixed_float16 policy: the wrapped optimizer's state is what
translates (the loss scale starts afresh), and a Keras LossScaleOptimizer's nested state does not.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plain", "state_from_keras", "state_to_keras", "unstepped"]

# optimizer class -> (fcgpu slot <- Keras slot, in Keras's order), per-variable interleaving or not
_SLOTS = {
    "Adam": ((("exp_avg", "momentum"), ("exp_avg_sq", "velocity")), True),
    "AdamW": ((("exp_avg", "momentum"), ("exp_avg_sq", "velocity")), True),
    "Adagrad": ((("accumulator", "accumulator"),), False),
}
_MAX_ITERATIONS = 2**31 - 1  # Keras's iteration variable is an int32


def _slots(config: dict[str, Any]) -> tuple[tuple[str, ...], bool] | None:
    """(fcgpu slot names in Keras's order, interleaved per variable) of the optimizer ``config``
    (fcgpu's ``get_config()``), or None where Keras's layout does not hold fcgpu's state."""
    cls = config.get("class_name")
    if cls in _SLOTS:
        pairs, interleaved = _SLOTS[cls]
        return tuple(f for f, _ in pairs), interleaved
    if cls == "RMSprop":
        names = ["velocity"] + (["momentum"] if config.get("momentum") else []) + (
            ["average_gradient"] if config.get("centered") else [])
        return tuple(names), False
    if cls == "SGD":
        return (("momentum_buffer",) if config.get("momentum") else ()), False
    return None


def _order(names: list[str], slots: tuple[str, ...], interleaved: bool) -> list[tuple[str, str]]:
    if interleaved:
        return [(n, s) for n in names for s in slots]
    return [(n, s) for s in slots for n in names]


def plain(optimizer: Any) -> Any:
    """The optimizer that holds the state: inside a LossScaleOptimizer (and an AllReduceOptimizer
    around it), else ``optimizer``."""
    while type(optimizer).__name__ in ("AllReduceOptimizer", "LossScaleOptimizer"):
        optimizer = optimizer.inner
    return optimizer


def state_to_keras(optimizer: Any, params: list[tuple[str, tuple[int, ...]]]) -> list[np.ndarray] | None:
    """Keras's ``optimizer/vars`` for fcgpu's ``optimizer`` over the parameters ``params`` [(name,
    shape)] (in the model's order), or None where they do not translate. Before the first step:
    what Keras's built optimizer holds before its first (iteration 0, zero slots), which Keras
    loads into the optimizer it builds when it compiles the loaded model."""
    optimizer = plain(optimizer)
    config = optimizer.get_config()
    layout = _slots(config)
    rate = config.get("learning_rate")
    if layout is None or not isinstance(rate, (int, float)):
        return None
    state = optimizer.state_dict()
    iterations = int(state.get("iterations", max(state["steps"].values(), default=0)))
    slots, interleaved = layout
    names, shapes = [n for n, _ in params], dict(params)
    if iterations == 0 and not any(state["state"].get(n) for n in names):
        return [np.array(0, np.int32), np.array(rate, np.float32),
                *(np.zeros(shapes[name], np.float32) for name, _ in _order(names, slots, interleaved))]
    if not 0 < iterations <= _MAX_ITERATIONS or any(set(state["state"].get(n, {})) != set(slots) for n in names):
        return None
    values = [np.array(iterations, np.int32), np.array(rate, np.float32)]
    for name, slot in _order(names, slots, interleaved):
        value = np.asarray(state["state"][name][slot], np.float32)
        values.append(-float(rate) * value if slot == "momentum_buffer" else value)
    return values


def unstepped(arrays: list[np.ndarray]) -> bool:
    """Whether Keras's optimizer variables ``arrays`` are an optimizer's before its first step
    (iteration 0: its slots, where stored, are zeros), which a fresh fcgpu optimizer is."""
    first = arrays[0] if arrays else None
    return first is not None and first.shape == () and first.dtype.kind in "iu" and int(first) == 0 and all(
        a.dtype.kind == "f" and not np.any(a) for a in arrays[2:])


def state_from_keras(config: dict[str, Any], arrays: list[np.ndarray], params: list[tuple[str, tuple[int, ...]]]) -> dict[str, Any] | None:
    """fcgpu's ``state_dict`` from Keras's optimizer variables ``arrays`` for the optimizer of
    fcgpu's ``config`` and the parameters ``params`` [(name, shape)], or None where they do not
    fit that layout exactly (count, shapes, a finite state, a positive step count)."""
    layout = _slots(config)
    rate = config.get("learning_rate")
    if layout is None or not isinstance(rate, (int, float)) or len(arrays) < 2:
        return None
    slots, interleaved = layout
    order = _order([n for n, _ in params], slots, interleaved)
    shapes = dict(params)
    iterations, values = arrays[0], arrays[2:]
    if len(values) != len(order) or iterations.shape != () or iterations.dtype.kind not in "iu":
        return None
    steps = int(iterations)
    if not 0 < steps <= _MAX_ITERATIONS or (any(s == "momentum_buffer" for s in slots) and not rate):
        return None
    state: dict[str, dict[str, np.ndarray]] = {n: {} for n, _ in params}
    for (name, slot), value in zip(order, values):
        if tuple(value.shape) != tuple(shapes[name]) or value.dtype.kind != "f" or not np.isfinite(value).all():
            return None
        value = np.asarray(value, np.float32)
        state[name][slot] = -value / np.float32(rate) if slot == "momentum_buffer" else value
    return {"steps": {n: steps for n, _ in params}, "state": state, "iterations": steps}
