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
from .input import Input
from .noise import GaussianNoise
from .normalization import BatchNormalization, LayerNormalization
from .preprocessing import Normalization

InputLayer = Input  # Keras's layers.InputLayer(shape=...), the first entry of a Sequential

__all__ = [
    "Activation", "BatchNormalization", "Buffers", "Dense", "Dropout", "ELU", "FLOAT_DTYPES", "GaussianNoise", "Input",
    "InputLayer", "Layer", "LayerNormalization", "LeakyReLU", "Normalization", "PReLU", "ReLU", "Softmax",
]
