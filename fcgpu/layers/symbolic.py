"""Symbolic tensors: what calling a layer on ``fcgpu.Input(...)`` returns, recording the graph that a
functional model (``fcgpu.Model(inputs, outputs)``) runs.

A ``KerasTensor`` holds no data: its shape (None, *sample) and dtype, the layer whose call made it
and that call's input tensors. Calling a layer on one builds the layer at once for the input's
width (on the active backend, drawing its initial weights then, as Keras does). ``map_graph`` walks
the tensors back from a model's outputs and orders the layers as Keras 3 orders them (by depth from
the outputs, deepest first; ties in the order the walk met them).

fcgpu's layers compute on flat features (batch, M): a sample shape of higher rank (an image
(28, 28)) travels to a ``Flatten`` through layers that act elementwise, and is refused before any
other layer with a message that says so.
"""
from __future__ import annotations

import math
from itertools import count
from typing import Any, Sequence

import numpy as np

__all__ = ["KerasTensor", "call_layer", "is_symbolic", "map_graph"]

_CALLS = count()  # the order layers were called in, for Keras's tie-break among equal depths


class KerasTensor:
    """A placeholder for the batches that will flow along one edge of a graph of layers.

    Attributes:
        shape: (batch_size or None, *sample shape), as Keras's ``KerasTensor.shape``.
        dtype: the dtype the layer that made it computes in (None: not fixed yet).
        layer: the layer whose call made it (an ``Input`` for an input tensor: itself).
        inputs: the tensors that call took (several for a merge layer; none for an ``Input``).
    """

    def __init__(self, shape: Sequence[int | None], dtype: Any, layer: Any, inputs: Sequence["KerasTensor"]) -> None:
        self.shape = tuple(shape)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.order = next(_CALLS)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    @property
    def features(self) -> int:
        """The flat width of one sample: the product of the sample shape."""
        return int(math.prod(self.shape[1:]))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, from layer '{self.layer.name}'>"

    # Arithmetic on symbolic tensors needs layers (Add, Multiply, ...): say so instead of a TypeError.
    def _no_arithmetic(self, *args: Any) -> Any:
        raise TypeError(
            "a symbolic tensor of the functional API supports no arithmetic in fcgpu; use the merge layers "
            "(fcgpu.layers.Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate)"
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __matmul__ = _no_arithmetic
    __neg__ = _no_arithmetic
    __array__ = _no_arithmetic


def is_symbolic(x: Any) -> bool:
    """Whether ``x`` is a symbolic tensor or a list/tuple of them (a layer call builds a graph)."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and any(isinstance(t, KerasTensor) for t in x)


def call_layer(layer: Any, x: Any) -> KerasTensor:
    """``layer(x)`` for symbolic ``x``: the layer built for x's width and the tensor of its output."""
    several = layer.input_count != 1
    tensors = list(x) if isinstance(x, (list, tuple)) else [x]
    if not all(isinstance(t, KerasTensor) for t in tensors):
        raise TypeError(
            f"layer '{layer.name}': expected symbolic tensors (from fcgpu.Input or another layer's call), got "
            f"{[type(t).__name__ for t in tensors]}"
        )
    if several and (not isinstance(x, (list, tuple)) or len(tensors) < 2):
        raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}): expected a list of at least 2 tensors, got {x!r}")
    if not several and len(tensors) != 1:
        raise ValueError(f"layer '{layer.name}' ({type(layer).__name__}): expected one tensor, got a list of {len(tensors)}")
    shapes = [t.shape for t in tensors]
    if not layer.any_rank:
        for shape in shapes:
            if len(shape) != 2:
                raise ValueError(
                    f"layer '{layer.name}' ({type(layer).__name__}) takes inputs of shape (batch, features), got "
                    f"{shape}: add a Flatten() before it"
                )
    dtype = next((t.dtype for t in tensors if t.dtype is not None), None)
    if dtype is not None:
        layer.take_input_dtype(dtype)
    widths = [int(math.prod(s[1:])) for s in shapes]
    if layer.built and not several and layer.in_features != widths[0]:
        raise ValueError(
            f"layer '{layer.name}' is built for {layer.in_features} features, but its input has shape {shapes[0]}"
        )
    out_shape = layer.symbolic_output_shape(shapes)  # checks the shapes and builds the layer
    out = KerasTensor(out_shape, layer.compute_dtype, layer, tensors)
    layer.record_call(tensors if several else tensors[0], out)
    return out


def map_graph(inputs: Sequence[KerasTensor], outputs: Sequence[KerasTensor]) -> list[KerasTensor]:
    """The layer calls (their output tensors) between ``inputs`` and ``outputs``, in Keras 3's order:
    by depth from the outputs, deepest first, ties in the order of the walk. Inputs come first.
    Raises ValueError where an output needs an input that is not among ``inputs``."""
    given = {id(t) for t in inputs}
    order: list[KerasTensor] = []
    seen: set[int] = set()
    walk_index: dict[int, int] = {}

    def visit(t: KerasTensor, path: tuple[int, ...]) -> None:
        if id(t) in seen:
            return
        if id(t) in path:
            raise ValueError("outputs: the graph has a cycle")
        if not t.inputs and id(t) not in given:
            raise ValueError(
                f"Graph disconnected: the outputs need the input '{t.layer.name}' (shape {t.shape}), which is not among "
                f"the model's inputs {[i.layer.name for i in inputs]}"
            )
        walk_index.setdefault(id(t.layer), len(walk_index))
        for parent in t.inputs:
            visit(parent, path + (id(t),))
        seen.add(id(t))
        order.append(t)

    for t in inputs:  # every given input is part of the model, used or not
        walk_index.setdefault(id(t.layer), len(walk_index))
    for t in outputs:
        visit(t, ())
    depth: dict[int, int] = {}
    for t in reversed(order):  # outputs first: a tensor is one deeper than its deepest consumer
        d = depth.setdefault(id(t), 0)
        for parent in t.inputs:
            depth[id(parent)] = max(depth.get(id(parent), 0), d + 1)
    top = max(depth.values(), default=0)
    for t in inputs:
        depth[id(t)] = top + 1 if id(t) not in depth else depth[id(t)]
        if t not in order:
            order.insert(0, t)
    return sorted(order, key=lambda t: (-depth[id(t)], walk_index[id(t.layer)]))
