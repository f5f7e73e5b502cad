"""ONNX export: an fcgpu Sequential as an ONNX graph that ONNX Runtime, TensorRT and the like run.

``export_onnx(model, path, opset=None)`` writes one graph: input ``input`` of shape (batch, M) with
a dynamic batch dimension, output ``output`` (batch, N); a Dense layer is ``MatMul`` (+ ``Add`` of
its bias) and its activation; an Activation layer is its activation; Dropout is the identity at
inference and writes nothing. Activations map to ONNX operators (Relu, Sigmoid, Tanh, Softmax on
the last axis, LeakyRelu alpha 0.2, Elu, Selu, Softplus, Softsign, Gelu from opset 20, else its
Erf / Tanh formula; silu is x * Sigmoid(x)). In a float64 graph elu, selu, softplus, softsign and
gelu are written out in operations ONNX Runtime has in float64 (its erf is float32 only).

dtypes: a float32 or float64 model exports in its type. A half model (float16, mixed_float16,
mixed_bfloat16) has half inputs, outputs and weights (the half copies it computes with) and,
as fcgpu's kernels do, computes each layer in float32 and rounds once: its product, then its
output, so the graph gives what ``predict`` gives. The graph is built with the ``onnx`` package
(imported only here: ``pip install 'fcgpu[onnx]'``), checked by ``onnx.checker`` and written
atomically (``fcgpu.fileio``).
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..fileio import atomic_write, check_output_path

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export_onnx"]

DEFAULT_OPSET = 17  # ONNX Runtime 1.14+, TensorRT 8.6+
MIN_OPSET = 13  # Softmax over the last axis, Cast of bfloat16


def _onnx() -> Any:
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fcgpu[onnx]' (or onnx)") from None
    return onnx


class _Graph:
    """Nodes and initializers under construction, with fresh value names."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx, self.opset = onnx, opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def scalar(self, value: float, dtype: np.dtype, hint: str) -> str:
        return self.const(np.array(value, dtype=dtype), hint)


def _activation(g: _Graph, x: str, name: str, dtype: np.dtype, hint: str) -> str:
    """The ONNX nodes of fcgpu's activation ``name`` applied to ``x`` (of ``dtype``)."""
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "selu": "Selu", "softplus": "Softplus",
              "softsign": "Softsign"}
    if name == "linear":
        return x
    if dtype == np.float64 and name in _FLOAT64_FORMULAS:
        return _FLOAT64_FORMULAS[name](g, x, hint)
    if name in simple:
        return g.node(simple[name], [x], f"{hint}_{name}")
    if name == "softmax":
        return g.node("Softmax", [x], f"{hint}_softmax", axis=-1)
    if name == "leaky_relu":
        return g.node("LeakyRelu", [x], f"{hint}_leaky_relu", alpha=0.2)
    if name == "elu":
        return g.node("Elu", [x], f"{hint}_elu", alpha=1.0)
    if name == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x], f"{hint}_sigmoid")], f"{hint}_silu")
    if name in ("gelu", "gelu_approximate"):
        if g.opset >= 20:
            return g.node("Gelu", [x], f"{hint}_{name}", approximate="none" if name == "gelu" else "tanh")
        if name == "gelu":  # x/2 (1 + erf(x / sqrt 2))
            inner = g.node("Erf", [g.node("Mul", [x, g.scalar(math.sqrt(0.5), dtype, "rsqrt2")], f"{hint}_scaled")],
                           f"{hint}_erf")
        else:  # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            cube = g.node("Mul", [x, g.node("Mul", [x, x], f"{hint}_sq")], f"{hint}_cube")
            poly = g.node("Add", [x, g.node("Mul", [cube, g.scalar(0.044715, dtype, "c")], f"{hint}_c3")], f"{hint}_poly")
            inner = g.node("Tanh", [g.node("Mul", [poly, g.scalar(math.sqrt(2 / math.pi), dtype, "k")], f"{hint}_u")],
                           f"{hint}_tanh")
        half_x = g.node("Mul", [x, g.scalar(0.5, dtype, "half")], f"{hint}_halfx")
        return g.node("Mul", [half_x, g.node("Add", [inner, g.scalar(1.0, dtype, "one")], f"{hint}_1p")], f"{hint}_gelu")
    raise ValueError(f"model: activation {name!r} has no ONNX export")


# ONNX Runtime has no float64 kernels for Elu, Selu, Softplus, Softsign and Erf: in a float64
# graph they are written out in operations it has in float64 (erf alone is computed in float32).
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _expm1_branch(g: _Graph, x: str, alpha: float, hint: str) -> str:
    """Where(x > 0, x, alpha (exp(x) - 1)) in float64."""
    f64 = np.dtype(np.float64)
    negative = g.node("Mul", [g.node("Sub", [g.node("Exp", [x], f"{hint}_exp"), g.scalar(1.0, f64, "one")], f"{hint}_em1"),
                              g.scalar(alpha, f64, "alpha")], f"{hint}_neg")
    positive = g.node("Greater", [x, g.scalar(0.0, f64, "zero")], f"{hint}_pos")
    return g.node("Where", [positive, x, negative], f"{hint}_elu")


def _softplus64(g: _Graph, x: str, hint: str) -> str:
    """max(x, 0) + log(1 + exp(-|x|)): no overflow for any x."""
    f64 = np.dtype(np.float64)
    tail = g.node("Exp", [g.node("Neg", [g.node("Abs", [x], f"{hint}_abs")], f"{hint}_nabs")], f"{hint}_e")
    log = g.node("Log", [g.node("Add", [tail, g.scalar(1.0, f64, "one")], f"{hint}_1p")], f"{hint}_log")
    return g.node("Add", [g.node("Relu", [x], f"{hint}_relu"), log], f"{hint}_softplus")


