"""Keras 3's gradient clipping for every optimizer: ``clipnorm``, ``clipvalue``, ``global_clipnorm``.

Keras clips the gradients before an update (``BaseOptimizer._clip_gradients``): with ``clipnorm``
each variable's gradient g becomes g * c / max(||g||, c); with ``global_clipnorm`` every gradient is
multiplied by c * min(1/n, 1/c) for the norm n of all of them together (NaN where n is not
finite); with ``clipvalue`` each element is clamped to [-v, v]. At most one of the three is given;
0 (or None) clips nothing.

On a model's flat buffers the norms are one reduction a buffer (``Backend.clip_factors``) into a
small float64 array where the buffers live, which the fused update reads as a factor, and
``clipvalue`` is applied inside the update: no host read a step, and no extra operation when no
clipping is asked for.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CLIP_ARGUMENTS", "ClipPlan", "check_clipping"]

CLIP_ARGUMENTS = ("clipnorm", "clipvalue", "global_clipnorm")


def check_clipping(clipnorm: Any, clipvalue: Any, global_clipnorm: Any) -> tuple[float | None, ...]:
    """The three arguments as floats >= 0 (or None), at most one of them given, as Keras checks."""
    values = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
    given = [name for name, value in values.items() if value is not None]
    if len(given) > 1:
        raise ValueError(
            f"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: clipnorm={clipnorm}, "
            f"clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
        )
    checked = []
    for name, value in values.items():
        if value is None:
            checked.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected a number or None, got {value!r}")
        if not 0.0 <= float(value) < float("inf"):
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        checked.append(float(value))
    return tuple(checked)


class ClipPlan:
    """The clipping of one layout of gradient buffers: ``arguments[b]``, the ``clip`` argument of
    buffer b's update (factors, segments, segment count, clipvalue), and ``before``, the norm
    reduction each step runs first (nothing for ``clipvalue``).

    ``buffers``: (gradient buffer, [(start, stop) of each variable in it]) on ``backend``.
    """

    def __init__(self, backend: Any, buffers: list[tuple[Any, list[tuple[int, int]]]], clipnorm: float,
                 clipvalue: float, global_clipnorm: float) -> None:
        self.backend = backend
        self.grads = [grad for grad, _ in buffers]
        self.norm = clipnorm if clipnorm > 0 else global_clipnorm
        self.per_variable = clipnorm > 0
        total = sum(len(spans) for _, spans in buffers)
        self.factors = backend.zeros((max(total, 2),), np.float64)
        self.segments = [
            backend.from_numpy(np.asarray(sorted(spans), dtype=np.int64).reshape(-1)) for _, spans in buffers
        ]
        self.arguments: list[tuple[Any, Any, int, float]] = []
        base = 0
        for segs, (_, spans) in zip(self.segments, buffers):
            if self.per_variable:
                self.arguments.append((self.factors[base:base + len(spans)], segs, len(spans), 0.0))
            elif self.norm > 0:
                self.arguments.append((self.factors, segs, -1, 0.0))
            else:
                self.arguments.append((self.factors, segs, 0, clipvalue))
            base += len(spans)

    @classmethod
    def of(cls, optimizer: Any, backend: Any, buffers: list[tuple[Any, list[tuple[int, int]]]]) -> "ClipPlan | None":
        """The clipping ``optimizer``'s arguments ask for on these buffers, or None: no clipping."""
        norm, value = optimizer.clipnorm or 0.0, optimizer.clipvalue or 0.0
        total = optimizer.global_clipnorm or 0.0
        return cls(backend, buffers, norm, value, total) if norm > 0 or value > 0 or total > 0 else None

    def before(self, unscale: float = 1.0, guard: Any = None) -> None:
        """The norm reduction of this step's gradients into the factors (one launch a buffer)."""
        if self.norm > 0:
            self.backend.clip_factors(self.grads, self.segments, self.factors, self.norm, self.per_variable,
                                      unscale=unscale, guard=guard)
