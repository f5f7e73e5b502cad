"""Layers: the shared base and protocol (``base``), the fully connected layer (``dense``), layers
without parameters (``elementwise``: ``dropout``, ``activation``) and the model's ``Input``."""
from __future__ import annotations

from .activation import Activation
from .base import Buffers, Layer
from .dense import FLOAT_DTYPES, Dense
from .dropout import Dropout
from .input import Input, InputLayer
from .merging import (
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average, concatenate, maximum, minimum,
    multiply, subtract,
)
from .reshaping import Flatten, Reshape


__all__ = [
    "Activation", "Add", "Average", "Buffers", "Concatenate", "Dense", "Dropout", "FLOAT_DTYPES", "Flatten", "Input",
    "InputLayer", "Layer", "Maximum", "Minimum", "Multiply", "Reshape", "Subtract", "add", "average", "concatenate",
    "maximum", "minimum", "multiply", "subtract",
]
