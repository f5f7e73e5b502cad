"""Keras 3's weights layout in HDF5 (``.weights.h5`` files and a ``.keras`` archive's ``model.weights.h5``).

Keras stores a model's layers under ``layers/<snake class name>[_k]/vars/<i>`` (numbered per
class in the order of ``model.layers``, not by layer name: ``dense``, ``dense_1``, ``dropout``; see
``keras_common.storage_keys``; a functional model's inputs too, as ``input_layer``), each ``vars``
group with a ``name`` attribute (the layer's name), each model's own empty ``vars`` group (the root's
for the model itself), a nested model's layers under its own key (``layers/sequential/layers/dense``),
and each layer's variables in ``get_weights`` order (a Dense's kernel (in, units) as ``0``, its bias
as ``1``; BatchNormalization's gamma, beta, moving mean and variance). ``optimizer/vars`` holds
Keras optimizer state: written and read here as arrays, translated by ``keras_optimizer`` (a
compiled model's file holds it from before its first step on, as Keras's does).

Reading trusts nothing: only plain groups and datasets are followed (no soft or external links,
no external or virtual datasets, no datasets of objects or strings), every dataset's declared
size is bounded by what the file stores before it is read, and the layout must name exactly the
model's layers with exactly their shapes; every failure is a ``ModelFileError`` and the model is
changed only after everything has passed. ``h5py`` is imported only here, when such a file is used
(``pip install 'fcgpu[keras]'``).
"""
from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np

from ..saving.archive import ModelFileError
from ..saving.fileio import atomic_write, check_output_path
from .keras_common import storage_keys

__all__ = ["StoragePlan", "h5py_module", "load_weights", "read_layer_weights", "read_optimizer_vars", "save_weights",
           "storage_plan", "weights_h5_bytes"]

MAX_WEIGHTS_FILE = 2**36  # 64 GiB: larger than any dense model fcgpu trains
_EXPANSION = 1000  # a dataset may declare at most this many times the bytes the file holds


def h5py_module() -> Any:
    """h5py, or an ImportError that says how to get it."""
    try:
        import h5py  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ImportError(
            "Keras weight files (.keras, .weights.h5) need h5py: pip install 'fcgpu[keras]' (or h5py)"
        ) from None
    return h5py


