"""Activations: the table of those a Dense layer accepts (``table``), and Keras's activation
functions (``keras.activations.relu`` ...) as callables on arrays, computed by the NumPy backend's
host formulas. Names follow Keras (``get``: case-insensitive, 'swish' is silu, and Keras's or
fcgpu's activation functions by name); numerics follow PyTorch's torch.nn.functional."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..backends.numpy.activations import HOST
from .table import (
    ACTIVATIONS, ALIASES, GELU_KAPPA, LEAKY_RELU_SLOPE, SELU_ALPHA, SELU_SCALE, SOFTPLUS_THRESHOLD, Activation, get,
    get_activation,
)

__all__ = ["ACTIVATIONS", "Activation", "get", "get_activation", "linear", "relu", "sigmoid", "tanh", "softmax", "gelu",
           "leaky_relu", "elu", "selu", "silu", "softplus", "softsign", "swish"]


def _function(name: str) -> Callable[[Any], np.ndarray]:
    def apply(x: Any) -> np.ndarray:  # a float32 or float64 copy of x (float64 for ints), its last axis the rows'
        a = np.array(x, dtype=np.result_type(np.asarray(x).dtype, np.float32), ndmin=1)
        HOST[name].forward(a.reshape(-1, a.shape[-1]), a.reshape(-1, a.shape[-1]), lambda s, d, t="": np.empty(s, d))
        return a.reshape(np.shape(x))

    apply.__name__ = apply.__qualname__ = name
    return apply


linear, relu, sigmoid, tanh, softmax, gelu, leaky_relu, elu, selu, silu, softplus, softsign = map(_function, (
    "linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu", "elu", "selu", "silu", "softplus", "softsign"))
swish = silu
