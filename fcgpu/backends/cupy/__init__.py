"""The CuPy backend: dispatch (``backend``, ``layer_ops``, ``updates``) apart from what it launches
(``kernel_specs``: each kernel's signature and body; ``kernel_sources``: the ``.cuh`` headers).

Nothing here imports CuPy at import time: the backend is built on a module handed to it (real CuPy,
or the host stand-in ``fcgpu.testing.fake_cupy``)."""
from __future__ import annotations

from .backend import CupyBackend

__all__ = ["CupyBackend"]
