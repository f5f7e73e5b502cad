"""Saving and loading models in a format that runs no code on load.

``save_model`` / ``load_model`` map a model onto the archive of :mod:`fcgpu.saving.archive` (a JSON
config plus named, checksummed arrays) through the model's public protocol
(``get_config``/``from_config`` via ``fcgpu.saving.serialization``, weights,
``get_compile_config``/``compile_from_config``, the optimizer's ``state_dict``): this module
imports no model or layer class.

A model file is a NumPy ``.npz`` archive, never unpickled:
- ``__config__``: a JSON string: format tag and version, the architecture
  (``Sequential.get_config()``), the compile settings, optimizer step counts and state names, and
  the shape, dtype and SHA-256 of every array, so a damaged or altered file is refused;
- ``param/<layer>/<kernel|bias>``: the weights, host arrays;
- ``opt/<layer>/<kernel|bias>/<slot>``: optimizer state (momentum, Adam moments).

A name ending in ``.keras`` is Keras 3's own archive instead, which ``fcgpu.interop.keras_archive``
writes and reads (``load_model`` also reads a Keras archive under another name, and an fcgpu file
under a ``.keras`` name, as 0.3 wrote them).

Saving refuses NaN or inf in any parameter or optimizer state (such a file would replace the last
good one with one that cannot be trained from), and writes atomically through
:func:`fcgpu.saving.fileio.atomic_write`: a crash mid-save leaves the previous file intact. Loading
checks the whole file before returning: the archive itself, then every array against the
architecture (parameter names, shapes, dtypes) and the optimizer section (state names, shapes
and dtypes against their parameters, step counts), so an inconsistent file fails at load time,
never at the first training step.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from .archive import ModelFileError, read_archive, write_archive, write_npz
from .fileio import check_output_path
from ..initializers import get_rng
from ..optimizers import state_dtype
from .serialization import deserialize

__all__ = ["save_model", "load_model", "ModelFileError", "write_archive", "read_archive", "write_npz"]

_MAX_STEP = 2**63 - 1
_ARRAY_STATE = ("config", "iterations", "steps", "state")  # the state_dict entries saved as arrays or config


def _require_finite(value: np.ndarray, what: str, path: str) -> None:
    if value.dtype.kind in "fc":
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise ValueError(
                f"model: {what} holds {bad} NaN or inf value{'s' if bad > 1 else ''}; refusing to save it to "
                f"{path!r} (a file already there is left as it was)"
            )


# Names of formats save does not write (each has its own writer).
OTHER_FORMATS = {".weights.h5": "a Keras weights file", ".h5": "Keras's legacy HDF5 format",
                  ".hdf5": "Keras's legacy HDF5 format", ".onnx": "an ONNX model", ".pt": "a PyTorch file",
                  ".pth": "a PyTorch file"}


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (built) to ``path`` atomically: config, weights, compile settings and optimizer state.

    Everything is checked (the model built, every value finite, the path's folder there and the path
    not a folder) before the file is touched; the write itself (``fileio.atomic_write``) checks the
    folder is writable.
    """
    text = str(os.fspath(path))
    if text.endswith(".keras"):  # Keras 3's own archive, which Keras loads
        from ..interop.keras_archive import save_keras_model

        return save_keras_model(model, path)
    other = next((s for s in OTHER_FORMATS if text.lower().endswith(s)), None)
    if other is not None:  # fcgpu's archive under another format's name would be read by nothing else
        raise ValueError(f"path: {text!r} names {OTHER_FORMATS[other]}, which save does not write: use "
                         f"'.keras' (Keras 3's format), model.save_weights('x.weights.h5') for Keras weights, "
                         f"fcgpu.interop.export_onnx for ONNX, fcgpu.interop.export_torch_state_dict (or `fcgpu convert`) for a PyTorch state dict, "
                         f"or another name for fcgpu's own format")
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it, or train it, before saving")
    check_output_path(path, "path", probe=False)
    text = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    names = _weight_names(model)
    for name, value in zip(names, model.get_weights()):
        _require_finite(value, f"parameter {name!r}", text)
        arrays[f"param/{name}"] = value
    compiled = model.get_compile_config()
    if compiled is not None:
        state = model.optimizer.state_dict()
        for name, slots in state["state"].items():
            for slot, value in slots.items():
                _require_finite(value, f"optimizer state {slot!r} of parameter {name!r}", text)
                arrays[f"opt/{name}/{slot}"] = value
        compiled["optimizer_steps"] = {str(n): int(s) for n, s in state["steps"].items()}
        compiled["optimizer_state"] = {n: sorted(s) for n, s in state["state"].items()}
        # Scalars beside the arrays, such as a LossScaleOptimizer's scale and its good-step count.
        compiled["optimizer_scalars"] = {k: v for k, v in state.items() if k not in _ARRAY_STATE}
    write_archive(path, {"model": model.get_config(), "compile": compiled}, arrays)


