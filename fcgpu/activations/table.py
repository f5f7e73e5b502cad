"""The activations a Dense layer accepts: one table entry each, the only place that lists them.

An entry holds its name, the functor in ``kernels/activations.cuh`` the CUDA kernels instantiate,
the closed range of its outputs, what its backward reads (``backward_from``): y where act' is a
function of y, else z + b (silu, gelu), and whether it acts on each row (softmax). Its host formulas
are the NumPy backend's (``fcgpu.backends.numpy.activations``, by the same name); the kernel checks'
ulp budgets live with the tests. Numerics follow PyTorch's torch.nn.functional of the same name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

LEAKY_RELU_SLOPE = 0.2
SELU_ALPHA = 1.6732632423543772848170429916717  # Keras's and PyTorch's constants
SELU_SCALE = 1.0507009873554804934193349852946
SOFTPLUS_THRESHOLD = 20.0
GELU_KAPPA = 0.044715


@dataclass(frozen=True)
class Activation:
    """One entry of the table: what the kernels, the NumPy backend and the kernel checks use of it."""

    name: str
    kernel_functor: str  # struct in kernels/activations.cuh
    outputs: tuple[float, float] = field(repr=False)  # closed range of y = act(s), for backward inputs
    # What backward reads: "y" (the output) or "z" (the pre-activation z + b, kept by the layer).
    backward_from: str = field(default="y", repr=False)
    # A row operation on (B, N): row kernels on the CuPy backend, NumPy row reductions.
    rows: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.backward_from not in ("y", "z"):
            raise ValueError(f"backward_from: expected 'y' or 'z', got {self.backward_from!r}")


ACTIVATIONS: dict[str, Activation] = {}


def _add(entry: Activation) -> None:
    ACTIVATIONS[entry.name] = entry


_add(Activation("linear", "fc_act_linear", outputs=(-np.inf, np.inf)))
_add(Activation("relu", "fc_act_relu", outputs=(0.0, np.inf)))
_add(Activation("sigmoid", "fc_act_sigmoid", outputs=(0.0, 1.0)))
_add(Activation("tanh", "fc_act_tanh", outputs=(-1.0, 1.0)))
_add(Activation("leaky_relu", "fc_act_leaky_relu", outputs=(-np.inf, np.inf)))
_add(Activation("elu", "fc_act_elu", outputs=(-1.0, np.inf)))
_add(Activation("selu", "fc_act_selu", outputs=(-SELU_SCALE * SELU_ALPHA, np.inf)))
_add(Activation("softplus", "fc_act_softplus", outputs=(0.0, np.inf)))
_add(Activation("softsign", "fc_act_softsign", outputs=(-1.0, 1.0)))
_add(Activation("silu", "fc_act_silu", outputs=(-0.2785, np.inf), backward_from="z"))
_add(Activation("gelu", "fc_act_gelu", outputs=(-0.17, np.inf), backward_from="z"))
_add(Activation("gelu_approximate", "fc_act_gelu_approximate", outputs=(-0.1701, np.inf), backward_from="z"))
_add(Activation("softmax", "fc_act_softmax", outputs=(0.0, 1.0), rows=True))

ALIASES = {"swish": "silu"}  # Keras's other names of an entry


def get_activation(name: str | Activation | Callable[..., Any] | None) -> Activation:
    """``None`` (linear), an entry, a name (case-insensitive; 'swish' is silu), or fcgpu's or Keras's
    activation function (``keras.activations.relu``, recognised by its module and ``__name__``)."""
    if isinstance(name, Activation):
        return name
    if name is None:
        return ACTIVATIONS["linear"]
    module = str(getattr(name, "__module__", None) or "")
    if callable(name) and module.split(".")[0] in ("keras", "fcgpu") and isinstance(getattr(name, "__name__", None), str):
        name = name.__name__
    key = name.lower() if isinstance(name, str) else None
    key = ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of None, {sorted(ACTIVATIONS)} (or {sorted(ALIASES)}) or "
                         f"keras.activations/fcgpu.activations functions of those names, got {name!r}")
    return ACTIVATIONS[key]


def get(identifier: str | Activation | Callable[..., Any] | None) -> Activation:  # keras.activations.get
    return get_activation(identifier)
