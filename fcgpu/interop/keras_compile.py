"""Keras 3 compile settings <-> fcgpu compile settings: loss, optimizer and metrics of a ``.keras``
archive's ``compile_config``.

Settings translate where both sides compute the same thing; where they do not,
``compile_to_keras`` / ``compile_from_keras`` return None and a reason, and the caller leaves the
model uncompiled (what Keras does when a compile config cannot be read). Pure data: no file, no
Keras import.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["compile_from_keras", "compile_to_keras"]

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
    if not isinstance(loss, dict) or not isinstance(opt, dict):
        return None, "the model has a loss per output"
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
    if opt.get("weight_decay") and cls in ("RMSprop", "Adagrad"):
        return None, f"{cls} with weight_decay"
    config = {"name": cls.lower(), "learning_rate": float(rate), **_KERAS_OPTIMIZER_DEFAULTS}
    config.update({kk: opt[fk] for fk, kk in _OPTIMIZERS[cls].items() if fk in opt})
    if opt.get("use_ema"):
        return None, "the optimizer keeps a moving average of the weights (use_ema), whose state fcgpu does not write"
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
