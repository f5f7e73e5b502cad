"""Checks of the optimizers' arguments: numbers in a range, two spellings of one argument, a learning rate."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .schedules import LearningRateSchedule

__all__ = ["check_number", "checked_rate", "one_of"]


def check_number(value: Any, argument: str, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or [low, high)), else an error naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a number, got {value!r}")
    value = float(value)
    if not (low <= value and (value < high if high_open else value <= high)):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{argument}: expected a value in {bound}, got {value!r}")
    return value


def one_of(value: Any, alias_value: Any, name: str, alias: str, default: Any) -> tuple[Any, str]:
    """(the value given as ``name`` or as its alias ``alias``, the spelling used); ``default`` when
    neither was given (both None); both given is an error."""
    if value is not None and alias_value is not None:
        raise TypeError(f"{name} and {alias}: {alias} is another name for {name}; give one of them, not both")
    if alias_value is not None:
        return alias_value, alias
    return (default if value is None else value), name


def checked_rate(value: Any, argument: str) -> float | LearningRateSchedule:
    """A learning rate: a schedule as it is, or a finite number >= 0 as a float."""
    if isinstance(value, LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{argument}: expected a number or a schedule from fcgpu.optimizers.schedules, got {value!r}"
        )
    rate = float(value)
    if not (0.0 <= rate < math.inf):  # 0 is allowed, as in Keras and PyTorch (a schedule may reach it)
        raise ValueError(f"{argument}: expected a value in [0, inf) (a finite number >= 0), got {value!r}")
    return rate
