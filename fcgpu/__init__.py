"""fcgpu: fully connected layers with one forward/backward pass for NumPy (CPU) and CuPy (GPU)."""
from __future__ import annotations

from . import activations, initializers, losses, optimizers
from .backends import (
    BackendMismatch,
    BackendUnavailable,
    available_backends,
    backend_info,
    get_backend,
    set_backend,
    to_numpy,
    use_backend,
)
from .initializers import set_seed
from .io import load_model
from .layers import Dense
from .model import Sequential

__version__ = "0.1.0"

__all__ = [
    "BackendMismatch",
    "BackendUnavailable",
    "Dense",
    "Sequential",
    "activations",
    "available_backends",
    "backend_info",
    "get_backend",
    "initializers",
    "load_model",
    "losses",
    "optimizers",
    "set_backend",
    "set_seed",
    "to_numpy",
    "use_backend",
]
