"""ONNX export: an fcgpu model (Sequential or functional) as an ONNX graph that ONNX Runtime,
TensorRT and the like run.

``export_onnx(model, path, opset=None)`` writes one graph with a dynamic batch dimension: input
``input`` (batch, *sample shape) for a model of one input, else one input per model input, named as
its ``Input``; output ``output`` (batch, N), flat as ``predict`` gives it, for a model of one
output, else one output per model output in order, named as it (its layer's name, Keras's output
name). A model of several outputs used as a layer gives its outputs side by side (``Concat``), as
fcgpu computes it. The graph computes on
flat features as fcgpu does (an image input is flattened first; Flatten and Reshape write no node). A Dense layer is ``MatMul`` (+ ``Add`` of its bias) and its
activation; the activation, normalization and merge layers are the nodes of ``onnx_ops``
(BatchNormalization in inference form, from its moving statistics); Dropout and GaussianNoise are
the identity at inference and write nothing; a nested model is its own nodes, in place.
Activations map to ONNX operators (Relu, Sigmoid, Tanh, Softmax on the last axis, LeakyRelu alpha
0.2, Elu, Selu, Softplus, Softsign, Gelu from opset 20, else its Erf / Tanh formula; silu is
x * Sigmoid(x)). In a float64 graph elu, selu, softplus, softsign and gelu are written out in
operations ONNX Runtime has in float64 (its erf is float32 only).

dtypes: a float32 or float64 model exports in its type. A half model (float16, mixed_float16,
mixed_bfloat16) has half inputs, outputs and weights (the half copies it computes with) and,
as fcgpu's kernels do, computes each layer in float32 and rounds once: its product, then its
output, so the graph gives what ``predict`` gives. The graph is built with the ``onnx`` package
(imported only here: ``pip install 'fcgpu[onnx]'``), checked by ``onnx.checker`` and written
atomically (``fcgpu.saving.fileio``).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..saving.fileio import atomic_write, check_output_path
from .onnx_ops import Graph, layer_nodes, merge_nodes

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export_onnx"]

DEFAULT_OPSET = 17  # ONNX Runtime 1.14+, TensorRT 8.6+
MIN_OPSET = 13  # Softmax over the last axis, Cast of bfloat16


def _onnx() -> Any:
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fcgpu[onnx]' (or onnx)") from None
    return onnx


def _leaves(model: Any) -> list[Any]:
    """The computing layers of a model, those of nested models included."""
    out = []
    for layer in model.compute_layers:
        out.extend(_leaves(layer) if hasattr(layer, "compute_layers") else [layer])
    return out


def _types(model: Any) -> tuple[np.dtype, np.dtype, int, int]:
    """(the dtype of inputs, outputs and weights; the dtype computed in; their ONNX element types)."""
    onnx = _onnx()
    dtypes = {layer.compute_dtype for layer in _leaves(model)}
    if len(dtypes) != 1:
        raise ValueError(f"model: its layers compute in several dtypes ({sorted(map(str, dtypes))}); ONNX export needs one")
    io_dtype = dtypes.pop()
    if io_dtype.name == "bfloat16":
        io_type = onnx.TensorProto.BFLOAT16
    else:
        io_type = onnx.helper.np_dtype_to_tensor_dtype(io_dtype)
    compute = np.dtype("float32") if io_dtype.itemsize == 2 else io_dtype
    return io_dtype, compute, io_type, onnx.helper.np_dtype_to_tensor_dtype(compute)


def _model_nodes(g: Graph, model: Any, xs: list[str]) -> list[str]:
    """The value of each output of ``model`` (Sequential or functional, nested ones included) on
    ``xs``, one value a model input, each flat features (B, M)."""
    config = model.get_config()
    if config["class_name"] != "Functional":
        h = xs[0]
        for layer in model.compute_layers:
            h = _layer_value(g, layer, [h])
        return [h]
    values = dict(zip(config["input_layers"], xs))
    by_name = {layer.name: layer for layer in model.compute_layers}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in by_name:
            values[name] = _layer_value(g, by_name[name], [values[n] for n in entry["inbound"]])
    return [values[name] for name in config["output_layers"]]


def _layer_value(g: Graph, layer: Any, xs: list[str]) -> str:
    if hasattr(layer, "compute_layers"):  # a model used as a layer: its outputs side by side, as fcgpu calls it
        outs = _model_nodes(g, layer, xs)
        return outs[0] if len(outs) == 1 else g.node("Concat", outs, "outputs", axis=1)
    if layer.input_count != 1:
        return merge_nodes(g, layer, xs)
    return layer_nodes(g, layer, xs[0])


def build_onnx_model(model: Any, opset: int | None = None) -> Any:
    """The ``onnx.ModelProto`` of a built fcgpu model (Sequential or functional), checked by ``onnx.checker``."""
    from ..models.base import Model

    if not isinstance(model, Model):
        raise TypeError(f"model: expected an fcgpu model (Sequential or functional), got {type(model).__name__}")
    onnx = _onnx()
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it before exporting")
    latest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {latest}] (this onnx's newest), got {opset!r}")
    io_dtype, compute, io_type, compute_type = _types(model)
    specs = model.input_specs()
    names = ["input"] if len(specs) == 1 else [name for name, _ in specs]
    outputs = list(getattr(model, "output_names", None) or []) if len(getattr(model, "outputs", [None])) > 1 else []
    widths = [t.features for t in model.outputs] if outputs else [model.output_features]
    outputs = outputs or ["output"]
    clash = sorted(set(outputs) & set(names))
    if clash:
        raise ValueError(f"model: its output {clash[0]!r} has the name of a graph input; rename that layer")
    g = Graph(onnx, opset, io_dtype, compute, io_type, compute_type, reserved=set(outputs) | set(names))
    graph_inputs, xs = [], []
    for name, (_, shape) in zip(names, specs):
        graph_inputs.append(onnx.helper.make_tensor_value_info(name, io_type, ["batch", *shape]))
        h = g.node("Flatten", [name], f"{name}_flat", axis=1) if len(shape) > 1 else name
        xs.append(g.node("Cast", [h], f"{name}_float", to=compute_type) if g.half else h)
    graph_outputs = []
    for name, width, h in zip(outputs, widths, _model_nodes(g, model, xs)):  # flat, as predict gives each
        if g.half:
            h = g.node("Cast", [h], "output_half", to=io_type)
        if h in names:  # a graph of identities: the output is still its own value
            h = g.node("Identity", [h], "passed")
        g.nodes.append(onnx.helper.make_node("Identity", [h], [name], name=name))
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, io_type, ["batch", width]))
    graph = onnx.helper.make_graph(g.nodes, model.name, graph_inputs, graph_outputs, initializer=g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="fcgpu",
                                   producer_version=_version())
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _as(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.asarray(value).astype(dtype)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fcgpu")
    except metadata.PackageNotFoundError:
        return "unknown"


def export_onnx(model: Any, path: str | os.PathLike, opset: int | None = None) -> None:
    """Write ``model`` (a built Sequential or functional model) as an ONNX file at ``path``,
    atomically; ``opset`` defaults to ``DEFAULT_OPSET``. Inputs: ``input`` (batch, *sample) for one
    model input, else one per ``Input``, by its name; output ``output``, or one per model output
    by its name for several."""
    check_output_path(path, "path", probe=False)
    data = build_onnx_model(model, opset).SerializeToString()
    with atomic_write(path) as f:
        f.write(data)