def _gelu64(g: _Graph, x: str, hint: str) -> str:
    """x/2 (1 + erf(x / sqrt 2)), erf in float32 (the only precision ONNX Runtime has it in)."""
    f64 = np.dtype(np.float64)
    scaled = g.node("Mul", [x, g.scalar(math.sqrt(0.5), f64, "rsqrt2")], f"{hint}_scaled")
    erf32 = g.node("Erf", [g.node("Cast", [scaled], f"{hint}_to32", to=g.onnx.TensorProto.FLOAT)], f"{hint}_erf")
    erf = g.node("Cast", [erf32], f"{hint}_to64", to=g.onnx.TensorProto.DOUBLE)
    half_x = g.node("Mul", [x, g.scalar(0.5, f64, "half")], f"{hint}_halfx")
    return g.node("Mul", [half_x, g.node("Add", [erf, g.scalar(1.0, f64, "one")], f"{hint}_1p")], f"{hint}_gelu")


_FLOAT64_FORMULAS = {
    "elu": lambda g, x, hint: _expm1_branch(g, x, 1.0, hint),
    "selu": lambda g, x, hint: g.node("Mul", [_expm1_branch(g, x, _SELU_ALPHA, hint),
                                              g.scalar(_SELU_SCALE, np.dtype(np.float64), "scale")], f"{hint}_selu"),
    "softplus": _softplus64,
    "softsign": lambda g, x, hint: g.node(
        "Div", [x, g.node("Add", [g.node("Abs", [x], f"{hint}_abs"), g.scalar(1.0, np.dtype(np.float64), "one")],
                          f"{hint}_den")], f"{hint}_softsign"),
    "gelu": _gelu64,
}


def _types(model: Any) -> tuple[np.dtype, np.dtype, int, int]:
    """(the dtype of inputs, outputs and weights; the dtype computed in; their ONNX element types)."""
    onnx = _onnx()
    dtypes = {layer.compute_dtype for layer in model.layers}
    if len(dtypes) != 1:
        raise ValueError(f"model: its layers compute in several dtypes ({sorted(map(str, dtypes))}); ONNX export needs one")
    io_dtype = dtypes.pop()
    if io_dtype.name == "bfloat16":
        io_type = onnx.TensorProto.BFLOAT16
    else:
        io_type = onnx.helper.np_dtype_to_tensor_dtype(io_dtype)
    compute = np.dtype("float32") if io_dtype.itemsize == 2 else io_dtype
    return io_dtype, compute, io_type, onnx.helper.np_dtype_to_tensor_dtype(compute)


def build_onnx_model(model: Any, opset: int | None = None) -> Any:
    """The ``onnx.ModelProto`` of a built fcgpu Sequential, checked by ``onnx.checker``."""
    onnx = _onnx()
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built: build it before exporting")
    latest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {latest}] (this onnx's newest), got {opset!r}")
    io_dtype, compute, io_type, compute_type = _types(model)
    half = io_dtype.itemsize == 2
    g = _Graph(onnx, opset)
    h = "input"
    if half:
        h = g.node("Cast", [h], "input_float", to=compute_type)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            weights = layer.get_weights()
            kernel = g.const(_as(weights[0], io_dtype), f"{layer.name}_kernel")
            if half:
                kernel = g.node("Cast", [kernel], f"{layer.name}_kernel_float", to=compute_type)
            h = g.node("MatMul", [h, kernel], f"{layer.name}_matmul")
            if half:  # the product is rounded to half before the bias and activation, as in fcgpu
                h = g.node("Cast", [g.node("Cast", [h], f"{layer.name}_round", to=io_type)], f"{layer.name}_z",
                           to=compute_type)
            if layer.use_bias:
                bias = g.const(_as(weights[1], io_dtype), f"{layer.name}_bias")
                if half:
                    bias = g.node("Cast", [bias], f"{layer.name}_bias_float", to=compute_type)
                h = g.node("Add", [h, bias], f"{layer.name}_add")
            h = _activation(g, h, layer.activation.name, compute, layer.name)
        elif kind == "Activation":
            h = _activation(g, h, layer.activation.name, compute, layer.name)
        elif kind == "Dropout":
            continue  # the identity at inference
        else:
            raise ValueError(f"model: layer '{layer.name}' ({kind}) has no ONNX export")
        if half and kind != "Dropout":  # each layer's output is rounded to half once
            h = g.node("Cast", [g.node("Cast", [h], f"{layer.name}_out", to=io_type)], f"{layer.name}_float",
                       to=compute_type)
    if half:
        h = g.node("Cast", [h], "output_half", to=io_type)
    g.nodes.append(onnx.helper.make_node("Identity", [h], ["output"], name="output"))
    graph = onnx.helper.make_graph(
        g.nodes,
        model.name,
        [onnx.helper.make_tensor_value_info("input", io_type, ["batch", model.input_features])],
        [onnx.helper.make_tensor_value_info("output", io_type, ["batch", model.output_features])],
        initializer=g.initializers,
    )
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
    """Write ``model`` (a built Sequential of Dense, Dropout and Activation layers) as an ONNX file at
    ``path``, atomically; ``opset`` defaults to ``DEFAULT_OPSET``. Inputs: ``input`` (batch, M)."""
    check_output_path(path, "path", probe=False)
    data = build_onnx_model(model, opset).SerializeToString()
    with atomic_write(path) as f:
        f.write(data)
