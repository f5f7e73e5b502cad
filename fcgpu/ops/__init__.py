"""``fcgpu.ops``: Keras 3's ``keras.ops`` for what MLP programs write losses and metrics with, with
reverse-mode gradients on the active backend (NumPy, CuPy, or the stand-in's arrays).

- Arithmetic: ``add subtract multiply divide power negative`` and the operators + - * / ** and
  unary - on ``Tensor``; comparisons ``equal not_equal less less_equal greater greater_equal``
  (also ==, !=, <, <=, >, >=).
- Math and choices: ``abs square sqrt exp log log1p maximum minimum clip where``.
- Reductions (``axis``, ``keepdims``): ``mean sum max min argmax``.
- Activations: ``softmax log_softmax sigmoid relu``.
- Arrays: ``one_hot cast reshape expand_dims squeeze stack concatenate convert_to_tensor
  convert_to_numpy shape ones_like zeros_like``.

Outside tracing an op given backend arrays returns a backend array, as Keras's ops do. Inside
``value_and_grad`` (fcgpu's own, as JAX's) or a custom loss in training, the inputs are
``Tensor``s and every op records its gradient (PyTorch's autograd numerics; gradients of
broadcast operands summed back; integer and boolean results carry none). Another name raises an
AttributeError listing these; a NumPy function called on a ``Tensor`` raises a TypeError naming it.
"""
from __future__ import annotations

from typing import Any

from . import catalogue
from .arrays import (
    cast,
    concatenate,
    convert_to_numpy,
    convert_to_tensor,
    expand_dims,
    one_hot,
    ones_like,
    reshape,
    shape,
    squeeze,
    stack,
    zeros_like,
)
from .core import (
    Tensor,
    add,
    divide,
    equal,
    greater,
    greater_equal,
    less,
    less_equal,
    multiply,
    negative,
    not_equal,
    power,
    subtract,
    value_and_grad,
)
from .elementwise import abs, clip, exp, log, log1p, log_softmax, maximum, minimum, relu, sigmoid, softmax, sqrt, square, where
from .reductions import argmax, max, mean, min, sum

__all__ = ["Tensor", "value_and_grad", *catalogue.NAMES]


def __getattr__(name: str) -> Any:
    """An op outside the subset: an AttributeError naming it and listing what there is."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"fcgpu.ops has no '{name}': fcgpu.ops implements the part of keras.ops that losses and metrics of "
        f"dense networks use: {', '.join(catalogue.NAMES)}"
    )
