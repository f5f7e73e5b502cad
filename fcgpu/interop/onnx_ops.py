"""ONNX operations for fcgpu's layers: a graph under construction (``Graph``) and the nodes of each
activation, normalization, activation layer and merge, in the dtype the graph computes in.

Each function mirrors what fcgpu's NumPy backend computes (``backends.layer_ops``), so that ONNX
Runtime gives what ``predict`` gives: ReLU's threshold, clip and slope, ELU as x > 0 ? x :
alpha (exp(x) - 1), PReLU as x > 0 ? x : alpha x, BatchNormalization in inference form from its
moving statistics ((x - mean) / sqrt(var + eps) gamma + beta), LayerNormalization from each row's
mean and variance (ReduceMean: an attribute before opset 18, an input from it), Normalization's
(x - mean) / max(sqrt(var), 1e-7) (or its inverse), and the merges (Concat on the features, Add,
Sub, Mul, Max, Min; Average as their sum times 1/n). ONNX Runtime lacks float64 kernels for some
operators (Elu, Selu, Softplus, Softsign, Erf): in float64 those are written out in operations it
has. Every weight and constant is an initializer of the graph.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["Graph", "activation", "layer_nodes", "merge_nodes"]


class Graph:
    """Nodes and initializers under construction, with fresh value names."""

    def __init__(self, onnx: Any, opset: int, io_dtype: np.dtype | None = None, compute: np.dtype | None = None,
                 io_type: int = 0, compute_type: int = 0, reserved: set[str] | None = None) -> None:
        self.onnx, self.opset = onnx, opset
        self.reserved = set(reserved or ())  # the graph's input and output names: no value takes them
        # inputs, outputs and weights are io_dtype; the graph computes in ``compute`` (float32 for a half model)
        self.io_dtype, self.compute, self.io_type, self.compute_type = io_dtype, compute, io_type, compute_type
        self.half = io_dtype is not None and io_dtype.itemsize == 2
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        while f"{hint}_{self.count}" in self.reserved:
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


def activation(g: Graph, x: str, name: str, dtype: np.dtype, hint: str) -> str:
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


def _expm1_branch(g: Graph, x: str, alpha: float, hint: str) -> str:
    """Where(x > 0, x, alpha (exp(x) - 1)) in float64."""
    f64 = np.dtype(np.float64)
    negative = g.node("Mul", [g.node("Sub", [g.node("Exp", [x], f"{hint}_exp"), g.scalar(1.0, f64, "one")], f"{hint}_em1"),
                              g.scalar(alpha, f64, "alpha")], f"{hint}_neg")
    positive = g.node("Greater", [x, g.scalar(0.0, f64, "zero")], f"{hint}_pos")
    return g.node("Where", [positive, x, negative], f"{hint}_elu")


def _softplus64(g: Graph, x: str, hint: str) -> str:
    """max(x, 0) + log(1 + exp(-|x|)): no overflow for any x."""
    f64 = np.dtype(np.float64)
    tail = g.node("Exp", [g.node("Neg", [g.node("Abs", [x], f"{hint}_abs")], f"{hint}_nabs")], f"{hint}_e")
    log = g.node("Log", [g.node("Add", [tail, g.scalar(1.0, f64, "one")], f"{hint}_1p")], f"{hint}_log")
    return g.node("Add", [g.node("Relu", [x], f"{hint}_relu"), log], f"{hint}_softplus")


def _gelu64(g: Graph, x: str, hint: str) -> str:
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




# -- layers ----------------------------------------------------------------------------------------
def _weight(g: Graph, value: Any, hint: str) -> str:
    """A weight as an initializer in the model's dtype, cast to the dtype computed in where they differ."""
    name = g.const(np.asarray(value).astype(g.io_dtype), hint)
    return g.node("Cast", [name], f"{hint}_float", to=g.compute_type) if g.half else name


def _constant(g: Graph, value: Any, hint: str) -> str:
    """A constant of the dtype computed in (statistics computed on the host as the layer computes them)."""
    return g.const(np.asarray(value).astype(g.compute), hint)


