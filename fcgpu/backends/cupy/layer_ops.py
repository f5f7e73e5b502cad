"""The CuPy backend's layer methods: ``LayerOps`` run as the kernels of ``kernels/layers.cuh``.

A base of ``CupyBackend`` (which supplies ``kernel(name)``). Elementwise kernels broadcast the
per-feature arrays over the rows; the column reductions (BatchNormalization's statistics, the
normalization layers' parameter gradients) launch a block of ``COLUMN_BLOCK`` threads per 32
columns, the row ones (LayerNormalization) a warp per row, as ``kernel_specs`` describes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..layer_ops import LayerOps

Array = Any

WARP = 32
COLUMN_BLOCK = 256  # kernels/layers.cuh: FC_COL_BLOCK


def column_launch(ncols: int) -> dict[str, int]:
    """The launch of a column reduction over ``ncols`` columns: a block per 32 columns."""
    return {"size": -(-int(ncols) // WARP) * COLUMN_BLOCK, "block_size": COLUMN_BLOCK}


class CupyLayerOps(LayerOps):
    """``LayerOps`` as kernels (the reference formulas are ``LayerOps``'s); ``kernel(name)`` is
    ``CupyBackend``'s."""

    # -- parametric activations ----------------------------------------------------------------
    def relu_forward(self, x, max_value, slope, threshold, out):
        has_max = max_value is not None
        return self.kernel("fcgpu_relu_param_fwd")(
            x, float(max_value if has_max else 0.0), has_max, float(slope), float(threshold), out
        )

    def relu_backward(self, x, dy, max_value, slope, threshold, out):
        has_max = max_value is not None
        return self.kernel("fcgpu_relu_param_bwd")(
            x, dy, float(max_value if has_max else 0.0), has_max, float(slope), float(threshold), out
        )

    def elu_forward(self, x, alpha, out):
        return self.kernel("fcgpu_elu_alpha_fwd")(x, float(alpha), out)

    def elu_backward(self, x, dy, alpha, out):
        return self.kernel("fcgpu_elu_alpha_bwd")(x, dy, float(alpha), out)

    def prelu_forward(self, x, alpha, out):
        return self.kernel("fcgpu_prelu_fwd")(x, alpha, out)

    def prelu_backward(self, x, dy, alpha, dx, dalpha):
        terms = self.empty(x.shape, x.dtype)
        self.kernel("fcgpu_prelu_bwd")(x, dy, alpha, dx if dx is not None else self.empty(x.shape, x.dtype), terms)
        self.sum_rows(terms, out=dalpha)

    # -- GaussianNoise ----------------------------------------------------------------------------
    def gaussian_noise(self, x, out, seed, step, stddev, offset=0):
        return self.kernel("fcgpu_gaussian_noise")(
            x, np.uint64(seed), np.uint64(step), np.int64(offset), float(stddev), out
        )

    # -- Normalization ----------------------------------------------------------------------------
    def normalize_forward(self, x, mean, denom, invert, out):
        return self.kernel("fcgpu_normalize")(x, mean, denom, bool(invert), out)

    def normalize_backward(self, dy, denom, invert, out):
        return self.kernel("fcgpu_normalize_bwd")(dy, denom, bool(invert), out)

    # -- BatchNormalization ----------------------------------------------------------------------
    def bn_stats(self, x, mean, var, moving_mean, moving_var, momentum, update=True):
        rows, ncols = x.shape
        self.kernel("fcgpu_bn_stats")(
            x, rows, ncols, float(momentum), bool(update), mean, var, moving_mean, moving_var, **column_launch(ncols)
        )

    def bn_forward(self, x, mean, var, gamma, beta, eps, out):
        return self.kernel("fcgpu_bn_apply")(
            x, mean, var, mean if gamma is None else gamma, mean if beta is None else beta, float(eps),
            gamma is not None, beta is not None, out,
        )

    def bn_backward(self, x, dy, mean, var, gamma, eps, batch_stats, sdy, sdyx, dx):
        rows, ncols = x.shape
        self.kernel("fcgpu_bn_param_grads")(x, dy, mean, var, float(eps), rows, ncols, sdy, sdyx, **column_launch(ncols))
        if dx is not None:
            self.kernel("fcgpu_bn_dx")(
                x, dy, mean, var, mean if gamma is None else gamma, sdy, sdyx, float(eps), float(rows),
                gamma is not None, bool(batch_stats), dx,
            )

    # -- LayerNormalization ----------------------------------------------------------------------
    def ln_forward(self, x, gamma, beta, eps, out, mean, rstd):
        rows, ncols = x.shape
        self.kernel("fcgpu_ln_forward")(
            x, x if gamma is None else gamma, x if beta is None else beta, gamma is not None, beta is not None,
            float(eps), ncols, out, mean, rstd, size=WARP * rows,
        )
        return out

    def ln_backward(self, x, dy, mean, rstd, gamma, sdy, sdyx, dx):
        rows, ncols = x.shape
        self.kernel("fcgpu_ln_param_grads")(x, dy, mean, rstd, rows, ncols, sdy, sdyx, **column_launch(ncols))
        if dx is not None:
            self.kernel("fcgpu_ln_dx")(x, dy, mean, rstd, x if gamma is None else gamma, gamma is not None, ncols, dx,
                                       size=WARP * rows)
