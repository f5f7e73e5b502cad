"""Dense's weight constraints in Keras 3 files: Keras's serialized MaxNorm, NonNeg, UnitNorm and
MinMaxNorm are fcgpu's (``fcgpu.constraints``: the same classes, arguments and formulas)."""
from __future__ import annotations

from typing import Any

__all__ = ["constraint_from_keras", "constraints_from_keras", "constraints_to_keras"]

_CLASSES = ("MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm")
_KEYS = ("kernel_constraint", "bias_constraint")


def constraint_from_keras(entry: Any) -> dict[str, Any] | None:
    """fcgpu's serialized constraint for a Keras one of these classes, or None (another, or none)."""
    if isinstance(entry, dict) and entry.get("class_name") in _CLASSES and isinstance(entry.get("config") or {}, dict):
        return {"class_name": entry["class_name"], "config": dict(entry.get("config") or {})}
    return None


def constraints_from_keras(config: dict[str, Any]) -> dict[str, Any]:
    """The constraints of a Keras Dense config, as fcgpu's Dense config entries."""
    found = {key: constraint_from_keras(config.get(key)) for key in _KEYS}
    return {key: entry for key, entry in found.items() if entry is not None}


def constraints_to_keras(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras Dense config's constraint entries for fcgpu's Dense config (None where there is none)."""
    out: dict[str, Any] = {}
    for key in _KEYS:
        entry = config.get(key)
        out[key] = None if not entry else {"module": "keras.constraints", "class_name": entry["class_name"],
                                           "config": dict(entry["config"]), "registered_name": None}
    return out
