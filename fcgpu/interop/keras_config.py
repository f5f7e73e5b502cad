"""Keras 3 configs <-> fcgpu configs: the JSON of a ``.keras`` archive's ``config.json``, layer by layer.

Pure data translation (no file, no h5py, no Keras import): ``model_to_keras`` turns an fcgpu
model's ``get_config()`` and ``get_compile_config()`` into what Keras's ``serialize_keras_object``
writes, and ``model_from_keras`` turns a Keras config into the fcgpu config that
``fcgpu.serialization.deserialize`` builds. Each layer goes through ``layer_to_keras`` /
``layer_from_keras`` on its own config, so a functional model can reuse them for its nodes.

Only what fcgpu computes the same way is accepted: Sequential models of InputLayer, Dense,
Dropout and Activation with Keras's activation names. Anything else (a layer class fcgpu lacks,
a Lambda, a custom activation function, constraints other than Dense's MaxNorm, NonNeg, UnitNorm
and MinMaxNorm (``keras_constraints``), LoRA, quantization, noise shapes) raises
``UnsupportedKeras`` naming every such thing, unless the caller registered a converter for the
class in ``custom_objects``. Nothing in a config is ever executed or imported.

Compile settings (loss, optimizer, metrics) translate where both sides mean the same thing;
where they do not, ``compile_to_keras`` / ``compile_from_keras`` return None and a reason, and the
caller leaves the model uncompiled (what Keras does when a compile config cannot be read).
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Callable, Mapping

import numpy as np

from .keras_constraints import constraint_from_keras, constraints_from_keras, constraints_to_keras

__all__ = [
    "KERAS_ACTIVATIONS",
    "UnsupportedKeras",
    "compile_from_keras",
    "compile_to_keras",
    "layer_from_keras",
    "layer_to_keras",
    "model_from_keras",
    "model_to_keras",
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
_POLICIES = ("float32", "float64", "float16", "mixed_float16", "mixed_bfloat16")
_SEED_LIMIT = 2**31  # Keras's seed generators take 32-bit seeds on every backend



class UnsupportedKeras(ValueError):
    """A Keras config that fcgpu cannot represent (or an fcgpu model Keras cannot): the message names what."""


# -- small pieces ------------------------------------------------------------------------------
def _inner(entry: Any, what: str) -> tuple[str, dict[str, Any]]:
    """(class_name, config) of a serialized Keras object ``{"class_name", "config", ...}``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise UnsupportedKeras(f"{what}: expected a serialized Keras object with a 'class_name', got {type(entry).__name__}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise UnsupportedKeras(f"{what}: the config of {entry['class_name']!r} is a {type(config).__name__}, not a dict")
    return entry["class_name"], config


def _policy_from_keras(value: Any, what: str) -> str | None:
    if value is None:
        return None
    name = value
    if isinstance(value, dict):
        name = value.get("config", {}).get("name") if isinstance(value.get("config"), dict) else None
        if value.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy", "Policy"):
            raise UnsupportedKeras(f"{what}: dtype policy {value.get('class_name')!r} (quantized?) is not supported")
    if name not in _POLICIES:
        raise UnsupportedKeras(f"{what}: dtype {name!r} is not supported; fcgpu has {list(_POLICIES)}")
    return name


def _policy_to_keras(name: str) -> dict[str, Any]:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def _activation_from_keras(value: Any, what: str) -> str:
    if value is None:
        return "linear"
    if isinstance(value, str) and value in KERAS_ACTIVATIONS:
        return KERAS_ACTIVATIONS[value]
    if isinstance(value, dict):  # a function serialized by reference: custom code, never run
        shown = value.get("registered_name") or value.get("config")
        raise UnsupportedKeras(f"{what}: activation {shown!r} is a custom function; fcgpu runs no code from a file")
    raise UnsupportedKeras(f"{what}: activation {value!r} is not one fcgpu has ({sorted(KERAS_ACTIVATIONS)})")


def _initializer_from_keras(value: Any, default: str) -> str:
    """fcgpu's initializer name; one fcgpu lacks becomes the default (a loaded layer's weights come
    from the file, so the initializer only matters if the layer is built again)."""
    if isinstance(value, str):
        name = value.lower()
        return name if name in _TO_KERAS_INITIALIZER else default
    if isinstance(value, dict):
        return _INITIALIZERS.get(value.get("class_name"), default)  # type: ignore[arg-type]
    return default


def _initializer_to_keras(name: Any) -> dict[str, Any]:
    if isinstance(name, dict):  # an fcgpu initializer instance, serialized as Keras serializes its own
        return {"module": "keras.initializers", "class_name": name["class_name"], "config": dict(name["config"]),
                "registered_name": None}
    cls = _TO_KERAS_INITIALIZER.get(name, "GlorotUniform")
    config: dict[str, Any] = {} if cls in ("Zeros", "Ones") else {"seed": None}
    return {"module": "keras.initializers", "class_name": cls, "config": config, "registered_name": None}


def _regularizer_from_keras(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("l1", "l2", "l1_l2"):
        return value.lower()
    cls, config = _inner(value, what)
    if cls not in _REGULARIZERS:
        raise UnsupportedKeras(f"{what}: regularizer {cls!r} is not supported (fcgpu has L1, L2, L1L2)")
    return {"class_name": cls, "config": {k: float(config.get(k, 0.0)) for k in _REGULARIZERS[cls]}}


def _regularizer_to_keras(value: Any) -> Any:
    if value is None:
        return None
    return {"module": "keras.regularizers", "class_name": value["class_name"], "config": dict(value["config"]),
            "registered_name": None}


# -- layers ------------------------------------------------------------------------------------
def layer_from_keras(entry: Any, custom_objects: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None) -> Any:
    """The fcgpu config of one serialized Keras layer, or, for a class registered in
    ``custom_objects``, the fcgpu layer its converter returns (called with the Keras config)."""
    cls, config = _inner(entry, "layer")
    name = config.get("name")
    what = f"layer {name!r} ({cls})"
    convert = (custom_objects or {}).get(cls) or (custom_objects or {}).get(entry.get("registered_name") or "")
    if convert is not None:
        try:
            return convert(dict(config))  # the caller's own code, registered by the caller
        except Exception as e:
            raise UnsupportedKeras(f"{what}: the converter registered for it raised {type(e).__name__}: {e}") from None
    refused = []
    for key in ("kernel_constraint", "bias_constraint", "activity_regularizer", "lora_rank", "quantization_config",
                "noise_shape"):
        if config.get(key) not in (None, 0) and not (cls == "Dense" and constraint_from_keras(config.get(key))):
            refused.append(key)
    if refused:
        raise UnsupportedKeras(f"{what}: fcgpu has no {', '.join(refused)}")
    dtype = _policy_from_keras(config.get("dtype"), what)
    base: dict[str, Any] = {"class_name": cls, "name": name if isinstance(name, str) and name else None}
    if cls == "Dense":
        units = config.get("units")
        if type(units) is not int or units < 1:
            raise UnsupportedKeras(f"{what}: units {units!r} is not a positive int")
        return {
            **base,
            "units": units,
            "activation": _activation_from_keras(config.get("activation"), what),
            "use_bias": _flag(config.get("use_bias", True), "use_bias", what),
            "kernel_initializer": _initializer_from_keras(config.get("kernel_initializer"), "glorot_uniform"),
            "bias_initializer": _initializer_from_keras(config.get("bias_initializer"), "zeros"),
            "kernel_regularizer": _regularizer_from_keras(config.get("kernel_regularizer"), what),
            "bias_regularizer": _regularizer_from_keras(config.get("bias_regularizer"), what),
            **constraints_from_keras(config),
            "dtype": dtype,
        }
    if cls == "Dropout":
        rate, seed = config.get("rate"), config.get("seed")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise UnsupportedKeras(f"{what}: rate {rate!r} is not a number in [0, 1)")
        if seed is not None and (type(seed) is not int or seed < 0):
            raise UnsupportedKeras(f"{what}: seed {seed!r} is not a non-negative int")
        return {**base, "rate": float(rate), "seed": seed, "dtype": dtype}
    if cls == "Activation":
        return {**base, "activation": _activation_from_keras(config.get("activation"), what), "dtype": dtype}
    raise UnsupportedKeras(f"{what}: fcgpu has no {cls} layer")


def _flag(value: Any, key: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise UnsupportedKeras(f"{what}: {key} {value!r} is not true or false")
    return value


def layer_to_keras(config: dict[str, Any], policy: str, input_width: int | None) -> dict[str, Any]:
    """The serialized Keras layer of one fcgpu layer config; ``policy`` is the dtype policy to write
    where the fcgpu layer takes its dtype from the layer before it, ``input_width`` its build shape."""
    cls = config.get("class_name")
    name = config["name"]
    common = {"name": name, "trainable": True, "dtype": _policy_to_keras(config.get("dtype") or policy)}
    if cls == "Dense":
        activation = config["activation"]
        if activation not in _TO_KERAS_ACTIVATION:
            raise UnsupportedKeras(
                f"layer {name!r}: activation {activation!r} has no Keras name (Keras's gelu is the exact one); "
                f"save to a .fcgpu file instead"
            )
        inner = {
            **common,
            "units": config["units"],
            "activation": activation,
            "use_bias": config["use_bias"],
            "kernel_initializer": _initializer_to_keras(config["kernel_initializer"]),
            "bias_initializer": _initializer_to_keras(config["bias_initializer"]),
            "kernel_regularizer": _regularizer_to_keras(config.get("kernel_regularizer")),
            "bias_regularizer": _regularizer_to_keras(config.get("bias_regularizer")),
            **constraints_to_keras(config),
        }
    elif cls == "Dropout":
        seed = config.get("seed")
        inner = {**common, "rate": config["rate"], "seed": seed if seed is None or seed < _SEED_LIMIT else None,
                 "noise_shape": None}
    elif cls == "Activation":
        activation = config["activation"]
        if activation not in _TO_KERAS_ACTIVATION:
            raise UnsupportedKeras(f"layer {name!r}: activation {activation!r} has no Keras name; save to a .fcgpu file")
        inner = {**common, "activation": activation}
    else:
        raise UnsupportedKeras(f"layer {name!r}: Keras has no layer for fcgpu's {cls}")
    out = {"module": "keras.layers", "class_name": cls, "config": inner, "registered_name": None}
    if input_width is not None:
        out["build_config"] = {"input_shape": [None, input_width]}
    return out


def _snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: 'Dense' -> 'dense', 'BatchNormalization' -> 'batch_normalization'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def storage_keys(class_names: list[str]) -> list[str]:
    """Where Keras stores each layer of a Sequential in a weights file: ``layers/<snake class name>``
    numbered per class ('dense', 'dense_1', 'dropout', ...), as ``saving_lib`` names container entries."""
    used: dict[str, int] = {}
    keys = []
    for cls in class_names:
        base = _snake_case(cls)
        if base in used:
            used[base] += 1
            keys.append(f"layers/{base}_{used[base]}")
        else:
            used[base] = 0
            keys.append(f"layers/{base}")
    return keys


# -- models ------------------------------------------------------------------------------------
def model_from_keras(
    config: Any, custom_objects: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """(fcgpu model config without layers, [fcgpu layer config or layer], [Keras class name]) of a
    Keras Sequential config; every unsupported part is named in one ``UnsupportedKeras``."""
    cls, inner = _inner(config, "model")
    if cls != "Sequential":
        hint = " (functional models are not supported yet)" if cls in ("Functional", "Model") else ""
        raise UnsupportedKeras(f"model: fcgpu reads Keras Sequential models, this one is a {cls}{hint}")
    entries = inner.get("layers")
    if not isinstance(entries, list):
        raise UnsupportedKeras("model: its config has no list of layers")
    model: dict[str, Any] = {"class_name": "Sequential", "name": inner.get("name") or None}
    layers, classes, problems = [], [], []
    width, policy = None, "float32"
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("class_name") == "InputLayer" and i == 0:
            width, batch, dtype = _input_from_keras(entry)
            policy = dtype or policy
            model["input"] = {"class_name": "Input", "shape": [width], "batch_size": batch, "dtype": dtype,
                              "name": entry.get("config", {}).get("name") or None}
            continue
        try:
            layer = layer_from_keras(entry, custom_objects)
        except UnsupportedKeras as e:
            problems.append(str(e))
            continue
        if entry.get("config", {}).get("trainable") is False:
            warnings.warn(f"layer {layer_name(entry)!r} is frozen in Keras (trainable=False); fcgpu trains every layer",
                          stacklevel=4)
        if isinstance(layer, dict) and layer["class_name"] == "Dense":
            policy = layer["dtype"] or policy
        elif isinstance(layer, dict) and (layer.get("dtype") == policy or str(layer.get("dtype")).startswith("mixed")):
            layer["dtype"] = None  # as fcgpu's layers without parameters do: the dtype of the layer before
        layers.append(layer)
        classes.append(entry["class_name"])
    if problems:
        raise UnsupportedKeras("; ".join(problems))
    if width is None:
        shape = inner.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
        if isinstance(shape, list) and len(shape) == 2 and type(shape[1]) is int and shape[1] > 0:
            width = shape[1]
    if width is None:
        raise UnsupportedKeras("model: the Keras model was saved unbuilt (no input shape, so no weights)")
    model["input_features"] = width
    return model, layers, classes


def layer_name(entry: dict[str, Any]) -> Any:
    return entry.get("config", {}).get("name") if isinstance(entry.get("config"), dict) else None


def _input_from_keras(entry: dict[str, Any]) -> tuple[int, int | None, str | None]:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if (not isinstance(shape, list) or len(shape) != 2 or type(shape[1]) is not int or shape[1] < 1
            or not (shape[0] is None or (type(shape[0]) is int and shape[0] > 0))):
        raise UnsupportedKeras(f"model: input shape {shape!r} is not (batch, features): fcgpu's layers take flat features")
    if config.get("sparse") or config.get("ragged"):
        raise UnsupportedKeras("model: sparse or ragged inputs are not supported")
    dtype = config.get("dtype")
    if dtype is not None and dtype not in ("float16", "float32", "float64"):
        raise UnsupportedKeras(f"model: input dtype {dtype!r} is not supported")
    return shape[1], shape[0], dtype


def model_to_keras(model_config: dict[str, Any], compile_config: dict[str, Any] | None) -> dict[str, Any]:
    """What Keras writes as ``config.json`` for the fcgpu Sequential ``model_config``; the compile
    config is included where it translates (see ``compile_to_keras``)."""
    if model_config.get("class_name") != "Sequential":
        raise UnsupportedKeras(f"model: only Sequential models are written as .keras, not {model_config.get('class_name')}")
    width = model_config["input_features"]
    given = model_config.get("input") or {}
    policy = next((c["dtype"] for c in model_config["layers"] if c.get("class_name") == "Dense"), "float32")
    input_dtype = given.get("dtype") or ("float32" if policy.startswith("mixed") else policy)
    layers = [{
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [given.get("batch_size"), width], "dtype": input_dtype, "sparse": False,
                   "name": given.get("name") or "input_layer"},
        "registered_name": None,
    }]
    for config in model_config["layers"]:
        if config.get("dtype"):
            policy = config["dtype"]
        layers.append(layer_to_keras(config, policy, width))
        if config.get("class_name") == "Dense":
            width = config["units"]
    out: dict[str, Any] = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": model_config["name"], "trainable": True, "dtype": _policy_to_keras(policy if not policy.startswith("mixed") else "float32"),
                   "layers": layers, "build_input_shape": [None, model_config["input_features"]]},
        "registered_name": None,
        "build_config": {"input_shape": [None, model_config["input_features"]]},
    }
    if compile_config is not None:
        translated, _ = compile_to_keras(compile_config)
        if translated is not None:
            out["compile_config"] = translated
    return out


# -- compile settings ---------------------------------------------------------------------------
_LOSSES = {  # fcgpu class -> (Keras class, Keras snake name, fcgpu config keys Keras shares)
    "CategoricalCrossentropy": ("categorical_crossentropy", ("from_logits", "label_smoothing")),
    "SparseCategoricalCrossentropy": ("sparse_categorical_crossentropy", ("from_logits",)),
    "BinaryCrossentropy": ("binary_crossentropy", ("from_logits", "label_smoothing")),
    "MeanSquaredError": ("mean_squared_error", ()),
    "MeanAbsoluteError": ("mean_absolute_error", ()),
    "Huber": ("huber_loss", ("delta",)),
}
_LOSS_STRINGS = {
    "mse": "mse", "mean_squared_error": "mse", "mae": "mae", "mean_absolute_error": "mae", "huber": "huber",
    "categorical_crossentropy": "categorical_crossentropy", "binary_crossentropy": "binary_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
}
_METRICS = ("accuracy", "acc", "mae", "mse", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
            "top_k_categorical_accuracy", "mean_absolute_error", "mean_squared_error", "sparse_top_k_categorical_accuracy",
            "auc", "precision", "recall", "true_positives", "false_positives", "true_negatives", "false_negatives",
            "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence",
            "r2_score", "root_mean_squared_error", "mape", "msle", "mean_absolute_percentage_error",
            "mean_squared_logarithmic_error")
_METRIC_CLASSES = {
    "MeanAbsoluteError": "mae", "MeanSquaredError": "mse", "BinaryAccuracy": "binary_accuracy",
    "CategoricalAccuracy": "categorical_accuracy", "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
}
# optimizer -> {fcgpu key: Keras key}: the hyperparameters both sides mean the same way
_OPTIMIZERS = {
    "SGD": {"momentum": "momentum", "nesterov": "nesterov"},
    "Adam": {"beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon"},
    "AdamW": {"beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon", "weight_decay": "weight_decay"},
    "RMSprop": {"rho": "rho", "momentum": "momentum", "epsilon": "epsilon", "centered": "centered"},
    "Adagrad": {"initial_accumulator_value": "initial_accumulator_value", "epsilon": "epsilon"},
}
_KERAS_OPTIMIZER_DEFAULTS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                             "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                             "loss_scale_factor": None, "gradient_accumulation_steps": None}


def _float32_value(x: Any) -> Any:
    """Keras stores learning rates as float32 (0.0010000000474974513): the shortest decimal of it."""
    return float(str(np.float32(x))) if isinstance(x, float) else x


def compile_to_keras(compiled: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(Keras's compile_config, '') or (None, why not) for fcgpu's ``get_compile_config()``."""
    loss, opt = compiled.get("loss") or {}, compiled.get("optimizer") or {}
    if opt.get("class_name") == "LossScaleOptimizer":  # Keras wraps a mixed_float16 model's optimizer itself
        opt = opt.get("inner_optimizer") or {}
    if loss.get("class_name") not in _LOSSES:
        return None, f"Keras has no loss that computes as fcgpu's {loss.get('class_name')}"
    snake, keys = _LOSSES[loss["class_name"]]
    keras_loss = {"module": "keras.losses", "class_name": loss["class_name"],
                  "config": {"name": snake, "reduction": "sum_over_batch_size", **{k: loss[k] for k in keys if k in loss}},
                  "registered_name": None}
    if "from_logits" in keys or "label_smoothing" in keys:
        keras_loss["config"]["axis"] = -1
    cls = opt.get("class_name")
    if cls not in _OPTIMIZERS:
        return None, f"Keras has no optimizer {cls}"
    rate = opt.get("learning_rate")
    if not isinstance(rate, (int, float)):
        return None, "the learning rate is a schedule"
    if cls in ("SGD", "Adam") and opt.get("weight_decay"):
        return None, f"{cls}'s weight_decay is PyTorch's L2 term, which Keras's {cls} (decoupled) does not compute"
    if opt.get("use_ema"):
        return None, "the optimizer keeps a moving average of the weights (use_ema), whose state fcgpu does not write"
    if opt.get("weight_decay") and cls in ("RMSprop", "Adagrad"):
        return None, f"{cls} with weight_decay"
    config = {"name": cls.lower(), "learning_rate": float(rate), **_KERAS_OPTIMIZER_DEFAULTS}
    config.update({kk: opt[fk] for fk, kk in _OPTIMIZERS[cls].items() if fk in opt})
    config.update({k: opt[k] for k in ("clipnorm", "global_clipnorm", "clipvalue") if opt.get(k) is not None})
    if cls in ("Adam", "AdamW"):
        config["amsgrad"] = False
    metrics = []
    for m in compiled.get("metrics") or []:
        # a config dict is taken by its name only for the classes that had no other argument than it
        name = m if isinstance(m, str) else m.get("name") if isinstance(m, dict) and m.get("class_name") in _METRIC_CLASSES else None
        if name not in _METRICS:
            return None, f"Keras has no metric {m!r} as fcgpu computes it"
        metrics.append(name)
    return {
        "optimizer": {"module": "keras.optimizers", "class_name": cls, "config": config, "registered_name": None},
        "loss": keras_loss,
        "loss_weights": None,
        "metrics": metrics or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }, ""


def compile_from_keras(compiled: Any) -> tuple[dict[str, Any] | None, str]:
    """(fcgpu compile config, '') or (None, why not) for a Keras compile_config."""
    if not isinstance(compiled, dict) or not compiled:
        return None, "no compile settings"
    for key in ("loss_weights", "weighted_metrics"):
        if compiled.get(key):
            return None, f"fcgpu has no {key}"
    loss = compiled.get("loss")
    if isinstance(loss, str):
        if loss not in _LOSS_STRINGS:
            return None, f"fcgpu has no loss {loss!r}"
        fc_loss: Any = _LOSS_STRINGS[loss]
    elif isinstance(loss, dict) and loss.get("class_name") in _LOSSES and isinstance(loss.get("config"), dict):
        inner = loss["config"]
        if inner.get("reduction", "sum_over_batch_size") != "sum_over_batch_size" or inner.get("axis", -1) != -1:
            return None, "the loss's reduction or axis differs from fcgpu's (a mean over the batch, the last axis)"
        fc_loss = {"class_name": loss["class_name"], **{k: inner[k] for k in _LOSSES[loss["class_name"]][1] if k in inner}}
    else:
        return None, f"fcgpu has no loss {loss!r}"
    opt = compiled.get("optimizer")
    if isinstance(opt, str):
        opt = {"class_name": {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                              "adagrad": "Adagrad"}.get(opt.lower(), opt), "config": {}}
    if isinstance(opt, dict) and opt.get("class_name") == "LossScaleOptimizer" and isinstance(opt.get("config"), dict):
        opt = opt["config"].get("inner_optimizer")  # fcgpu's compile wraps a mixed_float16 model's optimizer itself
    if not isinstance(opt, dict) or opt.get("class_name") not in _OPTIMIZERS or not isinstance(opt.get("config"), dict):
        return None, f"fcgpu has no optimizer {opt.get('class_name') if isinstance(opt, dict) else opt!r}"
    cls, inner = opt["class_name"], opt["config"]
    for key, default in _KERAS_OPTIMIZER_DEFAULTS.items():
        if (key == "weight_decay" and cls == "AdamW") or "clip" in key:  # clipping: Keras's semantics
            continue
        if key != "ema_momentum" and inner.get(key, default) not in (default, 0, 0.0):
            return None, f"fcgpu's {cls} has no {key}"
    if inner.get("amsgrad"):
        return None, "fcgpu has no amsgrad"
    rate = inner.get("learning_rate", 0.01 if cls == "SGD" else 0.001)
    if not isinstance(rate, (int, float)):
        return None, "the learning rate is a schedule"
    fc_opt = {"class_name": cls, "learning_rate": _float32_value(float(rate))}
    fc_opt.update({fk: _float32_value(inner[kk]) for fk, kk in _OPTIMIZERS[cls].items() if kk in inner})
    fc_opt.update({k: float(inner[k]) for k in ("clipnorm", "global_clipnorm", "clipvalue")
                   if isinstance(inner.get(k), (int, float)) and not isinstance(inner.get(k), bool)})
    metrics = []
    for m in compiled.get("metrics") or []:
        if isinstance(m, str) and m in _METRICS:
            metrics.append(m)
        elif isinstance(m, dict) and m.get("class_name") in _METRIC_CLASSES:
            metrics.append(_METRIC_CLASSES[m["class_name"]])
        else:
            return None, f"fcgpu has no metric {m.get('class_name') if isinstance(m, dict) else m!r}"
    return {"loss": fc_loss, "optimizer": fc_opt, "metrics": metrics}, ""
