"""The NumPy backend: the host implementation, and the reference the CUDA kernels are checked against."""
from __future__ import annotations

from .backend import NumpyBackend

__all__ = ["NumpyBackend"]
