"""Parameter initialisers, drawn on the host from one seeded generator.

Drawing on the host (float64, then cast) is what makes one seed give bit-identical
parameters on every backend.
"""
from __future__ import annotations

import contextvars
import math
from typing import Callable

import numpy as np

class _Default:
    """The process-wide generator that threads start from; ``set_seed`` replaces it."""

    rng = np.random.default_rng()


_default = _Default()
# The generator of this thread or task once set_seed ran in it (a context variable, as the backend).
_current: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar("fcgpu_rng", default=None)


def set_seed(seed: int) -> None:
    """Seed parameter initialisation (and shuffling in ``fit``), here and in threads started afterwards."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    _default.rng = rng
    _current.set(rng)


def get_rng() -> np.random.Generator:
    """The generator that initialisers and shuffling draw from."""
    return _current.get() or _default.rng


def _truncated_normal(shape: tuple[int, ...], stddev: float) -> np.ndarray:
    # Keras: resample draws beyond two standard deviations.
    out = get_rng().standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = get_rng().standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def glorot_uniform(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return get_rng().uniform(-limit, limit, shape)


def glorot_normal(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978)


def he_uniform(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return get_rng().uniform(-limit, limit, shape)


def he_normal(shape: tuple[int, ...]) -> np.ndarray:
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / fan_in) / 0.87962566103423978)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape)


def ones(shape: tuple[int, ...]) -> np.ndarray:
    return np.ones(shape)


INITIALIZERS: dict[str, Callable[[tuple[int, ...]], np.ndarray]] = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones)
}


def get_initializer(name: str, argument: str) -> Callable[[tuple[int, ...]], np.ndarray]:
    """Resolve an initialiser by name (names only, so that a saved model describes itself);
    ``argument`` names the caller's parameter in errors."""
    if not isinstance(name, str) or name.lower() not in INITIALIZERS:
        raise ValueError(f"{argument}: expected one of {sorted(INITIALIZERS)}, got {name!r}")
    return INITIALIZERS[name.lower()]
