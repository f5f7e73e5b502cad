"""The activations a Dense layer accepts: the one place that lists them.

Each names its functor in ``kernels/activations.cuh``; the NumPy backend implements the
same name independently, as the reference the kernels are tested against.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Activation:
    name: str
    kernel_functor: str  # struct in kernels/activations.cuh


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("linear", "fc_linear"),
        Activation("relu", "fc_relu"),
        Activation("sigmoid", "fc_sigmoid_act"),
        Activation("tanh", "fc_tanh_act"),
    )
}


def get_activation(name: str | Activation | None) -> Activation:
    """Resolve ``None``/``'linear'``/``'relu'``/``'sigmoid'``/``'tanh'`` (case-insensitive)."""
    if isinstance(name, Activation):
        return name
    if name is None:
        return ACTIVATIONS["linear"]
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected one of None, {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return ACTIVATIONS[name.lower()]
