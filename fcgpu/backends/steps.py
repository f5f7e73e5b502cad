"""The backends' fused training-step methods, shown as compositions of the ``Backend`` methods
they fuse, and loss scaling's step decision; the CuPy backend runs each as one kernel launch.

``Backend`` inherits these; nothing else uses this module directly.
"""
from __future__ import annotations

from typing import Any

Array = Any  # numpy.ndarray or cupy.ndarray


class FusedSteps:
    """The loss steps (loss, gradient and correct count in one call), ``loss_scale_check`` and
    gradient clipping's ``clip_factors`` and ``clipped_gradient``."""

    xp: Any

    # -- fused training steps: loss, gradient and correct count in one call --------------------
    # acc is a float64 device array (2,): acc[0] += loss x weight, acc[1] += correct x weight, so a
    # training loop keeps its running sums on the device and reads them a few times an epoch.
    # Shown as compositions of the Backend methods they fuse; the CuPy backend runs each as one kernel.
    def softmax_xent_step(
        self, z: Array, labels: Array, scale: float, weight: float, count: bool, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        """out = (softmax(z) - labels) * scale for logits z (B, C); adds sum over rows of the loss
        (and with ``count`` the rows whose argmax is right) into acc. Every step also takes
        ``gscale``, a float64 device array whose first element multiplies ``scale`` (the loss scale
        of LossScaleOptimizer, read there by the kernels: no host read; None is 1), and
        ``sample_weight``, one weight a row (or None) multiplying the row's loss and gradient, not
        its correct count (Keras weighs the loss, and only weighted_metrics)."""
        scale = self.times_scale(scale, gscale)
        lse = self.logsumexp_rows(z)
        if sample_weight is not None:
            xp = self.xp
            wz, wl = self._widened(z, lse)
            if labels.ndim == 1:
                rows = wl[:, 0] - wz[xp.arange(z.shape[0]), labels]
            else:
                rows = xp.sum(self._widened(labels)[0] * (wl - wz), axis=1)
            acc[0] += xp.sum(rows.astype(xp.float64) * sample_weight, dtype=xp.float64) * weight
            self.softmax_xent_grad(z, lse, labels, 1.0, out)
            self._weigh_rows(out, scale, sample_weight)
            if count:
                acc[1] += self.count_correct(z, labels, None) * weight
            return out
        acc[0] += self.softmax_xent_sum(z, lse, labels) * weight
        self.softmax_xent_grad(z, lse, labels, scale, out)
        if count:
            acc[1] += self.count_correct(z, labels, None) * weight
        return out

    def bce_logits_step(
        self, z: Array, y: Array, scale: float, weight: float, count: bool, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        """out = (sigmoid(z) - y) * scale; adds the summed loss (and elements where (z > 0) matches
        (y > 0.5)) into acc."""
        scale = self.times_scale(scale, gscale)
        if sample_weight is not None:
            xp = self.xp
            wz, wy = self._widened(z, y)
            values = xp.maximum(wz, 0) - wz * wy + xp.log1p(xp.exp(-xp.abs(wz)))
            acc[0] += self._weighted_sum(values, sample_weight) * weight
            if count:
                acc[1] += self.count_correct(z, y, 0.0) * weight
            self.bce_logits_grad(z, y, 1.0, out)
            return self._weigh_rows(out, scale, sample_weight)
        acc[0] += self.bce_logits_sum(z, y) * weight
        if count:
            acc[1] += self.count_correct(z, y, 0.0) * weight
        return self.bce_logits_grad(z, y, scale, out)

    def mse_step(
        self, p: Array, y: Array, scale: float, weight: float, out: Array, acc: Array, *, gscale: Array | None = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """out = 2 (p - y) * scale; adds sum of (p - y)**2 into acc."""
        scale = self.times_scale(scale, gscale)
        if sample_weight is not None:
            wp, wy = self._widened(p, y)
            acc[0] += self._weighted_sum((wp - wy) * (wp - wy), sample_weight) * weight
            return self._weigh_rows(self.mse_grad(p, y, 1.0, out), scale, sample_weight)
        acc[0] += self.mse_sum(p, y) * weight
        return self.mse_grad(p, y, scale, out)

    def mae_step(
        self, p: Array, y: Array, scale: float, weight: float, out: Array, acc: Array, *, gscale: Array | None = None,
        sample_weight: Array | None = None,
    ) -> Array:
        """out = sign(p - y) * scale; adds sum of |p - y| into acc."""
        scale = self.times_scale(scale, gscale)
        if sample_weight is not None:
            wp, wy = self._widened(p, y)
            acc[0] += self._weighted_sum(self.xp.abs(wp - wy), sample_weight) * weight
            return self._weigh_rows(self.mae_grad(p, y, 1.0, out), scale, sample_weight)
        acc[0] += self.abs_error_sum(p, y) * weight
        return self.mae_grad(p, y, scale, out)

    def huber_step(
        self, p: Array, y: Array, delta: float, scale: float, weight: float, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        """out = clip(p - y, -delta, delta) * scale; adds the summed Huber loss into acc."""
        scale = self.times_scale(scale, gscale)
        if sample_weight is not None:
            xp = self.xp
            wp, wy = self._widened(p, y)
            d = wp - wy
            a = xp.abs(d)
            values = xp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
            acc[0] += self._weighted_sum(values, sample_weight) * weight
            return self._weigh_rows(self.huber_grad(p, y, delta, 1.0, out), scale, sample_weight)
        acc[0] += self.huber_sum(p, y, delta) * weight
        return self.huber_grad(p, y, delta, scale, out)

    def _weighted_sum(self, values: Array, sample_weight: Array) -> Any:
        """sum over rows of weight x (the row's values summed), in float64."""
        xp = self.xp
        rows = values.reshape(values.shape[0], -1).astype(xp.float64)
        return xp.sum(rows * sample_weight.astype(xp.float64)[:, None], dtype=xp.float64)

    def _weigh_rows(self, out: Array, scale: float, sample_weight: Array) -> Array:
        """out (an unscaled gradient) times scale x its row's weight, that factor rounded once to
        out's type (as the kernels' A(scale * w))."""
        factor = (sample_weight.astype(self.xp.float64) * scale).astype(out.dtype)
        out *= factor.reshape((out.shape[0],) + (1,) * (out.ndim - 1))
        return out

    def times_scale(self, scale: float, gscale: Array | None) -> float:
        """``scale`` times ``gscale[0]`` as a host float: free on the host; on a device only the
        composed fallbacks above take it (a read), the fused kernels read gscale themselves."""
        return scale if gscale is None else scale * float(self.to_numpy(gscale)[0])

    #: LossScaleOptimizer's device state (kernels/optimizers.cuh, FC_LS_*): scale, good steps, this
    #: step's overflow flag, this step's 1/scale, steps skipped, applied steps t, Adam's step size
    #: lr / (1 - beta1^t) and sqrt(1 - beta2^t).
    LS_SCALE, LS_GOOD, LS_SKIP, LS_UNSCALE, LS_SKIPPED, LS_T, LS_STEP_SIZE, LS_BC2_SQRT = range(8)
    LS_SIZE = 8

    def loss_scale_check(
        self, grads: list[Array], state: Array, growth: int, lr: float = 0.0, beta1: float = 0.0, beta2: float = 0.0
    ) -> None:
        """Loss scaling's step decision, kept where ``state`` (float64, ``LS_SIZE``) lives: sets its
        overflow flag where any of ``grads`` holds inf or NaN, then (kernels/optimizers.cuh,
        fc_loss_scale_update) halves the scale and counts a skip, or counts a finite step, doubles
        the scale after ``growth`` of them in a row, advances t and sets Adam's bias corrections
        for t from ``lr``, ``beta1``, ``beta2``. One launch a buffer on CuPy; no host read."""
        xp = self.xp
        bad = not all(bool(xp.all(xp.isfinite(g))) for g in grads)
        scale = float(state[self.LS_SCALE])
        state[self.LS_SKIP] = 1.0 if bad else 0.0
        state[self.LS_UNSCALE] = 1.0 / scale
        if bad:
            state[self.LS_SCALE] = max(scale / 2.0, 1.0)
            state[self.LS_GOOD] = 0.0
            state[self.LS_SKIPPED] += 1.0
            return
        state[self.LS_GOOD] += 1.0
        if state[self.LS_GOOD] >= growth:
            state[self.LS_SCALE] = scale * 2.0
            state[self.LS_GOOD] = 0.0
        t = float(state[self.LS_T]) + 1.0
        state[self.LS_T] = t
        state[self.LS_STEP_SIZE] = lr / (1.0 - beta1**t)
        state[self.LS_BC2_SQRT] = (1.0 - beta2**t) ** 0.5


    # -- gradient clipping (Keras 3's clipnorm, global_clipnorm, clipvalue) ----------------------
    def clip_factors(
        self, grads: list[Array], segments: list[Array], factors: Array, clipnorm: float, per_variable: bool,
        *, unscale: float = 1.0, guard: Array | None = None,
    ) -> None:
        """The norm clipping factors of flat gradient buffers ``grads`` into ``factors`` (float64,
        where they live), read by the updates' ``clip`` (kernels/optimizers.cuh, fc_clip_norms_grid):
        segments[b] holds int64 (start, stop) pairs of buffer b's variables, sorted. per_variable
        (clipnorm c): factors[k] = c / max(||g_k||, c) for the k-th variable over all buffers;
        else (global_clipnorm c) factors[0] = c * min(1/n, 1/c) + (n - n) for the norm n of all
        of them, factors[1] their squared sum. The norms are of the gradients times ``unscale``
        (or ``guard``'s 1/scale: LossScaleOptimizer's). One launch a buffer on CuPy; no host read."""
        xp = self.xp
        u = float(guard[self.LS_UNSCALE]) if guard is not None else float(unscale)
        sums = []
        for g, segs in zip(grads, segments):
            pairs = self.to_numpy(segs).reshape(-1, 2)
            sums += [float(xp.sum(xp.square(g[a:b].astype(xp.float64)))) for a, b in pairs]
        if per_variable:
            for k, sumsq in enumerate(sums):
                n = sumsq**0.5 * u
                factors[k] = clipnorm / (n if (n != n or n > clipnorm) else clipnorm)
            return
        total = float(sum(sums))
        n = total**0.5 * u
        r, inv_c = (1.0 / n if n else float("inf")), 1.0 / clipnorm
        factors[1] = total
        factors[0] = clipnorm * (r if r < inv_c else inv_c) + (n - n)

    def clipped_gradient(self, grad: Array, factors: Array, segs: Array, nseg: int, clipvalue: float, out: Array) -> Array:
        """``grad`` (a flat buffer, already unscaled) clipped into ``out``: clamped to [-clipvalue,
        clipvalue] where clipvalue > 0; else times its norm factor: none where nseg is 0, factors[0]
        for every element where nseg < 0, else factors[k] for segment k of ``segs`` (1 in the gaps)."""
        xp = self.xp
        if clipvalue > 0:
            return xp.clip(grad, -clipvalue, clipvalue, out=out)
        out[...] = grad
        scalar = grad.dtype.type
        if nseg < 0:
            out *= scalar(float(factors[0]))
        elif nseg > 0:
            flat = out.reshape(-1)
            for k, (a, b) in enumerate(self.to_numpy(segs).reshape(-1, 2)[:nseg]):
                flat[a:b] *= scalar(float(factors[k]))
        return out
