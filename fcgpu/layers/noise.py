"""GaussianNoise: additive zero-mean normal noise in training, the identity otherwise (Keras's
``GaussianNoise(stddev, seed)``).

The noise of a (B, N) batch comes from Philox4x32-10 keyed by (seed, step), as Dropout's mask
(``kernels/random.cuh`` and ``backends/philox.py``): element e is a standard normal formed by
Box-Muller from words 2e and 2e + 1 of the stream, so both backends draw the same noise. ``step``
counts the training forwards. Backward hands dy on unchanged (the noise does not depend on x).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends.base import Array
from ..initializers import get_rng
from ..saving.serialization import register
from .context import INFERENCE, ForwardContext
from .elementwise import ElementwiseLayer
from .variables import check_number

__all__ = ["GaussianNoise"]

SEEDS = 2**64  # a seed is the Philox key: two 32-bit words


@register
class GaussianNoise(ElementwiseLayer):
    """Adds noise of standard deviation ``stddev`` (in [0, 1], as Keras) while training.

    Args:
        stddev: the noise's standard deviation; 0 makes the layer the identity.
        seed: an int in [0, 2**64), or None: drawn at build from fcgpu's seeded generator.
        dtype, name: as Dropout's.

    Shapes: x (B, N) or (N,) -> y of the same shape.
    """

    def __init__(self, stddev: float, seed: int | None = None, dtype: Any = None, name: str | None = None) -> None:
        self.stddev = check_number(stddev, "stddev", 0.0, 1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEEDS):
            raise ValueError(f"seed: expected None or an int in [0, 2**64), got {seed!r}")
        super().__init__(dtype, name)
        self.seed: int | None = None if seed is None else int(seed)
        self.step = 0  # training forwards so far: the counter of the next draw

    def config_entries(self) -> dict[str, Any]:
        return {"stddev": self.stddev, "seed": self.seed}

    def build(self, input_shape: int | Sequence[int | None]) -> None:
        super().build(input_shape)
        if self.seed is None:
            self.seed = int(get_rng().integers(0, SEEDS, dtype=np.uint64))

    def forward(self, x: Any, ctx: ForwardContext = INFERENCE) -> Array:
        """y (B, N) = x + stddev * noise when ``ctx.training`` (one device operation), else x itself.
        ``ctx.row_offset``: x's first row in the whole batch (a data-parallel rank's share)."""
        x_dev, squeeze = self.start_forward(x)
        if not ctx.training or self.stddev == 0.0:
            return self.passed_on(x_dev, squeeze, ctx)
        step, self.step = self.step, self.step + 1
        y = self._buffers.get(self.backend, "y", x_dev.shape, self.dtype)
        self.backend.gaussian_noise(x_dev, y, self.seed, step, self.stddev, ctx.row_offset * x_dev.shape[1])
        return self.output(y, squeeze, ctx)

    def infer(self, x: Any, *, logits: bool = False) -> Array:
        x_dev, squeeze = self.device_input(x)
        return x_dev[0] if squeeze else x_dev

    def backward(self, dy: Any, *, input_grad: bool = True, scale: Any = 1.0) -> Array | None:
        """dx = dy (no device operation); ``input_grad=False``: None."""
        dy_dev = self.device_dy(dy)
        return self.gradient(dy_dev) if input_grad else None
