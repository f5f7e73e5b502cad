"""Dropout: inverted dropout in training, the identity otherwise (Keras's ``Dropout(rate, seed)``).

In a training forward (``training=True``: fit and train_step) each element is dropped with
probability ``rate`` and the kept ones are scaled by 1 / (1 - rate), so the expected output is the
input. The mask comes from Philox4x32-10 keyed by (seed, step, element index)
(``kernels/random.cuh``; the NumPy backend's own ``backends/philox.py``): the same seed gives the
same masks on every backend, and backward regenerates the mask from the same counter instead of
storing it. ``step`` counts the training forwards and advances once per training forward. Every
other forward (``model(x)``, predict, evaluate, validation) hands its input on with no device
operation at all.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..backends.base import Array
from ..initializers import get_rng
from ..saving.serialization import register
from .context import INFERENCE, ForwardContext
from .elementwise import ElementwiseLayer
from .fusion import MASK

__all__ = ["Dropout"]

_SEEDS = 2**64  # a seed is the Philox key: two 32-bit words


@register
class Dropout(ElementwiseLayer):
    """Drops a fraction ``rate`` in [0, 1) of its inputs while training.

    Args:
        rate: the probability of dropping an element; 0 makes the layer the identity.
        seed: an int in [0, 2**64), or None: drawn at build from fcgpu's seeded generator
            (``fcgpu.set_seed``), so a seeded program gets the same masks every run.
        dtype: None (that of the layer before it in a model), 'float32', 'float64' or 'float16'.
        name: unique within a model; assigned ('dropout', 'dropout_1', ...) when left None.

    Shapes: x (B, N) or (N,) -> y of the same shape. The mask of a (B, N) batch: element
    (r, c) is word r * N + c of the Philox stream of (seed, step).
    """

    def __init__(self, rate: float, seed: int | None = None, dtype: str | None = None, name: str | None = None) -> None:
        _check_rate(rate)
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < _SEEDS
        ):
            raise ValueError(f"seed: expected None or an int in [0, 2**64), got {seed!r}")
        super().__init__(dtype, name)
        self.rate = float(rate)
        self.seed: int | None = None if seed is None else int(seed)
        self.step = 0  # training forwards so far: the counter of the next mask
        self._mask_step: int | None = None  # the step of the last forward's mask; None: it was the identity
        self._offset = 0  # the element offset of the last forward's mask
        self._fused = False  # whether the last training forward ran inside the Dense before

    def config_entries(self) -> dict[str, Any]:
        # The seed in use (once drawn), so that a model built from the config draws the same masks.
        return {"rate": self.rate, "seed": self.seed}

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        """As ``ElementwiseLayer.build``; draws the seed on the first build when none was given."""
        super().build(input_shape)
        if self.seed is None:
            self.seed = int(get_rng().integers(0, _SEEDS, dtype=np.uint64))

    def release(self) -> None:
        super().release()
        self._mask_step = None
        self._fused = False

    # -- computation -------------------------------------------------------------
    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = x * mask / (1 - rate) when ``ctx.training`` (one device operation), else x itself.

        ``ctx.row_offset``: the index of x's first row in the whole batch (a data-parallel rank's
        share). ``ctx.logits`` does not concern dropout; the ownership flags as in Dense.forward
        (backward reads neither x nor y, so only an input that is another layer's output is copied,
        and only when the caller would get it).
        """
        x_dev, squeeze = self.start_forward(x)
        if not ctx.training or self._rate == 0.0:
            return self.passed_on(x_dev, squeeze, ctx)
        self._mask_step, self.step = self.step, self.step + 1
        y = self._buffers.get(self.backend, "y", x_dev.shape, self.dtype)
        # Element e of row r has Philox word (row_offset + r) * N + e: a data-parallel rank's rows
        # draw the mask one process would draw for them.
        self._offset = ctx.row_offset * x_dev.shape[1]
        self.backend.dropout_forward(x_dev, y, self.seed, self._mask_step, self._rate, self._offset)
        return y[0] if squeeze else y

    fusion_settings = ("_rate",)

    @property
    def rate(self) -> float:
        """The probability of dropping an element, in [0, 1); set as the constructor takes it."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        _check_rate(value)
        self._rate = float(value)

    def fusion_kind(self, training: bool) -> str | None:
        """An active Dropout (training, rate > 0) is an elementwise mask (``fusion.MASK``): a layer
        before it that takes one runs it in its own pass (``fused_mask``)."""
        return MASK if training and self._rate > 0 else None

    def fused_mask(self, shape: tuple[int, ...], row_offset: int = 0) -> tuple[Array, int, int, float, int]:
        """A training forward run by the Dense before this layer: (this layer's output buffer (B, N),
        seed, step, rate, element offset) for that pass, with the step counter advanced as forward
        advances it. This layer's backward then hands dy on untouched: the Dense applies the mask."""
        self.release()
        self._out_shape, self._squeeze = tuple(shape), False
        self._mask_step, self.step = self.step, self.step + 1
        self._offset = row_offset * shape[1]
        self._fused = True
        out = self._buffers.get(self.backend, "y", tuple(shape), self.dtype)
        return out, self.seed, self._mask_step, self._rate, self._offset

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        """x itself (inference): no device operation."""
        x_dev, squeeze = self.device_input(x)
        return x_dev[0] if squeeze else x_dev

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx (B, N) = dy * mask / (1 - rate) with the last forward's mask, regenerated (one device
        operation); dy itself after a forward that was the identity. ``input_grad=False``: None."""
        dy_dev = self.device_dy(dy)
        if not input_grad:
            return None
        if self._mask_step is None or self._fused:  # identity, or the Dense before applies the mask
            return self.gradient(dy_dev)
        dx = self._buffers.get(self.backend, "dx", dy_dev.shape, self.dtype)
        self.backend.dropout_backward(dy_dev, dx, self.seed, self._mask_step, self._rate, self._offset)
        return self.gradient(dx)


def _check_rate(rate: Any) -> None:
    if (isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating))
            or not math.isfinite(rate) or not 0 <= rate < 1):
        raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
