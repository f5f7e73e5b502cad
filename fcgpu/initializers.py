"""Parameter initialisers with Keras 3's names, drawn on the host from one seeded generator.

Drawing on the host (float64, then cast) is what makes one seed give bit-identical parameters on
every backend. A layer takes a name ('he_normal') or an instance of a class below (``HeNormal()``,
``RandomNormal(stddev=0.1, seed=3)``): an instance with a ``seed`` draws from its own generator
seeded so, one without from ``set_seed``'s. Keras's defaults throughout (``RandomNormal`` stddev
0.05, truncated draws resampled beyond two standard deviations).
"""
from __future__ import annotations

import contextvars
import math
from typing import Any, Callable

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


_TRUNCATED_STD = 0.87962566103423978  # the standard deviation of a unit normal truncated at +-2


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], stddev: float, mean: float = 0.0) -> np.ndarray:
    # Keras: resample draws beyond two standard deviations.
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return mean + out * stddev


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


class Initializer:
    """Base class: ``init(shape, dtype=None)`` gives a host array of ``shape``; ``get_config()``."""

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed: expected None or a non-negative int, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        rng = get_rng() if self.seed is None else np.random.default_rng(self.seed)
        values = self.sample(rng, shape)
        return values if dtype is None else values.astype(dtype)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Initializer":
        return cls(**config)


class Zeros(Initializer):
    def __init__(self) -> None:
        super().__init__()

    def sample(self, rng, shape):
        return np.zeros(shape)

    def get_config(self):
        return {}


class Ones(Zeros):
    def sample(self, rng, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            raise ValueError(f"value: expected a finite number, got {value!r}")
        self.value = float(value)

    def sample(self, rng, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def sample(self, rng, shape):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def sample(self, rng, shape):
        return _truncated_normal(rng, shape, self.stddev, self.mean)


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None) -> None:
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def sample(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class _Scaled(Initializer):
    """Keras's VarianceScaling for its named cases: variance ``scale`` / fan, normal (truncated) or uniform."""

    scale, mode, uniform = 1.0, "fan_in", False

    def sample(self, rng, shape):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.uniform:
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        return _truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_STD)


class GlorotUniform(_Scaled):
    mode, uniform = "fan_avg", True


class GlorotNormal(_Scaled):
    mode = "fan_avg"


class HeUniform(_Scaled):
    scale, uniform = 2.0, True


class HeNormal(_Scaled):
    scale = 2.0


class LecunUniform(_Scaled):
    uniform = True


class LecunNormal(_Scaled):
    pass


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``, from the QR decomposition of a normal draw."""

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.gain = float(gain)

    def sample(self, rng, shape):
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        cols = shape[-1]
        flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))
        q = q.T if rows < cols else q
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


CLASSES: dict[str, type[Initializer]] = {c.__name__: c for c in (
    Zeros, Ones, Constant, RandomNormal, TruncatedNormal, RandomUniform, GlorotUniform, GlorotNormal, HeUniform,
    HeNormal, LecunUniform, LecunNormal, Orthogonal)}
INITIALIZERS: dict[str, type[Initializer]] = {
    "zeros": Zeros, "ones": Ones, "random_normal": RandomNormal, "truncated_normal": TruncatedNormal,
    "random_uniform": RandomUniform, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal,
}


def serialize(initializer: str | Initializer) -> str | dict[str, Any]:
    """A name stays a name; an instance is ``{"class_name": ..., "config": ...}`` (Keras's shape)."""
    if isinstance(initializer, Initializer):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    return initializer


def get_initializer(identifier: Any, argument: str) -> Initializer:
    """An initializer from a name ('he_normal'), an instance, or ``serialize``'s dict; ``argument``
    names the caller's parameter in errors."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in INITIALIZERS:
        return INITIALIZERS[identifier.lower()]()
    if isinstance(identifier, str) and identifier in CLASSES:  # Keras also takes 'HeNormal'
        return CLASSES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        try:
            return CLASSES[identifier["class_name"]].from_config(dict(identifier.get("config") or {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{argument}: the config {identifier!r} does not fit: {e}") from None
    raise ValueError(
        f"{argument}: expected one of {sorted(INITIALIZERS)} or an fcgpu.initializers class instance "
        f"({', '.join(sorted(CLASSES))}), got {identifier!r}"
    )
