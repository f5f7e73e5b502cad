"""A chain of layers run forward and backward: the fast path of Sequential and of any functional
model whose graph is a chain (the same fusion, buffers and device operations per step).

Fusion is decided here, by the layers' declared ``fuses_with``: a Dense followed by an active
Dropout in a training forward runs as one kernel forward and one backward.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..backends import Backend
from ..backends.base import Array
from ..layers import Layer

__all__ = ["backward", "forward", "infer"]


def forward(
    backend: Backend,
    layers: Sequence[Layer],
    x: Any,
    *,
    input_owned: bool = False,
    output_private: bool = False,
    logits: bool = False,
    training: bool = False,
    row_offset: int = 0,
) -> Array:
    """y (B, N_last) from x (B, M): every layer in turn, keeping what backward needs.

    As ``Dense.forward``: x and the returned y are copied where backward would otherwise read
    the caller's array, unless ``input_owned`` / ``output_private`` say nobody else sees them.
    ``logits=True``: the last layer stops before its activation. ``training=True`` turns on what
    only acts in training, such as dropout; ``row_offset`` is the index of x's first row in the
    whole batch (a data-parallel rank's share: its dropout masks).
    """
    for layer in layers:
        # A layer's cached input is the previous layer's output buffer; dropping all of them
        # first lets every layer write into its own buffer again instead of allocating.
        layer.release()
    h, last, i = x, len(layers) - 1, 0
    while i <= last:
        layer = layers[i]
        # A Dense followed by an active Dropout in training: one pass for both (Dense.fuses_with).
        if training and i < last and not (logits and i + 1 == last) and layer.fuses_with(layers[i + 1]):
            h = layer.forward(h, input_owned=input_owned or i > 0, output_private=True, training=True,
                              row_offset=row_offset, dropout=layers[i + 1])
            i += 1  # the Dropout's output: copied only where the caller gets it
            if not (output_private or i < last):
                h = backend.copy(h)
            i += 1
            continue
        h = layer.forward(
            h,
            input_owned=input_owned or i > 0,
            output_private=output_private or i < last,
            logits=logits and i == last,
            training=training,
            row_offset=row_offset,
        )
        i += 1
    return h


def infer(layers: Sequence[Layer], x: Any, *, logits: bool = False) -> Array:
    """y (B, N_last) from x (B, M) without keeping anything for backward."""
    h, last = x, len(layers) - 1
    for i, layer in enumerate(layers):
        h = layer.infer(h, logits=logits and i == last)
    return h


def backward(layers: Sequence[Layer], dy: Any, *, input_grad: bool = True) -> Array | None:
    """dx (B, M) from dy = dL/dy (B, N_last); sets every layer's gradients. ``input_grad=False``
    skips the first layer's input gradient (training does not need it)."""
    g = dy
    for i in range(len(layers) - 1, -1, -1):
        g = layers[i].backward(g, input_grad=input_grad or i > 0)
    return g