def _optimizer_section(compiled: Any, arrays: dict[str, np.ndarray], params: set[str]) -> dict[str, Any]:
    """The optimizer's ``state_dict`` from a file's compile section, checked against the parameters:
    state and step names are parameter names, each state array is listed and has its parameter's
    shape and dtype, each step count is an int in [0, 2**63). Raises ValueError saying what is wrong."""
    if compiled is not None and not isinstance(compiled, dict):
        raise ValueError(f"its compile settings are a {type(compiled).__name__}, not a dict")
    listed: Any = {} if compiled is None else compiled.get("optimizer_state", {})
    steps: Any = {} if compiled is None else compiled.get("optimizer_steps", {})
    if not isinstance(listed, dict) or not all(
        isinstance(s, list) and all(isinstance(x, str) for x in s) and len(set(s)) == len(s) for s in listed.values()
    ):
        raise ValueError("its optimizer_state is not a dict of parameter names to lists of distinct slot names")
    scalars: Any = {} if compiled is None else compiled.get("optimizer_scalars", {})
    if not isinstance(scalars, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and k not in _ARRAY_STATE
        for k, v in scalars.items()
    ):
        raise ValueError("its optimizer_scalars are not a dict of names to finite numbers")
    if not isinstance(steps, dict) or not all(type(v) is int and 0 <= v <= _MAX_STEP for v in steps.values()):
        raise ValueError(f"its optimizer_steps are not a dict of parameter names to step counts in [0, {_MAX_STEP}]")
    for what, names in (("optimizer state", listed), ("optimizer step count", steps)):
        unknown = sorted(set(names) - params)
        if unknown:
            raise ValueError(f"it has an {what} for {unknown}, which the model has no parameter of that name for")
    expected = {f"opt/{n}/{s}" for n, slots in listed.items() for s in slots}
    present = {k for k in arrays if k.startswith("opt/")}
    if expected != present:
        raise ValueError(
            f"its optimizer arrays do not match its optimizer_state (missing {sorted(expected - present)}, "
            f"not listed {sorted(present - expected)})"
        )
    state: dict[str, dict[str, np.ndarray]] = {}
    for name, slots in listed.items():
        param = arrays[f"param/{name}"]
        for slot in slots:
            value = arrays[f"opt/{name}/{slot}"]
            # float32 state for half parameters (0.1 files kept it in the parameter's dtype)
            if value.shape != param.shape or value.dtype not in (param.dtype, state_dtype(param.dtype)):
                raise ValueError(
                    f"optimizer state {slot!r} of {name!r} has shape {value.shape} and dtype {value.dtype}, "
                    f"but the parameter has shape {param.shape} and dtype {param.dtype} (state: "
                    f"{state_dtype(param.dtype)})"
                )
        state[name] = {slot: arrays[f"opt/{name}/{slot}"] for slot in slots}
    return {**scalars, "steps": dict(steps), "state": state}


def _build(config: dict[str, Any]) -> Any:
    """The model a file's config describes, built; the seeded stream left as it was (building draws
    initial values that the file's weights overwrite at once)."""
    rng = get_rng()
    saved = rng.bit_generator.state
    try:
        model = deserialize(config.get("model"), "model")
    finally:
        rng.bit_generator.state = saved
    if not getattr(model, "built", False):
        raise ValueError("the saved model has no input size")
    return model


def _weight_names(model: Any) -> list[str]:
    """Every variable's name in ``get_weights`` order: parameters and non-trainable state (moving statistics)."""
    return [name for layer in model.layers for name, _, _ in layer.variables()]


def load_model(path: str | os.PathLike, compile: bool = True, custom_objects: Any = None) -> Any:
    """Read a model saved by ``model.save``, onto the active backend (whichever backend saved it).

    With ``compile`` (the default) the loss, optimizer, metrics and optimizer state come back too.
    The whole file is checked either way; any inconsistency is a ModelFileError naming the file.
    A Keras 3 archive (``.keras`` written by Keras or fcgpu) is read by ``fcgpu.interop.keras_archive``,
    where ``custom_objects`` maps a Keras layer class name to a converter the caller trusts.
    """
    text = os.fspath(path)
    if not isinstance(compile, (bool, np.bool_)):
        raise TypeError(f"compile: expected True or False, got {compile!r}")
    if custom_objects is not None and not (isinstance(custom_objects, Mapping)
                                           and all(isinstance(k, str) and callable(v) for k, v in custom_objects.items())):
        raise TypeError(f"custom_objects: expected None or a dict of Keras class names to converter functions, "
                        f"got {custom_objects!r}")
    from ..interop.keras_archive import load_keras_model, reads_as_keras

    if reads_as_keras(text):
        return load_keras_model(text, compile=compile, custom_objects=custom_objects)
    config, arrays = read_archive(text)
    try:
        model = _build(config)
        names = _weight_names(model)
        expected = {f"param/{n}" for n in names}
        present = {k for k in arrays if not k.startswith("opt/")}
        if expected != present:
            raise ValueError(
                f"its weights do not match its architecture (missing {sorted(expected - present)}, "
                f"unexpected {sorted(present - expected)})"
            )
        compiled = config.get("compile")
        optimizer_state = _optimizer_section(compiled, arrays, {name for name, _ in model.trainable_variables})
        model.set_weights([arrays[f"param/{name}"] for name in names])
        if compile and compiled:
            model.compile_from_config(compiled)
            model.optimizer.load_state_dict(optimizer_state, model.backend)
    except Exception as e:  # whatever the architecture, weights or compile settings raised
        raise ModelFileError(f"path: {text!r} has an unusable architecture, weights or optimizer state: {e}") from None
    return model
