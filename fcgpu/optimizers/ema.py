"""Keras 3's exponential moving average of the weights: ``use_ema``, ``ema_momentum``,
``ema_overwrite_frequency`` and ``finalize_variable_values``, for every optimizer.

After each update (``BaseOptimizer._update_model_variables_moving_average``), with ``iterations``
the updates applied before it: average = m * average + (1 - m) * weight, where m is
``ema_momentum`` except on the first update (m = 0: the average starts at the weight), m in the
weight's dtype as Keras casts it. With ``ema_overwrite_frequency`` f, every f-th update (when
iterations + 1 is a multiple of f) overwrites the weights with their averages. Both come before
the weight constraints, as in Keras. ``finalize_variable_values`` overwrites the weights with the
averages (``fit`` calls it at its end, as Keras's does). The average is optimizer state ('average',
kept and saved beside the others); on a model's flat buffers it is one flat buffer a dtype,
updated by a few whole-buffer operations. Under loss scaling's device decision the update, the
first-step rule and the overwrite read the scaler's state (applied steps, skip flag): a skipped
step changes nothing, and nothing is read on the host.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["EMA_SLOT", "check_ema", "ema_config", "ema_update", "finalize"]

EMA_SLOT = "average"


def check_ema(use_ema: Any, ema_momentum: Any, ema_overwrite_frequency: Any) -> tuple[bool, float, int | None]:
    """The three arguments checked as Keras checks them (momentum in [0, 1]; frequency an int >= 1 or None)."""
    if not isinstance(use_ema, (bool, np.bool_)):
        raise TypeError(f"use_ema: expected True or False, got {use_ema!r}")
    if isinstance(ema_momentum, bool) or not isinstance(ema_momentum, (int, float, np.integer, np.floating)):
        raise TypeError(f"ema_momentum: expected a number, got {ema_momentum!r}")
    if not (0.0 <= float(ema_momentum) <= 1.0) or math.isnan(float(ema_momentum)):
        raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}")
    if ema_overwrite_frequency is not None and (
        isinstance(ema_overwrite_frequency, bool) or not isinstance(ema_overwrite_frequency, (int, np.integer))
        or ema_overwrite_frequency < 1
    ):
        raise ValueError(
            "`ema_overwrite_frequency` must be an integer >= 1 or None. Received: ema_overwrite_frequency="
            f"{ema_overwrite_frequency}"
        )
    frequency = None if ema_overwrite_frequency is None else int(ema_overwrite_frequency)
    return bool(use_ema), float(ema_momentum), frequency


def ema_config(optimizer: Any) -> dict[str, Any]:
    """The config entries of the moving average: none where it is off."""
    if not optimizer.use_ema:
        return {}
    return {"use_ema": True, "ema_momentum": optimizer.ema_momentum,
            "ema_overwrite_frequency": optimizer.ema_overwrite_frequency}


def ema_update(optimizer: Any, entries: list[tuple[Any, Any, Any, Any]], applied: int, guard: Any = None) -> None:
    """The average of each (backend, weight, average, half copy or None) of ``entries`` after an
    update, ``applied`` updates before it (Keras's ``iterations``), and the overwrite where due.
    ``guard``: the loss scaler's device state, which decides both on the device instead."""
    momentum, frequency = optimizer.ema_momentum, optimizer.ema_overwrite_frequency
    for backend, weight, average, half in entries:
        xp = backend.xp
        scalar = average.dtype.type
        if guard is None:
            m = scalar(momentum if applied else 0.0)
            average[...] = m * average + (scalar(1) - m) * weight
            if frequency and (applied + 1) % frequency == 0:
                _overwrite(weight, average, half)
            continue
        t, skip = guard[backend.LS_T:backend.LS_T + 1], guard[backend.LS_SKIP:backend.LS_SKIP + 1] != 0.0
        m = xp.where(t > 1.0, momentum, 0.0).astype(average.dtype)  # applied steps, this one included
        average[...] = xp.where(skip, average, m * average + (scalar(1) - m) * weight)
        if frequency:
            due = xp.logical_and(xp.logical_not(skip), xp.remainder(t, frequency) == 0.0)
            weight[...] = xp.where(due, average, weight)
            if half is not None:
                half[...] = weight.astype(half.dtype)


def _overwrite(weight: Any, average: Any, half: Any) -> None:
    weight[...] = average
    if half is not None:
        half[...] = weight.astype(half.dtype)


def finalize(optimizer: Any, entries: list[tuple[str, Any, Any]]) -> None:
    """Each (parameter name, weight, half copy or None) of ``entries`` overwritten with its average
    (Keras's ``finalize_variable_values``); nothing without ``use_ema`` or for a weight never updated."""
    if not optimizer.use_ema:
        return
    for name, weight, half in entries:
        average = optimizer.state.get(name, {}).get(EMA_SLOT)
        if average is not None and optimizer.steps.get(name, 0) > 0:
            _overwrite(weight, average, half)
