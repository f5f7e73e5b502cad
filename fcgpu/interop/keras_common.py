"""The small pieces every Keras 3 config translation shares: the error type, serialized-object
unpacking, dtype policies, activation names, initializers, regularizers, flags and Keras's names.

Pure data (no file, no Keras import); ``keras_layers``, ``keras_models`` and ``keras_compile``
build on it. Nothing in a config is ever executed or imported.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = [
    "KERAS_ACTIVATIONS",
    "POLICIES",
    "SEED_LIMIT",
    "UnsupportedKeras",
    "activation_from_keras",
    "activation_to_keras",
    "compute_dtype",
    "flag",
    "initializer_from_keras",
    "initializer_to_keras",
    "inner",
    "number",
    "policy_from_keras",
    "policy_to_keras",
    "regularizer_from_keras",
    "regularizer_to_keras",
    "snake_case",
    "storage_keys",
]

# Keras activation names fcgpu computes the same way (Keras's defaults: leaky_relu's slope 0.2,
# elu's alpha 1, gelu exact); 'swish' is Keras's alias of silu.
KERAS_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "gelu": "gelu", "leaky_relu": "leaky_relu", "elu": "elu", "selu": "selu", "silu": "silu",
    "swish": "silu", "softplus": "softplus", "softsign": "softsign",
}
_TO_KERAS_ACTIVATION = {v: v for v in KERAS_ACTIVATIONS.values()}
_INITIALIZERS = {
    "GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal", "HeUniform": "he_uniform",
    "HeNormal": "he_normal", "Zeros": "zeros", "Ones": "ones",
}
_TO_KERAS_INITIALIZER = {v: k for k, v in _INITIALIZERS.items()}
_REGULARIZERS = {"L1": ("l1",), "L2": ("l2",), "L1L2": ("l1", "l2")}
POLICIES = ("float32", "float64", "float16", "mixed_float16", "mixed_bfloat16")
SEED_LIMIT = 2**31  # Keras's seed generators take 32-bit seeds on every backend


class UnsupportedKeras(ValueError):
    """A Keras config that fcgpu cannot represent (or an fcgpu model Keras cannot): the message names what."""


def inner(entry: Any, what: str) -> tuple[str, dict[str, Any]]:
    """(class_name, config) of a serialized Keras object ``{"class_name", "config", ...}``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise UnsupportedKeras(f"{what}: expected a serialized Keras object with a 'class_name', got {type(entry).__name__}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise UnsupportedKeras(f"{what}: the config of {entry['class_name']!r} is a {type(config).__name__}, not a dict")
    return entry["class_name"], config


def policy_from_keras(value: Any, what: str) -> str | None:
    if value is None:
        return None
    name = value
    if isinstance(value, dict):
        name = value.get("config", {}).get("name") if isinstance(value.get("config"), dict) else None
        if value.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
            raise UnsupportedKeras(f"{what}: dtype policy {value.get('class_name')!r} (quantized?) is not supported")
    if name not in POLICIES:
        raise UnsupportedKeras(f"{what}: dtype {name!r} is not supported; fcgpu has {list(POLICIES)}")
    return name


def policy_to_keras(name: str) -> dict[str, Any]:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def compute_dtype(policy: str) -> str:
    """The dtype a layer of this policy outputs ('mixed_float16' -> 'float16')."""
    return policy[len("mixed_"):] if policy.startswith("mixed_") else policy


def activation_from_keras(value: Any, what: str) -> str:
    if value is None:
        return "linear"
    if isinstance(value, str) and value in KERAS_ACTIVATIONS:
        return KERAS_ACTIVATIONS[value]
    if isinstance(value, dict):  # a function serialized by reference: custom code, never run
        shown = value.get("registered_name") or value.get("config")
        raise UnsupportedKeras(f"{what}: activation {shown!r} is a custom function; fcgpu runs no code from a file")
    raise UnsupportedKeras(f"{what}: activation {value!r} is not one fcgpu has ({sorted(KERAS_ACTIVATIONS)})")


def activation_to_keras(name: Any, layer: str) -> str:
    if name not in _TO_KERAS_ACTIVATION:
        raise UnsupportedKeras(
            f"layer {layer!r}: activation {name!r} has no Keras name (Keras's gelu is the exact one); "
            f"save to a .fcgpu file instead"
        )
    return name


def initializer_from_keras(value: Any, default: str) -> str:
    """fcgpu's initializer name; one fcgpu lacks becomes the default (a loaded layer's weights come
    from the file, so the initializer only matters if the layer is built again)."""
    if isinstance(value, str):
        name = value.lower()
        return name if name in _TO_KERAS_INITIALIZER else default
    if isinstance(value, dict):
        return _INITIALIZERS.get(value.get("class_name"), default)  # type: ignore[arg-type]
    return default


def initializer_to_keras(name: Any, default: str = "GlorotUniform") -> dict[str, Any]:
    if isinstance(name, dict):  # an fcgpu initializer instance, serialized as Keras serializes its own
        return {"module": "keras.initializers", "class_name": name["class_name"], "config": dict(name["config"]),
                "registered_name": None}
    cls = _TO_KERAS_INITIALIZER.get(str(name).lower(), default)
    config: dict[str, Any] = {} if cls in ("Zeros", "Ones") else {"seed": None}
    return {"module": "keras.initializers", "class_name": cls, "config": config, "registered_name": None}


def regularizer_from_keras(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("l1", "l2", "l1_l2"):
        return value.lower()
    cls, config = inner(value, what)
    if cls not in _REGULARIZERS:
        raise UnsupportedKeras(f"{what}: regularizer {cls!r} is not supported (fcgpu has L1, L2, L1L2)")
    return {"class_name": cls, "config": {k: float(config.get(k, 0.0)) for k in _REGULARIZERS[cls]}}


def regularizer_to_keras(value: Any) -> Any:
    if value is None:
        return None
    return {"module": "keras.regularizers", "class_name": value["class_name"], "config": dict(value["config"]),
            "registered_name": None}


def flag(value: Any, key: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise UnsupportedKeras(f"{what}: {key} {value!r} is not true or false")
    return value


def number(value: Any, key: str, what: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number in [low, high] from a config, else UnsupportedKeras naming it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        raise UnsupportedKeras(f"{what}: {key} {value!r} is not a finite number in [{low}, {high}]")
    return float(value)


def snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: 'Dense' -> 'dense', 'BatchNormalization' -> 'batch_normalization'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def storage_keys(class_names: list[str]) -> list[str]:
    """Where Keras stores each layer of a model in a weights file: ``layers/<snake class name>``
    numbered per class ('dense', 'dense_1', 'dropout', ...), as ``saving_lib`` names container entries."""
    used: dict[str, int] = {}
    keys = []
    for cls in class_names:
        base = snake_case(cls)
        if base in used:
            used[base] += 1
            keys.append(f"layers/{base}_{used[base]}")
        else:
            used[base] = 0
            keys.append(f"layers/{base}")
    return keys