def _dense(g: Graph, layer: Any, x: str) -> str:
    weights, hint = layer.get_weights(), layer.name
    h = g.node("MatMul", [x, _weight(g, weights[0], f"{hint}_kernel")], f"{hint}_matmul")
    if g.half:  # the product is rounded to half before the bias and activation, as in fcgpu
        h = g.node("Cast", [g.node("Cast", [h], f"{hint}_round", to=g.io_type)], f"{hint}_z", to=g.compute_type)
    if layer.use_bias:
        h = g.node("Add", [h, _weight(g, weights[1], f"{hint}_bias")], f"{hint}_add")
    return activation(g, h, layer.activation.name, g.compute, hint)


def _relu(g: Graph, layer: Any, x: str) -> str:
    """Keras's relu: where(x > t, x, 0) clipped to max_value, minus slope (t - x) below the threshold t."""
    hint, dtype = layer.name, g.compute
    slope, threshold, top = layer.negative_slope, layer.threshold, layer.max_value
    if slope == 0.0 and threshold == 0.0 and top is None:
        return g.node("Relu", [x], f"{hint}_relu")
    zero = g.scalar(0.0, dtype, "zero")
    t = g.node("Where", [g.node("Greater", [x, g.scalar(threshold, dtype, "threshold")], f"{hint}_above"), x, zero],
               f"{hint}_t")
    if top is not None:
        t = g.node("Min", [g.node("Max", [t, zero], f"{hint}_low"), g.scalar(top, dtype, "max_value")], f"{hint}_clip")
    if slope == 0.0:
        return t
    below = g.node("Sub", [g.scalar(threshold, dtype, "threshold"), x], f"{hint}_below")
    leak = g.node("Sub", [t, g.node("Mul", [below, g.scalar(slope, dtype, "slope")], f"{hint}_sb")], f"{hint}_leak")
    return g.node("Where", [g.node("Greater", [below, zero], f"{hint}_is_below"), leak, t], f"{hint}_relu")


def _elu(g: Graph, layer: Any, x: str) -> str:
    if g.compute == np.float64:
        return _expm1_branch(g, x, layer.alpha, layer.name)
    return g.node("Elu", [x], f"{layer.name}_elu", alpha=float(layer.alpha))


def _prelu(g: Graph, layer: Any, x: str) -> str:
    alpha = _weight(g, layer.get_weights()[0], f"{layer.name}_alpha")
    positive = g.node("Greater", [x, g.scalar(0.0, g.compute, "zero")], f"{layer.name}_pos")
    return g.node("Where", [positive, x, g.node("Mul", [x, alpha], f"{layer.name}_ax")], f"{layer.name}_prelu")


def _affine(g: Graph, layer: Any, y: str, values: dict[str, np.ndarray]) -> str:
    if layer.scale:
        y = g.node("Mul", [y, _weight(g, values["gamma"], f"{layer.name}_gamma")], f"{layer.name}_scaled")
    if layer.center:
        y = g.node("Add", [y, _weight(g, values["beta"], f"{layer.name}_beta")], f"{layer.name}_centered")
    return y


def _values(layer: Any) -> dict[str, np.ndarray]:
    """A layer's variables by short name ('gamma', 'moving_mean', ...) as host arrays."""
    return {name.rpartition("/")[2]: w for (name, _, _), w in zip(layer.variables(), layer.get_weights())}


def _batch_normalization(g: Graph, layer: Any, x: str) -> str:
    """Inference form: (x - moving_mean) * (1 / sqrt(moving_variance + epsilon)) * gamma + beta."""
    values = _values(layer)
    rstd = 1 / np.sqrt(values["moving_variance"] + values["moving_variance"].dtype.type(layer.epsilon))
    y = g.node("Sub", [x, _constant(g, values["moving_mean"], f"{layer.name}_mean")], f"{layer.name}_centred")
    y = g.node("Mul", [y, _constant(g, rstd, f"{layer.name}_rstd")], f"{layer.name}_norm")
    return _affine(g, layer, y, values)


def _row_mean(g: Graph, x: str, hint: str) -> str:
    if g.opset >= 18:
        return g.node("ReduceMean", [x, g.const(np.array([-1], np.int64), "axes")], hint, keepdims=1)
    return g.node("ReduceMean", [x], hint, axes=[-1], keepdims=1)


