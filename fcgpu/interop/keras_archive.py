"""Keras 3 ``.keras`` archives: a zip of ``metadata.json``, ``config.json`` and ``model.weights.h5``.

``save_keras_model`` writes what ``keras.models.load_model`` reads (members stored, as Keras
stores them), atomically (``fcgpu.saving.fileio``); ``load_keras_model`` reads what Keras writes, for the
layers fcgpu has (``keras_config``), with Keras's ``safe_mode`` always on: no code is run, no
module imported, no pickle read; a layer class fcgpu lacks is refused by name unless the caller
registered a converter for it in ``custom_objects``.

Everything in a file is checked before the model exists: the zip itself (truncated, duplicate or
escaping member names such as ``../x`` or ``/etc/x``, declared sizes against a bound and against
what deflate can produce, so a zip bomb is refused before it is inflated), the JSON config, the
parameter count it implies against the bytes the weights member holds (a config cannot make fcgpu
allocate more than the file could fill), then the weights' layout and shapes
(``keras_weights``). Every failure is a ``ModelFileError`` naming the file.
"""
from __future__ import annotations

import datetime
import json
import os
import warnings
import zipfile
from typing import Any, Callable, Mapping

from ..saving.archive import ModelFileError
from ..saving.fileio import atomic_write, check_output_path
from ..initializers import get_rng
from ..optimizers import state_dtype
from ..saving.serialization import deserialize
from .keras_config import (
    UnsupportedKeras,
    compile_from_keras,
    compile_to_keras,
    model_from_keras,
    model_to_keras,
    parameter_count,
)
from .keras_optimizer import plain, state_from_keras, state_to_keras, unstepped
from . import keras_weights
from .keras_weights import assign, read_layer_weights, read_optimizer_vars, storage_plan, weights_for, weights_h5_bytes

__all__ = ["is_keras_archive", "load_keras_model", "load_weights", "reads_as_keras", "save_keras_model"]

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
MAX_JSON_BYTES = 16 * 2**20
MAX_WEIGHTS_BYTES = 2**36
MAX_MEMBERS = 1000
_INFLATION = 1100  # deflate expands at most 1032-fold: more is a forged size
_KERAS_VERSION = "3.15.1"  # the Keras release whose files this layout was checked against (Keras reads it for display)


def _names(path: str | os.PathLike) -> set[str] | None:
    try:
        with zipfile.ZipFile(os.fspath(path)) as zf:
            return set(zf.namelist())
    except Exception:
        return None


def is_keras_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip that looks like Keras's (a ``config.json``) rather than fcgpu's
    ``.npz`` archive; False for anything unreadable (its own reader then says what is wrong)."""
    names = _names(path)
    return names is not None and CONFIG in names and "__config__.npy" not in names


def reads_as_keras(path: str | os.PathLike) -> bool:
    """Whether ``fc.load_model`` reads ``path`` as a Keras archive: one that looks like Keras's, or
    any file named ``.keras`` that is not fcgpu's own archive (0.3 wrote those under that name)."""
    names = _names(path)
    if names is not None and "__config__.npy" in names:
        return False
    return (names is not None and CONFIG in names) or str(os.fspath(path)).endswith(".keras")


