"""Learning-rate schedules with Keras 3's formulas: ``learning_rate=schedule`` in any optimizer.

A schedule maps the optimizer's iteration count (the number of updates applied so far, 0 for the
first update) to a learning rate, computed in double on the host once per step. Each schedule's
``get_config`` is Keras's; ``serialize`` / ``deserialize`` wrap it as
``{"class_name": ..., "config": {...}}``, the form an optimizer's config holds (saved as JSON).
Formulas: keras/src/optimizers/schedules/learning_rate_schedule.py.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..saving.config_objects import ConfigObject

__all__ = [
    "LearningRateSchedule",
    "ExponentialDecay",
    "CosineDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecayRestarts",
    "serialize",
    "deserialize",
    "get",
]


def _finite(value: Any, argument: str, low: float = -math.inf, low_open: bool = False) -> float:
    """``value`` checked: a finite number (>= or > ``low``); an int stays an int, as in Keras's configs."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < low or (low_open and number == low):
        bound = f" {'>' if low_open else '>='} {low}" if low > -math.inf else ""
        raise ValueError(f"{argument}: expected a finite number{bound}, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else number


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"name: expected a string, got {value!r}")
    return value


def _flag(value: Any, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}: expected True or False, got {value!r}")
    return bool(value)


class LearningRateSchedule(ConfigObject):
    """Base class: ``schedule(step)`` is the learning rate at iteration ``step`` (a float). Its config
    is its constructor's arguments, kept under their own names (``ConfigObject.get_config``)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError(f"learning-rate schedule {type(self).__name__} must define __call__(step)")


class _RateDecay(LearningRateSchedule):
    """The arguments of ExponentialDecay and InverseTimeDecay, and their progress step / decay_steps
    (floored when ``staircase``); ``name`` defaults to the class's name, as in Keras."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        decay_rate: float,
        staircase: bool = False,
        name: str | None = None,
    ) -> None:
        self.initial_learning_rate = _finite(initial_learning_rate, "initial_learning_rate", 0.0)
        self.decay_steps = _finite(decay_steps, "decay_steps", 0.0, low_open=True)
        self.decay_rate = _finite(decay_rate, "decay_rate", 0.0)
        self.staircase = _flag(staircase, "staircase")
        self.name = _name(type(self).__name__ if name is None else name)

    def progress(self, step: int) -> float:
        p = step / self.decay_steps
        return math.floor(p) if self.staircase else p


class ExponentialDecay(_RateDecay):
    """initial_learning_rate * decay_rate ** (step / decay_steps), the exponent floored when ``staircase``."""

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate * self.decay_rate ** self.progress(step)


class CosineDecay(LearningRateSchedule):
    """Cosine decay from the initial rate (or, after a linear warmup from it to ``warmup_target``
    over ``warmup_steps``, from ``warmup_target``) to ``alpha`` times that over ``decay_steps``:
    lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: float = 0,
    ) -> None:
        self.initial_learning_rate = _finite(initial_learning_rate, "initial_learning_rate", 0.0)
        self.decay_steps = _finite(decay_steps, "decay_steps", 0.0, low_open=True)
        self.alpha = _finite(alpha, "alpha", 0.0)
        self.name = _name(name)
        self.warmup_target = None if warmup_target is None else _finite(warmup_target, "warmup_target", 0.0)
        self.warmup_steps = _finite(warmup_steps, "warmup_steps", 0.0)

    def _decayed(self, step: float, start: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step / self.decay_steps)))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self._decayed(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return (self.warmup_target - self.initial_learning_rate) * fraction + self.initial_learning_rate
        return self._decayed(step - self.warmup_steps, self.warmup_target)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <= boundaries[i],
    values[-1] after boundaries[-1]; boundaries strictly increasing, one fewer than values."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float], name: str = "PiecewiseConstant") -> None:
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise TypeError(
                f"boundaries and values: expected lists of numbers, got {type(boundaries).__name__} and "
                f"{type(values).__name__}"
            )
        if not boundaries or len(boundaries) != len(values) - 1:
            raise ValueError(
                f"boundaries and values: expected at least one boundary and one more value than boundaries, got "
                f"{len(boundaries)} boundaries and {len(values)} values"
            )
        self.boundaries = [_finite(b, f"boundaries[{i}]") for i, b in enumerate(boundaries)]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries: expected strictly increasing numbers, got {list(boundaries)}")
        self.values = [_finite(v, f"values[{i}]", 0.0) for i, v in enumerate(values)]
        self.name = _name(name)

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class PolynomialDecay(LearningRateSchedule):
    """(initial_learning_rate - end_learning_rate) * (1 - step / decay_steps) ** power + end_learning_rate,
    the step held at ``decay_steps`` (then ``end_learning_rate``), or with ``cycle`` the decay
    restarted over the first multiple of ``decay_steps`` beyond the step (1 at step 0)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: float,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        self.initial_learning_rate = _finite(initial_learning_rate, "initial_learning_rate", 0.0)
        self.decay_steps = _finite(decay_steps, "decay_steps", 0.0, low_open=True)
        self.end_learning_rate = _finite(end_learning_rate, "end_learning_rate", 0.0)
        self.power = _finite(power, "power", 0.0)
        self.cycle = _flag(cycle, "cycle")
        self.name = _name(name)

    def __call__(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / self.decay_steps))
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * (1.0 - p) ** self.power + self.end_learning_rate


class InverseTimeDecay(_RateDecay):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps), the quotient floored when ``staircase``."""

    def __call__(self, step: int) -> float:
        return self.initial_learning_rate / (1.0 + self.decay_rate * self.progress(step))


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): the first period lasts ``first_decay_steps``, each
    next one ``t_mul`` times longer and starting from ``m_mul`` times the previous peak; within a
    period lr0 * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * fraction)) + alpha)."""

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: float,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        self.initial_learning_rate = _finite(initial_learning_rate, "initial_learning_rate", 0.0)
        self.first_decay_steps = _finite(first_decay_steps, "first_decay_steps", 0.0, low_open=True)
        self.t_mul = _finite(t_mul, "t_mul", 0.0, low_open=True)
        self.m_mul = _finite(m_mul, "m_mul", 0.0)
        self.alpha = _finite(alpha, "alpha", 0.0)
        self.name = _name(name)

    def __call__(self, step: int) -> float:
        fraction = step / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul**restart) / (1.0 - self.t_mul)  # periods before this one, in first periods
            fraction = (fraction - done) / self.t_mul**restart
        cosine = 0.5 * self.m_mul**restart * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)


_SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls
    for cls in (ExponentialDecay, CosineDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay,
                CosineDecayRestarts)
}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": schedule.get_config()}`` (JSON-ready)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: Any) -> LearningRateSchedule:
    """The schedule ``serialize`` described."""
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"learning_rate: expected a schedule config {{'class_name': ..., 'config': {{...}}}}, got {config!r}")
    cls = _SCHEDULES.get(config.get("class_name"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"learning_rate: unknown schedule {config.get('class_name')!r}; known: {sorted(_SCHEDULES)}")
    return cls.from_config(dict(config.get("config", {})))


def get(identifier: LearningRateSchedule | dict[str, Any]) -> LearningRateSchedule:
    """A schedule from an instance or a ``serialize`` dict."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    return deserialize(identifier)
