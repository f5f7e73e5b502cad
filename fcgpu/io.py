"""Saving and loading models in a format that runs no code on load, and PyTorch nn.Linear interop.

A model file is a NumPy ``.npz`` archive read with ``allow_pickle=False``:
- ``__config__``: a JSON string: format tag and version, the architecture
  (``Sequential.get_config()``), the compile settings, optimizer step counts, and the shape,
  dtype and SHA-256 of every array, so a damaged or altered file is refused with a clear error;
- ``param/<layer>/<kernel|bias>``: the weights, host arrays;
- ``opt/<layer>/<kernel|bias>/<slot>``: optimizer state (momentum, Adam moments).

Writes are atomic: the archive goes to a temporary file in the target's folder, is flushed to
disk and then renamed over the target, so a crash mid-save leaves the previous file intact.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from .initializers import get_rng
from .layers import Dense

__all__ = ["save_model", "load_model", "ModelFileError", "export_torch_state_dict", "import_torch_state_dict"]

FORMAT = "fcgpu.model"
VERSION = 1
_CONFIG_KEY = "__config__"


class ModelFileError(ValueError):
    """A model file that cannot be read: truncated, corrupted, altered, or not an fcgpu model."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    np.savez(file, **arrays)


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (a built Sequential) to ``path`` atomically; the path is used as given."""
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it, or train it, before saving")
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    for name, param, _ in model.parameters():
        arrays[f"param/{name}"] = np.array(model.backend.to_numpy(param), copy=True)
    compiled = None
    if model.loss is not None and model.optimizer is not None:
        state = model.optimizer.state_dict()
        for name, slots in state["state"].items():
            for slot, value in slots.items():
                arrays[f"opt/{name}/{slot}"] = value
        compiled = {
            "loss": model.loss.get_config(),
            "optimizer": state["config"],
            "metrics": list(model.metrics),
            "optimizer_steps": state["steps"],
            "optimizer_state": {n: sorted(s) for n, s in state["state"].items()},
        }
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.get_config(),
        "compile": compiled,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)} for k, a in arrays.items()},
    }
    arrays[_CONFIG_KEY] = np.array(json.dumps(config))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no model file at {path!r}")
    bad = f"path: {path!r} is not a readable fcgpu model file"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _CONFIG_KEY not in npz.files:
                raise ModelFileError(f"{bad}: it has no '{_CONFIG_KEY}' entry (not saved by fcgpu?)")
            config = json.loads(str(npz[_CONFIG_KEY][()]))
            arrays = {k: npz[k] for k in npz.files if k != _CONFIG_KEY}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{bad} (truncated or corrupted: {type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{bad}: its config does not name the format {FORMAT!r}")
    if config.get("version") != VERSION:
        raise ModelFileError(f"{bad}: format version {config.get('version')!r}, this fcgpu reads version {VERSION}")
    listed = config.get("arrays", {})
    if set(listed) != set(arrays):
        raise ModelFileError(f"{bad}: its arrays {sorted(arrays)} do not match its config {sorted(listed)}")
    for key, a in arrays.items():
        meta = listed[key]
        if list(a.shape) != meta["shape"] or a.dtype.str != meta["dtype"] or _digest(a) != meta["sha256"]:
            raise ModelFileError(f"{bad}: array {key!r} does not match its recorded shape, dtype or checksum (altered?)")
    return config, arrays


def load_model(path: str | os.PathLike, compile: bool = True) -> Any:
    """Read a model saved by ``model.save``, onto the active backend (whichever backend saved it).

    With ``compile`` (the default) the loss, optimizer, metrics and optimizer state come back too.
    """
    from . import losses, optimizers
    from .model import Sequential

    path = os.fspath(path)
    config, arrays = _read(path)
    spec = config["model"]
    try:
        model = Sequential(name=spec["name"])
        for layer_config in spec["layers"]:
            layer_config = dict(layer_config)
            if layer_config.pop("class_name") != "Dense":
                raise ModelFileError(f"path: {path!r} has a layer type this fcgpu does not know")
            model.add(Dense(**layer_config))
        # Building draws initial values that set_weights overwrites at once; keep the seeded stream as it was.
        rng = get_rng()
        saved = rng.bit_generator.state
        try:
            model.build(int(spec["input_features"]))
        finally:
            rng.bit_generator.state = saved
        model.set_weights([arrays[f"param/{name}"] for name, _ in model.trainable_variables])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"path: {path!r} has an unusable architecture or weights: {e}") from None
    compiled = config.get("compile")
    if compile and compiled:
        model.compile(
            loss=losses.get(compiled["loss"]),
            optimizer=optimizers.get(compiled["optimizer"]),
            metrics=compiled["metrics"],
        )
        state = {
            n: {s: arrays[f"opt/{n}/{s}"] for s in slots} for n, slots in compiled.get("optimizer_state", {}).items()
        }
        model.optimizer.load_state_dict({"steps": compiled.get("optimizer_steps", {}), "state": state}, model.backend)
    return model


# -- PyTorch nn.Linear state dicts --------------------------------------------------------
def _torch_prefixes(model: Any) -> list[str]:
    # The module indices of nn.Sequential(Linear, act, Linear, act, ..., Linear): each Dense is a
    # Linear followed by its activation module unless it is linear.
    prefixes, index = [], 0
    for layer in model.layers:
        prefixes.append(str(index))
        index += 1 if layer.activation.name == "linear" else 2
    return prefixes


def export_torch_state_dict(model: Any, prefixes: list[str] | None = None) -> dict[str, np.ndarray]:
    """NumPy arrays keyed like an nn.Sequential of nn.Linear (weight (out, in): the kernel transposed).

    By default the prefixes are the module indices of ``nn.Sequential(Linear, ReLU, Linear, ...)`` for
    the model's activations ('0.weight', '2.weight', ...); load with
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``.
    """
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built")
    prefixes = prefixes or _torch_prefixes(model)
    if len(prefixes) != len(model.layers):
        raise ValueError(f"prefixes: expected {len(model.layers)} names, one per layer, got {len(prefixes)}")
    out: dict[str, np.ndarray] = {}
    for prefix, layer in zip(prefixes, model.layers):
        weights = layer.get_weights()
        out[f"{prefix}.weight"] = np.ascontiguousarray(weights[0].T)
        if layer.use_bias:
            out[f"{prefix}.bias"] = weights[1]
    return out


def import_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Load nn.Linear weights (out, in) and biases, matched to the Dense layers in order.

    Keys are grouped by their prefix before '.weight' / '.bias' in the dict's order, as
    ``module.state_dict()`` lists them; values may be NumPy arrays or CPU tensors. Every shape is
    checked before any layer changes; an unbuilt model is built from the first weight.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias"):
            raise ValueError(f"state_dict: key {key!r} is neither a '.weight' nor a '.bias'")
        groups.setdefault(prefix, {})[kind] = np.asarray(value)
    layers = model.layers
    if len(groups) != len(layers):
        raise ValueError(f"state_dict: has {len(groups)} linear layers ({list(groups)}), the model has {len(layers)}")
    weights: list[np.ndarray] = []
    features = None
    for (prefix, g), layer in zip(groups.items(), layers):
        if "weight" not in g:
            raise ValueError(f"state_dict: '{prefix}.weight' is missing")
        w = g["weight"]
        if w.ndim != 2 or w.shape[0] != layer.units:
            raise ValueError(f"state_dict['{prefix}.weight']: expected shape ({layer.units}, in), got {w.shape}")
        if features is not None and w.shape[1] != features:
            raise ValueError(f"state_dict['{prefix}.weight']: expected {features} inputs, got shape {w.shape}")
        features = layer.units
        weights.append(np.ascontiguousarray(w.T))
        if layer.use_bias:
            if "bias" not in g:
                raise ValueError(f"state_dict: '{prefix}.bias' is missing for layer '{layer.name}'")
            weights.append(g["bias"])
        elif "bias" in g:
            raise ValueError(f"state_dict: '{prefix}.bias' given but layer '{layer.name}' has no bias")
    if not model.built:
        model.build(weights[0].shape[0])
    model.set_weights(weights)
