"""Layers: the shared base and protocol (``base``) and the fully connected layer (``dense``)."""
from __future__ import annotations

from .base import Buffers, Layer
from .dense import FLOAT_DTYPES, Dense

__all__ = ["Buffers", "Dense", "FLOAT_DTYPES", "Layer"]
