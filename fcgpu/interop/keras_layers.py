"""Keras 3 layer configs <-> fcgpu layer configs, one layer at a time, and the shapes and parameter
counts those configs imply.

``layer_from_keras`` turns one serialized Keras layer into the fcgpu config that
``fcgpu.saving.serialization.deserialize`` builds; ``layer_to_keras`` does the reverse. The layers both
libraries compute the same way: Dense, Dropout, Activation, BatchNormalization, LayerNormalization,
Normalization (its mean, variance and count), ReLU, LeakyReLU, ELU, PReLU, Softmax, GaussianNoise,
Flatten, Reshape and the merges (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum).
Anything else, and any option fcgpu does not compute (constraints, LoRA, quantization, noise shapes,
renorm, rms_scaling, shared axes, another axis), raises ``UnsupportedKeras`` naming it. Models
(Sequential, Functional) are ``keras_models``'s.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .keras_constraints import constraint_from_keras, constraints_from_keras, constraints_to_keras
from .keras_common import (
    SEED_LIMIT,
    UnsupportedKeras,
    activation_from_keras,
    activation_to_keras,
    flag,
    initializer_from_keras,
    initializer_to_keras,
    inner,
    number,
    policy_from_keras,
    policy_to_keras,
    regularizer_from_keras,
    regularizer_to_keras,
)

__all__ = ["LAYERS", "MERGES", "layer_from_keras", "layer_to_keras", "output_shape", "parameter_count"]

MERGES = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_SAME_SHAPE = ("Dropout", "Activation", "BatchNormalization", "LayerNormalization", "Normalization", "ReLU",
               "LeakyReLU", "ELU", "PReLU", "Softmax", "GaussianNoise")
LAYERS = ("Dense", "Flatten", "Reshape", *_SAME_SHAPE, *MERGES)
_REFUSED = ("kernel_constraint", "bias_constraint", "beta_constraint", "gamma_constraint", "alpha_constraint",
            "activity_regularizer", "lora_rank", "quantization_config", "noise_shape", "renorm", "rms_scaling",
            "shared_axes", "synchronized")


def _axis(value: Any, what: str) -> int:
    """Keras's feature axis (-1, 1, [-1] or [1]); fcgpu normalizes the features of (batch, features) only."""
    v = value[0] if isinstance(value, list) and len(value) == 1 else value
    if isinstance(v, bool) or v not in (-1, 1):
        raise UnsupportedKeras(f"{what}: axis {value!r}; fcgpu's layers act on the features (axis -1) of (batch, features)")
    return -1


def _seed(value: Any, what: str) -> int | None:
    if value is not None and (type(value) is not int or value < 0):
        raise UnsupportedKeras(f"{what}: seed {value!r} is not a non-negative int")
    return value


def _statistic(value: Any, key: str, what: str) -> Any:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > 2**24 or not all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and abs(v) != float("inf") and v == v for v in values
    ):
        raise UnsupportedKeras(f"{what}: {key} is not a number or a list of finite numbers")
    return value


