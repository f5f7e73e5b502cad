"""Process-wide switches of how fcgpu runs a model (not what it computes): ``set_fusion``, ``set_graphs``.

The values live in ``settings``, one small object read as a plain attribute where a step checks
it (no call per step); change them through the functions below.
"""
from __future__ import annotations

__all__ = ["fusion_enabled", "graphs_enabled", "set_fusion", "set_graphs", "settings"]


class Settings:
    """The switches' current values. ``fusion``: whether neighbouring layers may run as one pass;
    ``graphs``: whether fit may capture its training step as a CUDA graph (``training.graph_step``):
    True, False, or "auto" (the default: on real CuPy, where fcgpu's own tiled GEMMs run in the
    graph; the host stand-in runs its steps one by one unless graphs are set True)."""

    def __init__(self) -> None:
        self.fusion = True
        self.graphs: bool | str = "auto"


settings = Settings()


def set_fusion(enabled: bool) -> None:
    """Turn fusion on (the default) or off: with it off every layer runs its own forward and backward
    (more device operations, the same numbers). Takes effect at the next forward or training step."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True or False, got {enabled!r}")
    settings.fusion = enabled


def fusion_enabled() -> bool:
    """Whether fusion is on (``set_fusion``)."""
    return settings.fusion


def set_graphs(enabled: bool | str) -> None:
    """CUDA graphs on, off or "auto" (the default): with them on, fit on the CuPy backend captures the
    training step of an eligible model once and replays it (``fcgpu.training.graph_step``); off, every
    step launches its kernels one by one; "auto" captures on real CuPy and not on the host stand-in
    (``fcgpu.testing``), whose capture GEMM is a plain loop. Takes effect at the next fit."""
    if not (isinstance(enabled, bool) or enabled == "auto"):
        raise TypeError(f"enabled: expected True, False or 'auto', got {enabled!r}")
    settings.graphs = enabled


def graphs_enabled() -> bool | str:
    """The CUDA-graph setting (``set_graphs``): True, False or "auto"."""
    return settings.graphs
