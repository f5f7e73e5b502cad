"""Finds and reads the CUDA sources in ``kernels/`` (installed inside the package as ``fcgpu/kernels``)."""
from __future__ import annotations

import functools
from pathlib import Path

HEADERS = ("common.cuh", "activations.cuh", "losses.cuh", "blocks.cuh", "optimizers.cuh", "random.cuh", "layers.cuh")


def kernels_dir() -> Path:
    """The folder holding the ``.cuh`` files: inside the installed package, or the checkout's ``kernels/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / "common.cuh").is_file():
            return candidate
    raise FileNotFoundError(f"fcgpu's CUDA sources (kernels/*.cuh) were not found beside {here}")


@functools.lru_cache(maxsize=None)
def read(name: str) -> str:
    return (kernels_dir() / name).read_text()


@functools.lru_cache(maxsize=None)
def preamble() -> str:
    """All headers concatenated, in dependency order: the ElementwiseKernel preamble."""
    return "\n".join(read(name) for name in HEADERS)