def _normalization_from_keras(cls: str, config: dict[str, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "axis": _axis(config.get("axis", -1), what),
        "epsilon": number(config.get("epsilon", 1e-3), "epsilon", what, 0.0),
        "center": flag(config.get("center", True), "center", what),
        "scale": flag(config.get("scale", True), "scale", what),
        "beta_initializer": initializer_from_keras(config.get("beta_initializer"), "zeros"),
        "gamma_initializer": initializer_from_keras(config.get("gamma_initializer"), "ones"),
        "beta_regularizer": regularizer_from_keras(config.get("beta_regularizer"), what),
        "gamma_regularizer": regularizer_from_keras(config.get("gamma_regularizer"), what),
    }
    if out["epsilon"] <= 0:
        raise UnsupportedKeras(f"{what}: epsilon {out['epsilon']!r} is not > 0")
    if cls == "BatchNormalization":
        out["momentum"] = number(config.get("momentum", 0.99), "momentum", what, 0.0, 1.0)
        out["moving_mean_initializer"] = initializer_from_keras(config.get("moving_mean_initializer"), "zeros")
        out["moving_variance_initializer"] = initializer_from_keras(config.get("moving_variance_initializer"), "ones")
    return out


def _from_keras(cls: str, config: dict[str, Any], what: str) -> dict[str, Any]:
    """The fcgpu config entries (besides class, name and dtype) of Keras layer ``cls``."""
    if cls == "Dense":
        units = config.get("units")
        if type(units) is not int or units < 1:
            raise UnsupportedKeras(f"{what}: units {units!r} is not a positive int")
        return {
            "units": units,
            "activation": activation_from_keras(config.get("activation"), what),
            "use_bias": flag(config.get("use_bias", True), "use_bias", what),
            "kernel_initializer": initializer_from_keras(config.get("kernel_initializer"), "glorot_uniform"),
            "bias_initializer": initializer_from_keras(config.get("bias_initializer"), "zeros"),
            "kernel_regularizer": regularizer_from_keras(config.get("kernel_regularizer"), what),
            "bias_regularizer": regularizer_from_keras(config.get("bias_regularizer"), what),
            **constraints_from_keras(config),
        }
    if cls == "Dropout":
        rate = config.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise UnsupportedKeras(f"{what}: rate {rate!r} is not a number in [0, 1)")
        return {"rate": float(rate), "seed": _seed(config.get("seed"), what)}
    if cls == "Activation":
        return {"activation": activation_from_keras(config.get("activation"), what)}
    if cls in ("BatchNormalization", "LayerNormalization"):
        return _normalization_from_keras(cls, config, what)
    if cls == "Normalization":
        mean, variance = _statistic(config.get("mean"), "mean", what), _statistic(config.get("variance"), "variance", what)
        return {"axis": _axis(config.get("axis", -1), what), "invert": flag(config.get("invert", False), "invert", what),
                "mean": mean, "variance": variance}
    if cls == "ReLU":
        max_value = config.get("max_value")
        return {"max_value": None if max_value is None else number(max_value, "max_value", what, 0.0),
                "negative_slope": number(config.get("negative_slope", 0.0), "negative_slope", what, 0.0),
                "threshold": number(config.get("threshold", 0.0), "threshold", what, 0.0)}
    if cls == "LeakyReLU":
        return {"negative_slope": number(config.get("negative_slope", config.get("alpha", 0.3)), "negative_slope", what, 0.0)}
    if cls == "ELU":
        return {"alpha": number(config.get("alpha", 1.0), "alpha", what)}
    if cls == "PReLU":
        return {"alpha_initializer": initializer_from_keras(config.get("alpha_initializer"), "zeros"),
                "alpha_regularizer": regularizer_from_keras(config.get("alpha_regularizer"), what)}
    if cls == "Softmax":
        return {"axis": _axis(config.get("axis", -1), what)}
    if cls == "GaussianNoise":
        return {"stddev": number(config.get("stddev"), "stddev", what, 0.0, 1.0), "seed": _seed(config.get("seed"), what)}
    if cls == "Flatten":
        if config.get("data_format") not in (None, "channels_last"):
            raise UnsupportedKeras(f"{what}: data_format {config.get('data_format')!r}; fcgpu flattens channels_last data")
        return {}
    if cls == "Reshape":
        shape = config.get("target_shape")
        if (not isinstance(shape, list) or not shape or len(shape) > 8 or sum(d == -1 for d in shape) > 1
                or not all(type(d) is int and (d > 0 or d == -1) for d in shape)):
            raise UnsupportedKeras(f"{what}: target_shape {shape!r} is not a list of positive ints (at most one -1)")
        return {"target_shape": list(shape)}
    if cls == "Concatenate":
        _axis(config.get("axis", -1), what)
        return {"axis": -1}
    if cls in MERGES:
        return {}
    raise UnsupportedKeras(f"{what}: fcgpu has no {cls} layer")


def layer_from_keras(entry: Any, custom_objects: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None) -> Any:
    """The fcgpu config of one serialized Keras layer, or, for a class registered in
    ``custom_objects``, the fcgpu layer its converter returns (called with the Keras config)."""
    cls, config = inner(entry, "layer")
    name = config.get("name")
    what = f"layer {name!r} ({cls})"
    convert = (custom_objects or {}).get(cls) or (custom_objects or {}).get(entry.get("registered_name") or "")
    if convert is not None:
        try:
            return convert(dict(config))  # the caller's own code, registered by the caller
        except Exception as e:
            raise UnsupportedKeras(f"{what}: the converter registered for it raised {type(e).__name__}: {e}") from None
    if cls not in LAYERS:
        raise UnsupportedKeras(f"{what}: fcgpu has no {cls} layer")
    refused = [key for key in _REFUSED if config.get(key) not in (None, 0, False)
               and not (cls == "Dense" and constraint_from_keras(config.get(key)))]  # Dense's constraints: keras_constraints
    if refused:
        raise UnsupportedKeras(f"{what}: fcgpu has no {', '.join(refused)}")
    dtype = policy_from_keras(config.get("dtype"), what)
    frozen = {"trainable": False} if flag(config.get("trainable", True), "trainable", what) is False else {}
    return {"class_name": cls, "name": name if isinstance(name, str) and name else None,
            **_from_keras(cls, config, what), "dtype": dtype, **frozen}


def _to_keras(cls: str, config: dict[str, Any], name: str) -> dict[str, Any]:
    """The Keras config entries (besides name, trainable and dtype) of fcgpu layer config ``config``."""
    if cls == "Dense":
        return {
            "units": config["units"],
            "activation": activation_to_keras(config["activation"], name),
            "use_bias": config["use_bias"],
            "kernel_initializer": initializer_to_keras(config["kernel_initializer"]),
            "bias_initializer": initializer_to_keras(config["bias_initializer"], "Zeros"),
            "kernel_regularizer": regularizer_to_keras(config.get("kernel_regularizer")),
            "bias_regularizer": regularizer_to_keras(config.get("bias_regularizer")),
            **constraints_to_keras(config),
        }
    if cls == "Dropout":
        return {"rate": config["rate"], "seed": _keras_seed(config.get("seed")), "noise_shape": None}
    if cls == "Activation":
        return {"activation": activation_to_keras(config["activation"], name)}
    if cls in ("BatchNormalization", "LayerNormalization"):
        out = {"axis": -1 if cls == "BatchNormalization" else [-1], "epsilon": config["epsilon"],
               "center": config["center"], "scale": config["scale"],
               "beta_initializer": initializer_to_keras(config["beta_initializer"], "Zeros"),
               "gamma_initializer": initializer_to_keras(config["gamma_initializer"], "Ones"),
               "beta_regularizer": regularizer_to_keras(config.get("beta_regularizer")),
               "gamma_regularizer": regularizer_to_keras(config.get("gamma_regularizer")),
               "beta_constraint": None, "gamma_constraint": None}
        if cls == "BatchNormalization":
            out.update(momentum=config["momentum"],
                       moving_mean_initializer=initializer_to_keras(config["moving_mean_initializer"], "Zeros"),
                       moving_variance_initializer=initializer_to_keras(config["moving_variance_initializer"], "Ones"),
                       synchronized=False)
        else:
            out["rms_scaling"] = False
        return out
    if cls == "Normalization":
        return {"axis": [-1], "invert": config["invert"], "mean": config.get("mean"), "variance": config.get("variance")}
    if cls == "ReLU":
        return {k: config[k] for k in ("max_value", "negative_slope", "threshold")}
    if cls == "LeakyReLU":
        return {"negative_slope": config["negative_slope"]}
    if cls == "ELU":
        return {"alpha": config["alpha"]}
    if cls == "PReLU":
        return {"alpha_initializer": initializer_to_keras(config["alpha_initializer"], "Zeros"),
                "alpha_regularizer": regularizer_to_keras(config.get("alpha_regularizer")),
                "alpha_constraint": None, "shared_axes": None}
    if cls == "Softmax":
        return {"axis": -1}
    if cls == "GaussianNoise":
        return {"stddev": config["stddev"], "seed": _keras_seed(config.get("seed"))}
    if cls == "Flatten":
        return {"data_format": "channels_last"}
    if cls == "Reshape":
        return {"target_shape": list(config["target_shape"])}
    if cls == "Concatenate":
        return {"axis": -1}
    if cls in MERGES:
        return {}
    raise UnsupportedKeras(f"layer {name!r}: Keras has no layer that computes as fcgpu's {cls}")


def _keras_seed(seed: Any) -> Any:
    return seed if seed is None or seed < SEED_LIMIT else None


def layer_to_keras(config: dict[str, Any], policy: str, input_shape: Any) -> dict[str, Any]:
    """The serialized Keras layer of one fcgpu layer config; ``policy`` is the dtype policy to write
    where the fcgpu layer takes its dtype from the layer before it, ``input_shape`` its build shape
    ((None, features), or a list of such for a merge; None: no build config)."""
    cls = config.get("class_name")
    name = config["name"]
    common = {"name": name, "trainable": config.get("trainable", True) is not False,
              "dtype": policy_to_keras(config.get("dtype") or policy)}
    out = {"module": "keras.layers", "class_name": cls, "config": {**common, **_to_keras(cls, config, name)},
           "registered_name": None}
    if input_shape is not None:
        out["build_config"] = {"input_shape": input_shape}
    return out


def output_shape(config: dict[str, Any], shapes: list[list[Any]], what: str) -> list[Any]:
    """The output shape [None, ...] of fcgpu leaf layer ``config`` on inputs of ``shapes``."""
    cls, first = config.get("class_name"), shapes[0]
    if cls in MERGES:
        if len(shapes) < 2 or any(len(s) != 2 for s in shapes):
            raise UnsupportedKeras(f"{what}: a merge takes two or more (batch, features) inputs, got {shapes}")
        if cls == "Concatenate":
            return [None, sum(s[1] for s in shapes)]
        if any(s[1] != first[1] for s in shapes):
            raise UnsupportedKeras(f"{what}: its inputs differ in shape ({shapes})")
        return list(first)
    if len(shapes) != 1:
        raise UnsupportedKeras(f"{what}: takes one input, its node gives {len(shapes)}")
    width = math.prod(first[1:])
    if cls == "Flatten":
        return [None, width]
    if cls == "Reshape":
        target = list(config["target_shape"])
        known = math.prod(d for d in target if d != -1)
        if (-1 in target and width % known) or (-1 not in target and known != width):
            raise UnsupportedKeras(f"{what}: target_shape {target} cannot hold the {width} values of its input")
        return [None, *(width // known if d == -1 else d for d in target)]
    if len(first) != 2 and cls not in ("Dropout", "GaussianNoise", "Activation"):
        raise UnsupportedKeras(f"{what}: fcgpu's {cls} takes (batch, features) inputs, got {first} (Flatten first)")
    if cls == "Dense":
        return [None, config["units"]]
    return list(first)


def parameter_count(config: dict[str, Any], shapes: list[list[Any]]) -> int:
    """The values the weights of fcgpu leaf layer ``config`` hold on inputs of ``shapes``."""
    cls, width = config.get("class_name"), math.prod(shapes[0][1:])
    if cls == "Dense":
        return (width + (1 if config.get("use_bias", True) else 0)) * config["units"]
    if cls == "BatchNormalization":
        return (2 + int(config.get("center", True)) + int(config.get("scale", True))) * width
    if cls == "LayerNormalization":
        return (int(config.get("center", True)) + int(config.get("scale", True))) * width
    if cls == "PReLU":
        return width
    if cls == "Normalization" and config.get("mean") is None:
        return 2 * width + 1
    return 0
