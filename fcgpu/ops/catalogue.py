"""The names ``fcgpu.ops`` implements (Keras 3's ``keras.ops`` subset for losses and metrics), kept
apart so that the error for an unknown name and the package's exports read one list."""
from __future__ import annotations

NAMES: tuple[str, ...] = (
    # arithmetic (also the tensor's operators + - * / ** and unary -)
    "add", "subtract", "multiply", "divide", "power", "negative",
    # elementwise math and choices
    "abs", "square", "sqrt", "exp", "log", "log1p", "maximum", "minimum", "clip", "where",
    # comparisons (boolean results, no gradient)
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    # reductions
    "mean", "sum", "max", "min", "argmax",
    # activations
    "softmax", "log_softmax", "sigmoid", "relu",
    # arrays
    "one_hot", "cast", "reshape", "expand_dims", "squeeze", "stack", "concatenate", "convert_to_tensor",
    "convert_to_numpy", "shape", "ones_like", "zeros_like",
)
