"""Flat parameter and gradient buffers: one contiguous buffer per dtype for a model.

Each layer's parameters and gradients are views into these buffers, so an optimizer updates a
whole model in one fused kernel pass per dtype (and, data-parallel, one all-reduce moves all the
gradients). Layers keep working on their own: a layer rebuilt or moved to another backend gets
arrays of its own again, ``FlatParameters.current`` then says so, and the model lays out new
buffers before its next step.

Shapes: for a dtype with parameters p_1..p_k, ``params[dtype]`` and ``grads[dtype]`` are 1-D, each
parameter's slice starting at a multiple of ``ALIGN_ELEMENTS`` (256 bytes in the 2-byte half copies,
512 in float32: cuBLAS and cuBLASLt pick faster kernels for 256-byte aligned operands), the gaps
zero; ``slices`` maps each parameter name to its (dtype, start, stop).

Mixed precision: where a layer keeps a half copy of its float32 master weights (``half_copies``),
``halves[float32]`` is a buffer of the compute dtype with the same slices as ``params[float32]``;
the layers compute from views of it, and the optimizer's update writes it in the same pass as the
master weights (one cast per step, none per forward).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import Backend
from .base import Array

__all__ = ["ALIGN_ELEMENTS", "FlatParameters"]

# Slice starts are multiples of this many elements: 256 bytes for the smallest (2-byte) type, so the
# half copies, which share the float32 master's slices, are aligned as well.
ALIGN_ELEMENTS = 128


def _aligned(n: int) -> int:
    return -(-n // ALIGN_ELEMENTS) * ALIGN_ELEMENTS


@dataclass
class FlatParameters:
    backend: Backend
    params: dict[np.dtype, Array] = field(default_factory=dict)
    grads: dict[np.dtype, Array] = field(default_factory=dict)
    slices: dict[str, tuple[np.dtype, int, int]] = field(default_factory=dict)
    halves: dict[np.dtype, Array] = field(default_factory=dict)
    _views: list[tuple[Any, str, Array]] = field(default_factory=list)  # (layer, name, param view)
    _half_views: dict[str, Array] = field(default_factory=dict)  # name -> the half view a layer adopted

    @classmethod
    def of(cls, layers: Sequence[Any]) -> "FlatParameters":
        """Lay out ``layers``' parameters (all built, on one backend) in flat buffers: their current
        values are copied in, then each layer adopts views of them (``Layer.adopt_storage``)."""
        backend = layers[0].backend
        flat = cls(backend)
        sizes: dict[np.dtype, int] = {}
        entries = []
        for layer in layers:
            for name, param, _ in layer.parameters():
                dtype = np.dtype(param.dtype)
                start = _aligned(sizes.get(dtype, 0))
                sizes[dtype] = start + int(param.size)
                flat.slices[name] = (dtype, start, sizes[dtype])
                entries.append((layer, name, param))
        for dtype, size in sizes.items():
            flat.params[dtype] = backend.zeros((size,), dtype)  # the gaps stay zero
            flat.grads[dtype] = backend.zeros((size,), dtype)
        for layer in layers:
            views, grads = {}, {}
            for name, param, _ in layer.parameters():
                dtype, start, stop = flat.slices[name]
                views[name] = flat.params[dtype][start:stop].reshape(param.shape)
                grads[name] = flat.grads[dtype][start:stop].reshape(param.shape)
            layer.adopt_storage(views, grads)  # copies the values in
            for name, param, _ in layer.parameters():
                flat._views.append((layer, name, param))
        flat._lay_out_halves(layers, sizes)
        return flat

    def _lay_out_halves(self, layers: Sequence[Any], sizes: dict[np.dtype, int]) -> None:
        """The half-copy buffers of mixed-precision layers (one per master dtype), adopted as views."""
        for layer in layers:
            copies = layer.half_copies()
            views = {}
            for name, half in copies.items():
                dtype, start, stop = self.slices[name]
                buffer = self.halves.get(dtype)
                if buffer is None:
                    buffer = self.halves[dtype] = self.backend.zeros((sizes[dtype],), half.dtype)
                elif buffer.dtype != half.dtype:
                    raise ValueError(
                        f"layer '{layer.name}': its {np.dtype(half.dtype).name} computation cannot share a model's "
                        f"{np.dtype(dtype).name} parameters with layers computing in {np.dtype(buffer.dtype).name}; "
                        f"give the model's mixed layers one policy"
                    )
                views[name] = buffer[start:stop].reshape(half.shape)
            if views:
                layer.adopt_half_storage(views)  # copies the values in
                self._half_views.update(layer.half_copies())

    def views(self) -> list[tuple[Any, str, Array]]:
        """(layer, parameter name, parameter view) for every parameter laid out here."""
        return list(self._views)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of parameter ``name``."""
        for _, n, param in self._views:
            if n == name:
                return tuple(param.shape)
        raise KeyError(name)

    def current(self, layers: Sequence[Any]) -> bool:
        """Whether ``layers`` still use exactly these buffers (same layers, same views)."""
        names = [(layer, name, p) for layer in layers for name, p, _ in layer.parameters()]
        if len(names) != len(self._views):
            return False
        if not all(a[0] is b[0] and a[1] == b[1] and a[2] is b[2] for a, b in zip(names, self._views)):
            return False
        halves = {name: h for layer in layers for name, h in layer.half_copies().items()}
        return halves.keys() == self._half_views.keys() and all(h is self._half_views[n] for n, h in halves.items())

    def grads_ready(self) -> bool:
        """Whether every layer's gradients are the flat views (each had a backward pass)."""
        for layer, name, _ in self._views:
            for n, _, g in layer.parameters():
                if n == name and g is None:
                    return False
        return True
