"""Process-wide switches of how fcgpu runs a model (not what it computes): ``set_fusion``.

The values live in ``settings``, one small object read as a plain attribute where a step checks
it (no call per step); change them through the functions below.
"""
from __future__ import annotations

__all__ = ["fusion_enabled", "set_fusion", "settings"]


class Settings:
    """The switches' current values. ``fusion``: whether neighbouring layers may run as one pass."""

    def __init__(self) -> None:
        self.fusion = True


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
