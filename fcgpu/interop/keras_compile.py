"""Keras 3 compile settings <-> fcgpu compile settings: loss, optimizer and metrics of a ``.keras``
archive's ``compile_config``.

Settings translate where both sides compute the same thing; where they do not,
``compile_to_keras`` / ``compile_from_keras`` return None and a reason, and the caller leaves the
model uncompiled (what Keras does when a compile config cannot be read). A model of several
outputs has a loss per output, loss weights and metrics per output, a list in output order (or a
dict by output key where its outputs are a dict, as Keras writes them); a metric of one output
that Keras lacks is left out of what is written, the reason returned beside the config for the
caller to warn. Pure data: no file, no Keras import.
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
    "AccuracyByLabels": "accuracy",  # Keras resolves 'accuracy' from the labels as it does
}
_SNAKE = {"MeanAbsoluteError": "mean_absolute_error", "MeanSquaredError": "mean_squared_error"}
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


def _loss_to_keras(loss: Any) -> tuple[dict[str, Any] | None, str]:
    """(Keras's serialized loss, '') or (None, why not) for one fcgpu loss config."""
    if not isinstance(loss, dict) or loss.get("class_name") not in _LOSSES:
        name = loss.get("class_name") if isinstance(loss, dict) else loss
        return None, f"Keras has no loss that computes as fcgpu's {name}"
    snake, keys = _LOSSES[loss["class_name"]]
    keras_loss = {"module": "keras.losses", "class_name": loss["class_name"],
                  "config": {"name": snake, "reduction": "sum_over_batch_size", **{k: loss[k] for k in keys if k in loss}},
                  "registered_name": None}
    if "from_logits" in keys or "label_smoothing" in keys:
        keras_loss["config"]["axis"] = -1
    return keras_loss, ""


def _optimizer_to_keras(opt: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    if opt.get("class_name") == "LossScaleOptimizer":  # Keras wraps a mixed_float16 model's optimizer itself
        opt = opt.get("inner_optimizer") or {}
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
    return {"module": "keras.optimizers", "class_name": cls, "config": config, "registered_name": None}, ""


def _metric_to_keras(m: Any) -> str | None:
    """Keras's name of an fcgpu metric entry, None where Keras has none that computes the same."""
    # a config dict is taken by its name only for the classes that had no other argument than it
    name = m if isinstance(m, str) else m.get("name") if isinstance(m, dict) and m.get("class_name") in _METRIC_CLASSES else None
    return name if name in _METRICS else None


def _label(m: Any) -> str:
    return repr(m) if not isinstance(m, dict) else f"{m.get('class_name')}({m.get('name', '')})"


def _by_output(values: list[Any], keys: list[str] | None) -> Any:
    """Per-output values as Keras's compile takes them: a list in output order, a dict by output key."""
    return dict(zip(keys, values)) if keys is not None else list(values)


def compile_to_keras(compiled: dict[str, Any], output_keys: list[str] | None = None
                     ) -> tuple[dict[str, Any] | None, str]:
    """(Keras's compile_config, what was left out or '') or (None, why not) for fcgpu's
    ``get_compile_config()``; ``output_keys``: the dict keys of a model whose outputs are a dict."""
    loss, opt = compiled.get("loss") or {}, compiled.get("optimizer") or {}
    if not isinstance(loss, dict) or not isinstance(opt, dict):
        return None, "the loss or the optimizer is not a config"
    left: list[str] = []
    if loss.get("class_name") == "OutputsLoss":
        names = list(loss.get("output_names") or [])
        keys = output_keys if output_keys is not None and len(output_keys) == len(names) else None
        losses = []
        for name, part in zip(names, loss.get("losses") or []):
            translated, why = _loss_to_keras(part)
            if translated is None:
                return None, f"output {name!r}: {why}"
            losses.append(translated)
        weights = [float(w) for w in loss.get("loss_weights") or [1.0] * len(names)]
        given = compiled.get("metrics") or {}
        per_output = []
        for name in names:
            entries = []
            for m in (given.get(name) or []) if isinstance(given, dict) else []:
                keras_name = _metric_to_keras(m)
                if keras_name is None:
                    left.append(f"output {name!r}'s metric {_label(m)} (Keras has none that computes as fcgpu's)")
                else:
                    entries.append(keras_name)
            per_output.append(entries)
        if any((compiled.get("weighted_metrics") or {}).values()):
            left.append("the weighted_metrics (fcgpu writes none to Keras files)")
        keras_loss: Any = _by_output(losses, keys)
        loss_weights: Any = _by_output(weights, keys)
        metrics: Any = _by_output(per_output, keys) if any(per_output) else None
    else:
        keras_loss, why = _loss_to_keras(loss)
        if keras_loss is None:
            return None, why
        loss_weights, metrics = None, []
        for m in compiled.get("metrics") or []:
            keras_name = _metric_to_keras(m)
            if keras_name is None:
                return None, f"Keras has no metric {m!r} as fcgpu computes it"
            metrics.append(keras_name)
        metrics = metrics or None
    keras_opt, why = _optimizer_to_keras(opt)
    if keras_opt is None:
        return None, why
    return {
        "optimizer": keras_opt,
        "loss": keras_loss,
        "loss_weights": loss_weights,
        "metrics": metrics,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }, "; ".join(left)


def _loss_from_keras(loss: Any) -> tuple[Any, str]:
    """(fcgpu's loss, '') or (None, why not) for one Keras loss (a name or a serialized class)."""
    if isinstance(loss, str):
        if loss not in _LOSS_STRINGS:
            return None, f"fcgpu has no loss {loss!r}"
        return _LOSS_STRINGS[loss], ""
    if isinstance(loss, dict) and loss.get("class_name") in _LOSSES and isinstance(loss.get("config"), dict):
        inner = loss["config"]
        if inner.get("reduction", "sum_over_batch_size") != "sum_over_batch_size" or inner.get("axis", -1) != -1:
            return None, "the loss's reduction or axis differs from fcgpu's (a mean over the batch, the last axis)"
        return {"class_name": loss["class_name"], **{k: inner[k] for k in _LOSSES[loss["class_name"]][1] if k in inner}}, ""
    return None, f"fcgpu has no loss {str(loss)[:80]!r}"


def _optimizer_from_keras(opt: Any) -> tuple[dict[str, Any] | None, str]:
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
    return fc_opt, ""


def _metrics_from_keras(given: Any) -> tuple[list[Any] | None, str]:
    metrics = []
    for m in given or []:
        if isinstance(m, str) and m in _METRICS:
            metrics.append(m)
        elif isinstance(m, dict) and m.get("class_name") in _METRIC_CLASSES:
            short, name = _METRIC_CLASSES[m["class_name"]], (m.get("config") or {}).get("name")
            # Keras's own name of the class (MeanAbsoluteError(): 'mean_absolute_error') names it in the logs
            metrics.append(name if name == _SNAKE.get(m["class_name"]) else short)
        else:
            return None, f"fcgpu has no metric {m.get('class_name') if isinstance(m, dict) else m!r}"
    return metrics, ""


def _per_output(value: Any, keys: list[str], what: str, one_for_all: bool) -> tuple[list[Any] | None, str]:
    """``value`` for each output: a list in output order, a dict by output key, or (``one_for_all``)
    one value for every output."""
    if isinstance(value, dict) and "class_name" not in value:
        unknown = [k for k in value if k not in keys]
        if unknown:
            return None, f"its {what} name outputs {unknown[:4]} the model does not have (its outputs: {keys})"
        return [value.get(k) for k in keys], ""
    if isinstance(value, (list, tuple)):
        if len(value) != len(keys):
            return None, f"its {what} have {len(value)} entries for {len(keys)} outputs"
        return list(value), ""
    if not one_for_all:
        return None, f"its {what} are not one entry per output"
    return [value] * len(keys), ""


def _outputs_from_keras(compiled: dict[str, Any], keys: list[str]) -> tuple[dict[str, Any] | None, str]:
    """The fcgpu compile config of a model of several outputs; ``keys``: what Keras's per-output
    dicts are keyed by (a dict output's keys, else the layers' names), as fcgpu's compile takes them."""
    losses, why = _per_output(compiled.get("loss"), keys, "loss", True)
    if losses is None:
        return None, why
    fc_losses = []
    for key, loss in zip(keys, losses):
        if loss is None:
            return None, f"output {key!r} has no loss; fcgpu trains every output"
        fc_loss, why = _loss_from_keras(loss)
        if fc_loss is None:
            return None, f"output {key!r}: {why}"
        fc_losses.append(fc_loss)
    weights, why = _per_output(compiled.get("loss_weights") or 1.0, keys, "loss_weights", True)
    if weights is None:
        return None, why
    weights = [1.0 if w is None else w for w in weights]
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
        return None, f"its loss_weights {weights!r} are not numbers >= 0"
    metrics: dict[str, list[Any]] = {key: [] for key in keys}  # by what fcgpu's compile knows them by
    if compiled.get("metrics"):
        given, why = _per_output(compiled["metrics"], keys, "metrics", False)
        if given is None:
            return None, why
        for name, entry in zip(keys, given):
            parts, why = _metrics_from_keras(entry if isinstance(entry, (list, tuple)) or entry is None else [entry])
            if parts is None:
                return None, why
            metrics[name] = parts
    opt, why = _optimizer_from_keras(compiled.get("optimizer"))
    if opt is None:
        return None, why
    loss = {"class_name": "OutputsLoss", "losses": fc_losses, "loss_weights": [float(w) for w in weights],
            "output_names": list(keys)}
    return {"loss": loss, "optimizer": opt, "metrics": metrics}, ""


def compile_from_keras(compiled: Any, outputs: list[str] | None = None, keys: list[str] | None = None
                       ) -> tuple[dict[str, Any] | None, str]:
    """(fcgpu compile config, '') or (None, why not) for a Keras compile_config; ``outputs``: the
    layer names of a model's outputs, ``keys`` their dict keys where Keras made them a dict."""
    if not isinstance(compiled, dict) or not compiled:
        return None, "no compile settings"
    if compiled.get("weighted_metrics"):
        return None, "fcgpu has no weighted_metrics"
    if outputs is not None and len(outputs) > 1:
        return _outputs_from_keras(compiled, list(keys) if keys is not None else list(outputs))
    if compiled.get("loss_weights"):
        return None, "fcgpu has no loss_weights"
    fc_loss, why = _loss_from_keras(compiled.get("loss"))
    if fc_loss is None:
        return None, why
    fc_opt, why = _optimizer_from_keras(compiled.get("optimizer"))
    if fc_opt is None:
        return None, why
    metrics, why = _metrics_from_keras(compiled.get("metrics"))
    if metrics is None:
        return None, why
    return {"loss": fc_loss, "optimizer": fc_opt, "metrics": metrics}, ""
