"""Objects described wholly by their Keras config (learning-rate schedules, regularizers): rebuilt
by ``from_config(get_config())``, shown and compared through their config."""
from __future__ import annotations

import inspect
from typing import Any, TypeVar

__all__ = ["ConfigObject"]

C = TypeVar("C", bound="ConfigObject")


class ConfigObject:
    """``get_config()`` (the constructor's arguments, JSON-ready) is the whole object. By default
    the object keeps each argument of its constructor under the argument's name, and the config is
    those attributes in the constructor's order (lists and tuples as lists)."""

    def get_config(self) -> dict[str, Any]:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {n: list(v) if isinstance(v := getattr(self, n), tuple) else v for n in names}

    @classmethod
    def from_config(cls: type[C], config: dict[str, Any]) -> C:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
