"""``keras.models``: the model classes and the functions that make models from files and configs."""
from __future__ import annotations

import json
from typing import Any

from .base import Model, model_from_config
from .functional import Functional
from .sequential import Sequential
from ..saving import ModelFileError, load_model, save_model

__all__ = [
    "Functional", "Model", "Sequential", "ModelFileError", "clone_model", "load_model", "save_model", "model_from_json", "model_from_config",
]


def clone_model(model: Any) -> Any:
    """Keras's ``clone_model``: the same architecture with new weights (drawn from the seed), uncompiled."""
    return model_from_config(model.get_config())


def model_from_json(json_string: str) -> Any:
    """The model ``model.to_json()`` described. The JSON only names fcgpu's registered classes:
    nothing in it is run. A string that is not such a JSON is a ValueError saying why."""
    if not isinstance(json_string, (str, bytes)):
        raise TypeError(f"json_string: expected a JSON string from model.to_json(), got {type(json_string).__name__}")
    try:
        config = json.loads(json_string)
    except json.JSONDecodeError as e:
        raise ValueError(f"json_string: not valid JSON ({e})") from None
    return model_from_config(config)
