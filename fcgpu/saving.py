"""Saving and loading models in a format that runs no code on load.

The archive code (``write_archive`` / ``read_archive``) is model-agnostic: a JSON config plus
named, checksummed arrays. ``save_model`` / ``load_model`` map a model onto it through the
model's public protocol (``get_config``/``from_config`` via ``fcgpu.serialization``, weights,
``get_compile_config``/``compile_from_config``, the optimizer's ``state_dict``): this module
imports no model or layer class.

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
from .serialization import deserialize

__all__ = ["save_model", "load_model", "ModelFileError", "write_archive", "read_archive", "write_npz"]

FORMAT = "fcgpu.model"
VERSION = 1
_CONFIG_KEY = "__config__"


class ModelFileError(ValueError):
    """A model file that cannot be read: truncated, corrupted, altered, or not an fcgpu model."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write_npz(file: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an .npz archive into an open binary file."""
    np.savez(file, **arrays)


def write_archive(path: str | os.PathLike, config: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``config`` (JSON-ready) and ``arrays`` to ``path`` atomically, recording each array's
    shape, dtype and SHA-256 in the config's ``arrays`` entry."""
    path = os.fspath(path)
    config = dict(config)
    config["format"], config["version"] = FORMAT, VERSION
    config["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)} for k, a in arrays.items()}
    entries = dict(arrays)
    entries[_CONFIG_KEY] = np.array(json.dumps(config))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write_npz(f, entries)
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


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, arrays) of an archive, each array checked against the shape, dtype and checksum the
    config records; any damage is a ModelFileError."""
    path = os.fspath(path)
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


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (built) to ``path`` atomically: config, weights, compile settings and optimizer state."""
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it, or train it, before saving")
    arrays: dict[str, np.ndarray] = {}
    names = [name for name, _ in model.trainable_variables]
    for name, value in zip(names, model.get_weights()):
        arrays[f"param/{name}"] = value
    compiled = model.get_compile_config()
    if compiled is not None:
        state = model.optimizer.state_dict()
        for name, slots in state["state"].items():
            for slot, value in slots.items():
                arrays[f"opt/{name}/{slot}"] = value
        compiled["optimizer_steps"] = state["steps"]
        compiled["optimizer_state"] = {n: sorted(s) for n, s in state["state"].items()}
    write_archive(path, {"model": model.get_config(), "compile": compiled}, arrays)


def load_model(path: str | os.PathLike, compile: bool = True) -> Any:
    """Read a model saved by ``model.save``, onto the active backend (whichever backend saved it).

    With ``compile`` (the default) the loss, optimizer, metrics and optimizer state come back too.
    """
    path = os.fspath(path)
    config, arrays = read_archive(path)
    try:
        # Building draws initial values that set_weights overwrites at once; keep the seeded stream as it was.
        rng = get_rng()
        saved = rng.bit_generator.state
        try:
            model = deserialize(config["model"], "model")
        finally:
            rng.bit_generator.state = saved
        if not model.built:
            raise ValueError("the saved model has no input size")
        model.set_weights([arrays[f"param/{name}"] for name, _ in model.trainable_variables])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"path: {path!r} has an unusable architecture or weights: {e}") from None
    compiled = config.get("compile")
    if compile and compiled:
        model.compile_from_config(compiled)
        state = {
            n: {s: arrays[f"opt/{n}/{s}"] for s in slots} for n, slots in compiled.get("optimizer_state", {}).items()
        }
        model.optimizer.load_state_dict({"steps": compiled.get("optimizer_steps", {}), "state": state}, model.backend)
    return model
