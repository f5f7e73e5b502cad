"""The backend methods of the layers beyond Dense (normalization, parametric activations, noise).

``LayerOps`` is a base of ``Backend``: its methods here are the reference, written with the array
module ``xp`` from the layers' formulas (Keras 3's and PyTorch's), not from the kernels; the NumPy
backend runs them as they are, and the CuPy backend overrides each with the kernels of
``kernels/layers.cuh`` (``cupy_layer_ops``). Shapes: x, dy, out (B, N); per-feature arrays (N,);
LayerNormalization's row statistics (B,). Half inputs (float16, bfloat16) compute in float32 and
are rounded once, as the kernels do. Methods write into ``out`` (and the named outputs) and return it.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from . import philox
from .dtypes import is_half_dtype

Array = Any

#: Keras's ``backend.epsilon()``: Normalization divides by max(sqrt(variance), this).
NORMALIZATION_EPSILON = 1e-7


class LayerOps:
    """Reference implementations of the layer methods (see the module docstring)."""

    xp: ModuleType

    def _wide(self, a: Array) -> Array:
        return a.astype(self.xp.float32) if is_half_dtype(a.dtype) else a

    def _put(self, out: Array, value: Array) -> Array:
        out[...] = value.astype(out.dtype, copy=False)
        return out

    # -- parametric activations ------------------------------------------------------------
    def relu_forward(self, x: Array, max_value: float | None, slope: float, threshold: float, out: Array) -> Array:
        """Keras's relu(x, negative_slope, max_value, threshold): x above the threshold (clipped to
        [0, max_value]), 0 below it, minus slope * (threshold - x) below the threshold."""
        xp, w = self.xp, self._wide(x)
        t = xp.where(w > threshold, w, 0)
        if max_value is not None:
            t = xp.clip(t, 0, max_value)
        below = threshold - w
        return self._put(out, xp.where(below > 0, t - slope * below, t))

    def relu_backward(self, x: Array, dy: Array, max_value: float | None, slope: float, threshold: float,
                      out: Array) -> Array:
        xp, w = self.xp, self._wide(x)
        g = (w > threshold).astype(w.dtype)
        if max_value is not None:
            g = xp.where((w < 0) | (w > max_value), 0, g)
        g = g + xp.where(threshold - w > 0, slope, 0).astype(w.dtype)
        return self._put(out, self._wide(dy) * g)

    def elu_forward(self, x: Array, alpha: float, out: Array) -> Array:
        """torch's elu: x > 0 ? x : alpha * expm1(x)."""
        xp, w = self.xp, self._wide(x)
        return self._put(out, xp.where(w > 0, w, alpha * xp.expm1(xp.minimum(w, 0))))

    def elu_backward(self, x: Array, dy: Array, alpha: float, out: Array) -> Array:
        xp, w = self.xp, self._wide(x)
        d = self._wide(dy)
        return self._put(out, xp.where(w > 0, d, d * alpha * xp.exp(xp.minimum(w, 0))))

    def prelu_forward(self, x: Array, alpha: Array, out: Array) -> Array:
        """y = x where x > 0, else alpha * x (alpha (N,), one per feature)."""
        return self._put(out, self.xp.where(x > 0, x, alpha * x))

    def prelu_backward(self, x: Array, dy: Array, alpha: Array, dx: Array | None, dalpha: Array) -> None:
        """dx = dy where x > 0, else alpha * dy; dalpha (N,) = sum over rows of x * dy where x <= 0."""
        xp = self.xp
        positive = x > 0
        if dx is not None:
            self._put(dx, xp.where(positive, dy, alpha * dy))
        self._put(dalpha, xp.sum(xp.where(positive, 0, x * dy), axis=0))

    # -- GaussianNoise ------------------------------------------------------------------------
    def gaussian_noise(self, x: Array, out: Array, seed: int, step: int, stddev: float, offset: int = 0) -> Array:
        """out = x + stddev * z: z of element e (C order) standard normal from words 2 (offset + e)
        and 2 (offset + e) + 1 of the Philox stream of (seed, step), by Box-Muller in double."""
        z = self.xp.asarray(philox.normals(seed, step, offset, x.shape))
        return self._put(out, self._wide(x) + (stddev * z).astype(self._wide(x).dtype))

    # -- Normalization ---------------------------------------------------------------------------
    def normalize_denominator(self, variance: Array, out: Array) -> Array:
        """out (N,) = max(sqrt(variance), 1e-7), Keras's Normalization's divisor."""
        return self._put(out, self.xp.maximum(self.xp.sqrt(variance), NORMALIZATION_EPSILON))

    def normalize_forward(self, x: Array, mean: Array, denom: Array, invert: bool, out: Array) -> Array:
        """out = (x - mean) / denom, or mean + x * denom with ``invert``."""
        value = mean + x * denom if invert else (x - mean) / denom
        return self._put(out, value)

    def normalize_backward(self, dy: Array, denom: Array, invert: bool, out: Array) -> Array:
        return self._put(out, dy * denom if invert else dy / denom)

    # -- BatchNormalization ----------------------------------------------------------------------
    def bn_stats(self, x: Array, mean: Array, var: Array, moving_mean: Array, moving_var: Array,
                 momentum: float, update: bool = True) -> None:
        """mean, var (N,): the batch's mean and biased variance per feature (two passes, in float64);
        with ``update`` the moving statistics become moving * momentum + batch * (1 - momentum)."""
        xp = self.xp
        w = x.astype(xp.float64)
        m = xp.mean(w, axis=0)
        v = xp.mean((w - m) ** 2, axis=0)
        self._put(mean, m)
        self._put(var, v)
        if update:
            self._put(moving_mean, moving_mean.astype(xp.float64) * momentum + m * (1.0 - momentum))
            self._put(moving_var, moving_var.astype(xp.float64) * momentum + v * (1.0 - momentum))

    def bn_forward(self, x: Array, mean: Array, var: Array, gamma: Array | None, beta: Array | None, eps: float,
                   out: Array) -> Array:
        """out = (x - mean) / sqrt(var + eps) * gamma + beta (gamma, beta: None where absent)."""
        y = (x - mean) * (1 / self.xp.sqrt(var + eps))
        if gamma is not None:
            y = y * gamma
        if beta is not None:
            y = y + beta
        return self._put(out, y)

    def bn_backward(self, x: Array, dy: Array, mean: Array, var: Array, gamma: Array | None, eps: float,
                    batch_stats: bool, sdy: Array, sdyx: Array, dx: Array | None) -> None:
        """sdy = sum(dy) and sdyx = sum(dy * xhat) over the batch (beta's and gamma's gradients);
        dx = gamma rstd / B (B dy - sdy - xhat sdyx) where forward used the batch's statistics
        (``batch_stats``), else gamma rstd dy. ``dx`` None: not computed."""
        xp = self.xp
        rstd = 1 / xp.sqrt(var + eps)
        xhat = (x - mean) * rstd
        self._put(sdy, xp.sum(dy, axis=0))
        self._put(sdyx, xp.sum(dy * xhat, axis=0))
        if dx is None:
            return
        g = rstd if gamma is None else gamma * rstd
        if not batch_stats:
            self._put(dx, dy * g)
            return
        rows = x.shape[0]
        self._put(dx, g / rows * (rows * dy - sdy - xhat * sdyx))

    # -- LayerNormalization ----------------------------------------------------------------------
    def ln_forward(self, x: Array, gamma: Array | None, beta: Array | None, eps: float, out: Array,
                   mean: Array, rstd: Array) -> Array:
        """out = (x - mean_r) rstd_r gamma + beta with each row's mean and rstd = 1 / sqrt(var + eps)
        (biased, two passes), which are kept in ``mean``, ``rstd`` (B,) for backward."""
        xp = self.xp
        w = x.astype(xp.float64)
        m = xp.mean(w, axis=1, keepdims=True)
        r = 1 / xp.sqrt(xp.mean((w - m) ** 2, axis=1, keepdims=True) + eps)
        self._put(mean, m[:, 0])
        self._put(rstd, r[:, 0])
        y = (x - mean[:, None]) * rstd[:, None]
        if gamma is not None:
            y = y * gamma
        if beta is not None:
            y = y + beta
        return self._put(out, y)

    def ln_backward(self, x: Array, dy: Array, mean: Array, rstd: Array, gamma: Array | None, sdy: Array,
                    sdyx: Array, dx: Array | None) -> None:
        """sdy, sdyx (N,) = sums over rows of dy and dy * xhat (gamma's and beta's gradients);
        dx = rstd (g - mean(g) - xhat mean(g xhat)) per row, g = dy * gamma."""
        xp = self.xp
        xhat = (x - mean[:, None]) * rstd[:, None]
        self._put(sdy, xp.sum(dy, axis=0))
        self._put(sdyx, xp.sum(dy * xhat, axis=0))
        if dx is None:
            return
        g = dy if gamma is None else dy * gamma
        mg = xp.mean(g, axis=1, keepdims=True)
        mgx = xp.mean(g * xhat, axis=1, keepdims=True)
        self._put(dx, rstd[:, None] * (g - mg - xhat * mgx))