class StoragePlan:
    """Where a model's layers live in a Keras weights file: ``entries`` (path, layer) for every layer
    that is not a model (a functional model's inputs included), ``leaves`` those that compute, in
    ``get_weights`` order; ``containers`` (path, model) for the model and every
    model nested in it ('' for the root), each with the keys its ``layers`` group holds."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []
        self.leaves: list[tuple[str, Any]] = []
        self.containers: list[tuple[str, Any, list[str]]] = []


def _is_model(layer: Any) -> bool:
    return hasattr(layer, "compute_layers")


def storage_plan(model: Any, classes: list[tuple[str, Any]] | None = None) -> StoragePlan:
    """The plan of ``model``; ``classes``: (Keras class, layer) of its own layers in the order Keras
    stores them, where they differ from the fcgpu classes and ``model.layers`` (a file Keras wrote)."""
    plan = StoragePlan()
    paths: dict[int, str] = {}

    def visit(m: Any, prefix: str, pairs: list[tuple[str, Any]]) -> None:
        keys = storage_keys([cls for cls, _ in pairs])
        plan.containers.append((prefix, m, [k.split("/", 1)[1] for k in keys]))
        for key, (_, layer) in zip(keys, pairs):
            if _is_model(layer):
                visit(layer, f"{prefix}{key}/", [(type(x).__name__, x) for x in layer.layers])
            else:
                paths[id(layer)] = prefix + key
                plan.entries.append((prefix + key, layer))

    visit(model, "", classes if classes is not None else [(type(x).__name__, x) for x in model.layers])

    def leaves(m: Any) -> None:
        for layer in m.compute_layers:
            if _is_model(layer):
                leaves(layer)
            else:
                plan.leaves.append((paths[id(layer)], layer))

    leaves(model)
    return plan


def _stored(layer: Any) -> list[np.ndarray]:
    """A layer's variables as Keras stores them (a count as Keras's int32 scalar)."""
    return [v.astype(np.int32).reshape(()) if v.size == 1 and v.dtype.kind in "iu" else v for v in layer.get_weights()]


def weights_h5_bytes(model: Any, optimizer: tuple[str, list[np.ndarray]] | None = None) -> bytes:
    """The model's weights as a Keras 3 HDF5 file, in memory (the model built, every value finite);
    ``optimizer``: (its Keras name, its variables in Keras's order), stored under ``optimizer/vars``."""
    h5py = h5py_module()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        plan = storage_plan(model)
        for prefix, m, _ in plan.containers[1:]:
            f.create_group(prefix + "vars").attrs["name"] = m.name
        for key, layer in plan.entries:
            group = f.create_group(key).create_group("vars")
            group.attrs["name"] = layer.name
            for i, value in enumerate([] if layer.is_input else _stored(layer)):
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise ValueError(f"model: layer '{layer.name}' holds NaN or inf; refusing to save it")
                group.create_dataset(str(i), data=value)
        if optimizer is not None:
            group = f.create_group("optimizer").create_group("vars")
            group.attrs["name"] = optimizer[0]
            for i, value in enumerate(optimizer[1]):
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise ValueError("model: the optimizer state holds NaN or inf; refusing to save it")
                group.create_dataset(str(i), data=value)
        f.create_group("vars").attrs["name"] = model.name
    return buffer.getvalue()


def _child(group: Any, name: str, kind: str, where: str) -> Any:
    """``group[name]`` if it is a hard-linked group or dataset (``kind``), else ModelFileError."""
    h5py = h5py_module()
    link = group.get(name, default=None, getlink=True)
    if link is None:
        raise ModelFileError(f"{where}: has no {name!r}")
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(f"{where}: {name!r} is a {type(link).__name__} (links are not followed)")
    obj = group[name]
    wanted = h5py.Group if kind == "group" else h5py.Dataset
    if not isinstance(obj, wanted):
        raise ModelFileError(f"{where}: {name!r} is not a {kind}")
    return obj


def read_layer_weights(data: bytes, plan: StoragePlan, what: str) -> dict[str, list[np.ndarray]]:
    """{storage path: [arrays]} of a Keras weights file held in ``data``, for exactly the layers of
    ``plan``: a layer the file has and the model lacks, or the other way round, is a ModelFileError."""
    h5py = h5py_module()
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as e:
        raise ModelFileError(f"{what} is not a readable HDF5 file (truncated or corrupted: {type(e).__name__}: {e})") from None
    budget = max(len(data), 1) * _EXPANSION
    try:
        with f:
            for prefix, _, keys in plan.containers:
                where = f"{what}: {prefix or '/'}"
                group = f
                for part in prefix.strip("/").split("/") if prefix else []:
                    group = _child(group, part, "group", where)
                layers = _child(group, "layers", "group", where) if keys else None
                present = set(layers.keys()) if layers is not None else set()
                if present != set(keys):
                    raise ModelFileError(
                        f"{where}: its layers do not match the model's (the file has {sorted(present - set(keys))} that "
                        f"the model lacks, lacks {sorted(set(keys) - present)}); Keras numbers them per class in model order"
                    )
            out: dict[str, list[np.ndarray]] = {}
            for path, _ in plan.leaves:
                where = f"{what}: {path}"
                group = f
                for part in path.split("/"):
                    group = _child(group, part, "group", where)
                out[path], budget = _read_vars(_child(group, "vars", "group", where), where, budget, len(data))
            return out
    except ModelFileError:
        raise
    except Exception as e:  # whatever h5py raised on a damaged file
        raise ModelFileError(f"{what} is damaged ({type(e).__name__}: {e})") from None


def _read_vars(group: Any, where: str, budget: int, size: int) -> tuple[list[np.ndarray], int]:
    """The datasets 0, 1, ... of a ``vars`` group, each checked before it is read, and the budget left."""
    names = list(group.keys())
    if sorted(names, key=lambda n: (len(n), n)) != [str(i) for i in range(len(names))]:
        raise ModelFileError(f"{where}: expected variables named 0, 1, ..., got {names[:10]}")
    arrays = []
    for i in range(len(names)):
        ds = _child(group, str(i), "dataset", where)
        if ds.external or ds.is_virtual:
            raise ModelFileError(f"{where}/vars/{i}: external or virtual datasets are not read")
        if ds.dtype.kind not in "fiu" or ds.dtype.fields is not None or len(ds.shape) > 2:
            raise ModelFileError(f"{where}/vars/{i}: dtype {ds.dtype} and shape {ds.shape} are not a weight")
        declared = math.prod(ds.shape) * ds.dtype.itemsize
        if declared > budget:
            raise ModelFileError(f"{where}/vars/{i}: declares {declared} bytes in a file of {size} (a shape bomb?)")
        budget -= declared
        arrays.append(np.asarray(ds[()]))
    return arrays, budget


def read_optimizer_vars(data: bytes, what: str) -> list[np.ndarray] | None:
    """The ``optimizer/vars`` arrays of a Keras weights file (checked as layers' are), or None."""
    h5py = h5py_module()
    where = f"{what}: optimizer"
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if "optimizer" not in f:
                return None
            group = _child(_child(f, "optimizer", "group", what), "vars", "group", where)
            return _read_vars(group, where, max(len(data), 1) * _EXPANSION, len(data))[0]
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"{what} is damaged ({type(e).__name__}: {e})") from None


