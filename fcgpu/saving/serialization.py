"""The registry of classes that a saved config can name: ``{"class_name": ..., ...}`` -> object.

Layers and models register themselves where they are defined; the saver only calls
``deserialize`` here, so saving imports no model or layer module (no import cycle).
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

__all__ = ["register", "deserialize", "registered"]

_CLASSES: dict[str, Any] = {}

C = TypeVar("C")


def register(cls: C) -> C:
    """Class decorator: ``cls.from_config`` rebuilds objects whose config names ``cls.__name__``."""
    _CLASSES[cls.__name__] = cls  # type: ignore[attr-defined]
    return cls


def register_alias(name: str, cls: type) -> None:
    """Configs naming ``name`` (an earlier class name) rebuild ``cls``."""
    _CLASSES[name] = cls


def registered() -> list[str]:
    return sorted(_CLASSES)


def deserialize(config: Any, what: str = "config") -> Any:
    """The object a ``get_config()`` dict describes, through its class's ``from_config``."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"{what}: expected a dict with a 'class_name', got {type(config).__name__}")
    cls = _CLASSES.get(config["class_name"])
    if cls is None:
        raise ValueError(f"{what}: unknown class_name {config['class_name']!r}; known: {registered()}")
    from_config: Callable[[dict[str, Any]], Any] = cls.from_config
    return from_config(config)
