"""Reads the CUDA sources: ``fcgpu/backends/cupy/kernels/`` (in the checkout a link to the repository's ``kernels/``,
in a wheel a copy of it)."""
from __future__ import annotations

import functools
from pathlib import Path

# The ElementwiseKernel preamble. The own GEMMs' headers (gemm.cuh, gemm_wmma.cuh) are read by
# ``gemm.module_code`` into RawModules of their own, not into this preamble.
HEADERS = ("common.cuh", "activations.cuh", "losses.cuh", "blocks.cuh", "optimizers.cuh", "random.cuh", "layers.cuh",
           "graphs.cuh")


def kernels_dir() -> Path:
    """The folder holding the ``.cuh`` files."""
    return Path(__file__).resolve().parent / "kernels"


@functools.lru_cache(maxsize=None)
def read(name: str) -> str:
    return (kernels_dir() / name).read_text()


@functools.lru_cache(maxsize=None)
def preamble() -> str:
    """All headers concatenated, in dependency order: the ElementwiseKernel preamble."""
    return "\n".join(read(name) for name in HEADERS)