# -- saving ------------------------------------------------------------------------------------
def save_keras_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (built) as a Keras 3 ``.keras`` archive, atomically. The compile settings go
    with it where Keras computes the same (else a warning says why they were left out), and the
    optimizer's state where Keras's optimizer keeps the same (``keras_optimizer``)."""
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it, or train it, before saving")
    check_output_path(path, "path", probe=False)
    compiled = model.get_compile_config()
    try:
        config = model_to_keras(model.get_config(), compiled)
    except UnsupportedKeras as e:
        raise ValueError(f"model: cannot be written as a Keras file: {e}") from None
    if compiled is not None:
        why = compile_to_keras(compiled, model.get_config().get("output_keys"))[1]
        if "compile_config" not in config:
            warnings.warn(f"model.save: the .keras file has no compile settings ({why}); Keras loads the model "
                          f"uncompiled", stacklevel=3)
        elif why:
            warnings.warn(f"model.save: the .keras file's compile settings leave out {why}", stacklevel=3)
    optimizer = None
    if "compile_config" in config:
        params = [(name, tuple(p.shape)) for name, p in model.trainable_variables]
        values = state_to_keras(model.optimizer, params)
        if values is not None:
            optimizer = (config["compile_config"]["optimizer"]["config"]["name"], values)
    weights = weights_h5_bytes(model, optimizer)
    metadata = {"keras_version": _KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": f"fcgpu {_fcgpu_version()}"}
    with atomic_write(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA, json.dumps(metadata))
            zf.writestr(CONFIG, json.dumps(config))
            zf.writestr(WEIGHTS, weights)


def _fcgpu_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fcgpu")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- loading -----------------------------------------------------------------------------------
def _safe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return bool(name) and not name.startswith(("/", "\\")) and ":" not in parts[0] and ".." not in parts and "\0" not in name


def _members(zf: zipfile.ZipFile, bad: str) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{bad}: it has {len(infos)} members, more than a model archive holds")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if not _safe_name(info.filename):
            raise ModelFileError(f"{bad}: member {info.filename!r} names a path outside the archive")
        if info.filename in members:
            raise ModelFileError(f"{bad}: member {info.filename!r} appears twice")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{bad}: member {info.filename!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > _INFLATION * max(info.compress_size, 1):
            raise ModelFileError(f"{bad}: member {info.filename!r} declares {info.file_size} bytes from "
                                 f"{info.compress_size} stored (a zip bomb?)")
        members[info.filename] = info
    for name in (CONFIG, WEIGHTS):
        if name not in members:
            extra = " (weights stored as .npz are not read)" if name == WEIGHTS and "model.weights.npz" in members else ""
            raise ModelFileError(f"{bad}: the archive has no {name}{extra}")
    return members


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, bad: str) -> bytes:
    """A member's bytes, refusing more than ``limit`` (its declared size checked first, the data too)."""
    if info.file_size > limit:
        raise ModelFileError(f"{bad}: member {info.filename!r} declares {info.file_size} bytes, more than {limit}")
    with zf.open(info) as stream:
        data = stream.read(limit + 1)
    if len(data) != info.file_size:
        raise ModelFileError(f"{bad}: member {info.filename!r} does not hold the bytes it declares")
    return data


def _weights_member(path: str, bad: str) -> bytes:
    """The ``model.weights.h5`` bytes of a ``.keras`` archive, the zip checked as ``load_keras_model`` does."""
    try:
        with zipfile.ZipFile(path) as zf:
            return _read(zf, _members(zf, bad)[WEIGHTS], MAX_WEIGHTS_BYTES, bad)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"{bad} is not a readable .keras archive (truncated or corrupted: {type(e).__name__}: {e})") from None


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """``model.load_weights``: a ``.weights.h5`` file (``keras_weights.load_weights``) or, as Keras
    allows, the weights of a ``.keras`` archive; checked by layer and shape before anything changes."""
    text = os.fspath(path)
    if not str(text).endswith(".keras"):
        return keras_weights.load_weights(model, text)
    if not os.path.exists(text):
        raise FileNotFoundError(f"path: no model file at {text!r}")
    bad = f"path: {text!r}"
    what = f"{bad} ({WEIGHTS})"
    plan = storage_plan(model)
    assign(model, weights_for(plan, read_layer_weights(_weights_member(text, bad), plan, what), what), what)


def _build(model_config: dict[str, Any]) -> Any:
    """The fcgpu model of ``model_config``, built, without drawing from the seeded generator's stream.
    A Sequential is assembled layer by layer (a layer a caller's converter made goes in as it is)."""
    rng = get_rng()
    saved = rng.bit_generator.state
    try:
        if model_config["class_name"] != "Sequential":
            return deserialize(model_config, "model")
        model = deserialize({"class_name": "Sequential", "name": model_config.get("name"), "layers": []}, "model")
        if model_config.get("input") is not None:
            model.add(deserialize(model_config["input"], "input"))
        for layer in model_config["layers"]:
            model.add(deserialize(layer, "layer") if isinstance(layer, dict) else layer)
        model.build(model_config["input_features"])
    finally:
        rng.bit_generator.state = saved
    return model