def _layer_normalization(g: Graph, layer: Any, x: str) -> str:
    """(x - mean_r) / sqrt(var_r + epsilon) * gamma + beta, each row's mean and biased variance."""
    hint = layer.name
    centred = g.node("Sub", [x, _row_mean(g, x, f"{hint}_mean")], f"{hint}_centred")
    variance = _row_mean(g, g.node("Mul", [centred, centred], f"{hint}_sq"), f"{hint}_var")
    std = g.node("Sqrt", [g.node("Add", [variance, g.scalar(layer.epsilon, g.compute, "eps")], f"{hint}_ve")],
                 f"{hint}_std")
    return _affine(g, layer, g.node("Div", [centred, std], f"{hint}_norm"), _values(layer))


def _normalization(g: Graph, layer: Any, x: str) -> str:
    """(x - mean) / max(sqrt(variance), 1e-7), or mean + x * that with ``invert`` (Keras's Normalization)."""
    n, dtype = layer.in_features, np.dtype(layer.dtype)
    if layer.input_mean is not None:
        mean = np.broadcast_to(layer.input_mean, (n,)).astype(dtype)
        variance = np.broadcast_to(layer.input_variance, (n,)).astype(dtype)
    else:
        values = _values(layer)
        mean, variance = values["mean"], values["variance"]
    denom = np.maximum(np.sqrt(variance), dtype.type(1e-7))
    m, d = _constant(g, mean, f"{layer.name}_mean"), _constant(g, denom, f"{layer.name}_denom")
    if layer.invert:
        return g.node("Add", [m, g.node("Mul", [x, d], f"{layer.name}_scaled")], f"{layer.name}_inverted")
    return g.node("Div", [g.node("Sub", [x, m], f"{layer.name}_centred"), d], f"{layer.name}_normalized")


_LAYERS = {
    "Dense": _dense,
    "Activation": lambda g, layer, x: activation(g, x, layer.activation.name, g.compute, layer.name),
    "Softmax": lambda g, layer, x: activation(g, x, "softmax", g.compute, layer.name),
    "ReLU": _relu,
    "LeakyReLU": _relu,
    "ELU": _elu,
    "PReLU": _prelu,
    "BatchNormalization": _batch_normalization,
    "LayerNormalization": _layer_normalization,
    "Normalization": _normalization,
}
# the identity at inference on fcgpu's flat features (B, N): no node
IDENTITY = ("Dropout", "GaussianNoise", "Flatten", "Reshape")


def layer_nodes(g: Graph, layer: Any, x: str) -> str:
    """The value of one-input layer ``layer`` applied to ``x`` (flat features), rounded to half once
    in a half graph, as fcgpu rounds each layer's output."""
    kind = type(layer).__name__
    if kind in IDENTITY:
        return x
    if kind not in _LAYERS:
        raise ValueError(f"model: layer '{layer.name}' ({kind}) has no ONNX export")
    return _round(g, _LAYERS[kind](g, layer, x), layer.name)


def _round(g: Graph, x: str, hint: str) -> str:
    if not g.half:
        return x
    return g.node("Cast", [g.node("Cast", [x], f"{hint}_out", to=g.io_type)], f"{hint}_float", to=g.compute_type)


_MERGES = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Maximum": "Max", "Minimum": "Min", "Average": "Add"}


def merge_nodes(g: Graph, layer: Any, xs: list[str]) -> str:
    """The value of merge ``layer`` on ``xs``, pairwise in order as fcgpu combines them."""
    kind, hint = type(layer).__name__, layer.name
    if kind == "Concatenate":
        return _round(g, g.node("Concat", xs, f"{hint}_concat", axis=-1), hint)
    if kind not in _MERGES:
        raise ValueError(f"model: layer '{hint}' ({kind}) has no ONNX export")
    y = xs[0]
    for x in xs[1:]:
        y = g.node(_MERGES[kind], [y, x], f"{hint}_{_MERGES[kind].lower()}")
    if kind == "Average":
        y = g.node("Mul", [y, g.scalar(1.0 / len(xs), g.compute, "inverse_count")], f"{hint}_average")
    return _round(g, y, hint)
