"""fcgpu: fully connected layers with one forward/backward pass for NumPy (CPU) and CuPy (GPU)."""
from __future__ import annotations

from . import (
    activations,
    callbacks,
    config,
    initializers,
    interop,
    losses,
    layers,
    metrics,
    mixed_precision,
    models,
    ops,
    optimizers,
    regularizers,
    saving,
    utils,
)
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
from .mixed_precision import set_tf32
from .layers import (
    ELU, Activation, BatchNormalization, Dense, Dropout, GaussianNoise, Input, InputLayer, LayerNormalization, LeakyReLU,
    Normalization, PReLU, ReLU, Softmax,
)
from .models import Model, Sequential
from .saving import ModelFileError, load_model
from .training import History

from importlib.metadata import PackageNotFoundError as _NotInstalled, version as _version

try:
    __version__ = _version("fcgpu")  # one source: pyproject.toml
except _NotInstalled:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ELU", "BatchNormalization", "GaussianNoise", "LayerNormalization", "LeakyReLU", "Normalization", "PReLU", "ReLU",
    "Softmax",
    "Activation",
    "BackendMismatch",
    "BackendUnavailable",
    "Dense",
    "Dropout",
    "History",
    "Input",
    "InputLayer",
    "Model",
    "ModelFileError",
    "Sequential",
    "activations",
    "callbacks",
    "available_backends",
    "backend_info",
    "get_backend",
    "initializers",
    "interop",
    "load_model",
    "losses",
    "layers",
    "metrics",
    "mixed_precision",
    "models",
    "ops",
    "optimizers",
    "regularizers",
    "saving",
    "set_backend",
    "set_seed",
    "set_tf32",
    "to_numpy",
    "use_backend",
    "utils",
]
