"""Layers: the shared base and protocol (``base``), the fully connected layer (``dense``), layers
without parameters (``elementwise``: ``dropout``, ``activation``) and the model's ``Input``."""
from __future__ import annotations

from .activation import Activation
from .base import Buffers, Layer
from .dense import FLOAT_DTYPES, Dense
from .dropout import Dropout
from .input import Input

InputLayer = Input  # Keras's layers.InputLayer(shape=...), the first entry of a Sequential

__all__ = ["Activation", "Buffers", "Dense", "Dropout", "FLOAT_DTYPES", "Input", "InputLayer", "Layer"]
