"""Layers: the shared base and protocol (``base``), the fully connected layer (``dense``), layers
without parameters (``elementwise``: ``dropout``, ``activation``, ``noise``), layers with per-feature
variables (``variables``: ``normalization``, ``preprocessing``, PReLU), Keras's activation layers
(``activation_layers``) and the model's ``Input``."""
from __future__ import annotations

from .activation import Activation
from .activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .base import Buffers, Layer
from .dense import FLOAT_DTYPES, Dense
from .dropout import Dropout
from .input import Input, InputLayer
from .merging import (
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average, concatenate, maximum, minimum,
    multiply, subtract,
)
from .reshaping import Flatten, Reshape
from .noise import GaussianNoise
from .normalization import BatchNormalization, LayerNormalization
from .preprocessing import Normalization


__all__ = [
    "Activation", "Add", "Average", "BatchNormalization", "Buffers", "Concatenate", "Dense", "Dropout", "ELU",
    "FLOAT_DTYPES", "Flatten", "GaussianNoise", "Input", "InputLayer", "Layer", "LayerNormalization", "LeakyReLU",
    "Maximum", "Minimum", "Multiply", "Normalization", "PReLU", "ReLU", "Reshape", "Softmax", "Subtract", "add",
    "average", "concatenate", "maximum", "minimum", "multiply", "subtract",
]