def weights_for(plan: StoragePlan, found: dict[str, list[np.ndarray]], what: str) -> list[np.ndarray]:
    """The model's ``set_weights`` list from ``read_layer_weights``, each array checked by count and
    shape against the layer stored under that path (built layers; an unbuilt model's ``set_weights``
    checks the chain)."""
    weights = []
    for path, layer in plan.leaves:
        arrays = found[path]
        expected = layer.weight_count()
        if len(arrays) != expected:
            raise ModelFileError(f"{what}: {path} (layer '{layer.name}') holds {len(arrays)} arrays, the layer takes {expected}")
        if layer.built:
            for (name, value, _), a in zip(layer.variables(), arrays):
                count = a.shape == () and value.dtype.kind in "iu" and value.size == 1  # Normalization's count
                if tuple(a.shape) != tuple(value.shape) and not count:
                    raise ModelFileError(
                        f"{what}: {path}/vars holds shape {tuple(a.shape)} for {name}, which has shape {tuple(value.shape)}"
                    )
        weights.extend(arrays)
    return weights


def assign(model: Any, weights: list[np.ndarray], what: str) -> None:
    """``model.set_weights`` (which checks every array before changing any), failures as ModelFileError."""
    try:
        model.set_weights(weights)
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{what}: its weights do not fit the model: {e}") from None


def _check_name(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    if not str(text).endswith(".weights.h5"):
        raise ValueError(f"path: Keras weight files end in '.weights.h5', got {text!r}")
    return str(text)


def save_weights(model: Any, path: str | os.PathLike) -> None:
    """Write the model's weights to a Keras 3 ``.weights.h5`` file, atomically."""
    text = _check_name(path)
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it, or train it, before saving its weights")
    check_output_path(text, "path", probe=False)
    data = weights_h5_bytes(model)
    with atomic_write(text) as f:
        f.write(data)


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """Load a Keras 3 ``.weights.h5`` file (Keras's or fcgpu's) into ``model``; the whole file is
    checked against the model's layers and shapes first, so a failure (``ModelFileError``) changes nothing."""
    text = _check_name(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"path: no weights file at {text!r}")
    size = os.path.getsize(text)
    if size > MAX_WEIGHTS_FILE:
        raise ModelFileError(f"path: {text!r} is {size} bytes, more than a weights file fcgpu reads ({MAX_WEIGHTS_FILE})")
    with open(text, "rb") as f:
        data = f.read()
    what = f"path: {text!r}"
    plan = storage_plan(model)
    assign(model, weights_for(plan, read_layer_weights(data, plan, what), what), what)
