"""Keras 3 configs <-> fcgpu configs: the JSON of a ``.keras`` archive's ``config.json``, one entry point.

The translation lives by concept: ``keras_common`` (the error type, dtype policies, activations,
initializers, regularizers, Keras's storage names), ``keras_layers`` (one layer's config, its
output shape and parameter count), ``keras_models`` (Sequential and functional models, nested
ones, the graph of a functional model) and ``keras_compile`` (loss, optimizer, metrics). This module
gathers their public names for the archive and weights readers and writers. Nothing in a config is
ever executed or imported; anything fcgpu does not compute as Keras does raises ``UnsupportedKeras``
naming every such part.
"""
from __future__ import annotations

from .keras_common import KERAS_ACTIVATIONS, UnsupportedKeras, storage_keys
from .keras_compile import compile_from_keras, compile_to_keras
from .keras_layers import layer_from_keras, layer_to_keras
from .keras_models import model_from_keras, model_to_keras, parameter_count

__all__ = [
    "KERAS_ACTIVATIONS",
    "UnsupportedKeras",
    "compile_from_keras",
    "compile_to_keras",
    "layer_from_keras",
    "layer_to_keras",
    "model_from_keras",
    "model_to_keras",
    "parameter_count",
    "storage_keys",
]