def _keras_order(model: Any, classes: list[tuple[str | None, str]]) -> list[tuple[str, Any]]:
    """(Keras class, fcgpu layer) of the model's own layers in the order Keras stored them: a
    Sequential's by position, a functional model's by name in its config's order."""
    if all(name is None for name, _ in classes):
        return [(cls, layer) for (_, cls), layer in zip(classes, model.layers)]
    by_name = {layer.name: layer for layer in model.layers}
    return [(cls, by_name[name]) for name, cls in classes if name in by_name]


def load_keras_model(
    path: str | os.PathLike,
    compile: bool = True,
    custom_objects: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
) -> Any:
    """The fcgpu model of a Keras 3 ``.keras`` archive, onto the active backend.

    ``custom_objects`` maps a Keras class name to a function taking that layer's Keras config and
    returning an fcgpu layer (nothing else in a file is ever resolved to code). With ``compile``,
    the loss, optimizer and metrics come back where fcgpu computes them as Keras does; otherwise a
    warning says why and the model is uncompiled, as Keras does.
    """
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"path: no model file at {text!r}")
    bad = f"path: {text!r}"
    try:
        with zipfile.ZipFile(text) as zf:
            members = _members(zf, bad)
            raw = _read(zf, members[CONFIG], MAX_JSON_BYTES, bad)
            weights_info = members[WEIGHTS]
            try:
                config = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as e:
                raise ModelFileError(f"{bad}: its config.json is not valid JSON ({e})") from None
            try:
                model_config, classes = model_from_keras(config, custom_objects)
                need = 2 * parameter_count(model_config)  # 2 bytes a value at the fewest (float16)
            except UnsupportedKeras as e:
                raise ModelFileError(f"{bad}: {e}") from None
            except RecursionError:
                raise ModelFileError(f"{bad}: its config nests too deep") from None
            if need > weights_info.file_size:
                raise ModelFileError(f"{bad}: its config needs {need} bytes of weights or more, but {WEIGHTS} "
                                     f"holds {weights_info.file_size}")
            data = _read(zf, weights_info, MAX_WEIGHTS_BYTES, bad)
    except ModelFileError:
        raise
    except Exception as e:  # zipfile, zlib or the OS on a damaged file
        raise ModelFileError(f"{bad} is not a readable .keras archive (truncated or corrupted: {type(e).__name__}: {e})") from None
    try:
        model = _build(model_config)
    except Exception as e:
        raise ModelFileError(f"{bad}: its architecture cannot be built: {e}") from None
    what = f"{bad} ({WEIGHTS})"
    plan = storage_plan(model, _keras_order(model, classes))  # where Keras stored each layer: by its Keras class
    assign(model, weights_for(plan, read_layer_weights(data, plan, what), what), what)
    if compile and isinstance(config, dict) and config.get("compile_config"):
        built = model.get_config()  # its outputs in the model's order (a dict's: by sorted key, as Keras's)
        settings, why = compile_from_keras(config["compile_config"], built.get("output_layers"), built.get("output_keys"))
        try:
            if settings is not None:
                model.compile_from_config(settings)
        except Exception as e:
            settings, why = None, str(e)
        if settings is None:
            warnings.warn(f"load_model: {text!r} is loaded uncompiled: its compile settings do not translate ({why})",
                          stacklevel=3)
        else:
            _load_optimizer_state(model, data, what)
    return model


def _load_optimizer_state(model: Any, data: bytes, what: str) -> None:
    """The optimizer state Keras stored with the weights, where it translates (else a warning: the
    optimizer starts afresh, as Keras's does when a saved optimizer does not match)."""
    arrays = read_optimizer_vars(data, what)
    if arrays is None or unstepped(arrays):  # saved before its first step: the optimizer is fresh
        return
    params = [(name, tuple(p.shape)) for name, p in model.trainable_variables]
    optimizer = plain(model.optimizer)
    state = state_from_keras(optimizer.get_config(), arrays, params)
    if state is None:
        warnings.warn(f"load_model: {what}: the optimizer state does not translate to fcgpu's "
                      f"{type(optimizer).__name__}; it starts afresh", stacklevel=4)
        return
    dtypes = {name: state_dtype(p.dtype) for name, p in model.trainable_variables}
    state["state"] = {n: {k: v.astype(dtypes[n]) for k, v in slots.items()} for n, slots in state["state"].items()}
    optimizer.load_state_dict(state, model.backend)
