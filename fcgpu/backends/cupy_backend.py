"""The CuPy backend: cuBLAS GEMMs through ``cupy.matmul`` and fcgpu's own elementwise kernels.

Every kernel's arithmetic lives in ``kernels/*.cuh``; this module only declares the
``cupy.ElementwiseKernel`` signatures (``KERNEL_SPECS``), builds each kernel on first use
and caches it. The module object is injected, so the same code runs against the real CuPy
or against ``fcgpu.testing.fake_cupy`` on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np

from .. import kernel_sources
from ..activations import ACTIVATIONS
from .device_specs import device_peak
from .base import Array, Backend, Scalar


@dataclass(frozen=True)
class KernelSpec:
    """The arguments of one ``cupy.ElementwiseKernel``; its preamble is every header in kernels/."""

    name: str
    in_params: str
    out_params: str
    operation: str


def _specs() -> dict[str, KernelSpec]:
    specs = []
    for act in ACTIVATIONS.values():
        f = act.kernel_functor
        specs += [
            KernelSpec(f"fcgpu_bias_{act.name}_fwd", "T z, T b", "T y", f"y = fc_bias_act_forward<{f}>(z, b)"),
            KernelSpec(f"fcgpu_{act.name}_fwd", "T z", "T y", f"y = fc_act_forward<{f}>(z)"),
            KernelSpec(f"fcgpu_{act.name}_bwd", "T y, T dy", "T dz", f"dz = fc_act_backward<{f}>(y, dy)"),
        ]
    specs += [
        # i indexes the contiguous (B, C) output, so row = i / ncols and class = i % ncols.
        KernelSpec(
            "fcgpu_softmax_xent_grad_ids",
            "T z, T lse, raw I labels, int64 ncols, float64 scale",
            "T dz",
            "dz = fc_softmax_xent_grad(z, lse, (long long)labels[i / ncols] == (long long)(i % ncols) ? T(1) : T(0), scale)",
        ),
        KernelSpec(
            "fcgpu_softmax_xent_grad_probs",
            "T z, T lse, T target, float64 scale",
            "T dz",
            "dz = fc_softmax_xent_grad(z, lse, target, scale)",
        ),
        # The fused training steps: one thread per row (size=B) or per element; the running sums
        # land in a float64 accumulator acc (2,): [loss x weight, correct x weight].
        KernelSpec(
            "fcgpu_softmax_xent_rows_ids",
            "raw T z, raw I labels, int64 ncols, float64 scale, float64 weight, bool count",
            "raw T dz, raw float64 acc",
            "fc_softmax_xent_row_ids<T>(z, dz, i, ncols, (long long)labels[i], scale, weight, count, &acc[0])",
        ),
        KernelSpec(
            "fcgpu_softmax_xent_rows_probs",
            "raw T z, raw T t, int64 ncols, float64 scale, float64 weight, bool count",
            "raw T dz, raw float64 acc",
            "fc_softmax_xent_row_probs<T>(z, t, dz, i, ncols, scale, weight, count, &acc[0])",
        ),
        KernelSpec(
            "fcgpu_bce_logits_step",
            "T z, T y, float64 scale, float64 weight, bool count",
            "T dz, raw float64 acc",
            "dz = fc_bce_logits_step(z, y, scale, weight, count, &acc[0])",
        ),
        KernelSpec(
            "fcgpu_mse_step",
            "T p, T y, float64 scale, float64 weight",
            "T dp, raw float64 acc",
            "dp = fc_mse_step(p, y, scale, weight, &acc[0])",
        ),
        KernelSpec("fcgpu_bce_logits_loss", "T z, T y", "T loss", "loss = fc_bce_logits_loss(z, y)"),
        KernelSpec("fcgpu_bce_logits_grad", "T z, T y, float64 scale", "T dz", "dz = fc_bce_logits_grad(z, y, scale)"),
        KernelSpec("fcgpu_bce_prob_loss", "T p, T y, float64 eps", "T loss", "loss = fc_bce_prob_loss(p, y, eps)"),
        KernelSpec("fcgpu_bce_prob_grad", "T p, T y, float64 eps, float64 scale", "T dp", "dp = fc_bce_prob_grad(p, y, eps, scale)"),
        KernelSpec("fcgpu_mse_grad", "T p, T y, float64 scale", "T dp", "dp = fc_mse_grad(p, y, scale)"),
        KernelSpec(
            "fcgpu_sgd",
            "T grad, float64 lr, float64 wd",
            "T p",
            "T no_buf = T(0); fc_sgd_update(p, no_buf, grad, lr, 0.0, wd, false)",
        ),
        KernelSpec(
            "fcgpu_sgd_momentum",
            "T grad, float64 lr, float64 mu, float64 wd, bool nesterov",
            "T p, S buf",
            "fc_sgd_update(p, buf, grad, lr, mu, wd, nesterov)",
        ),
        KernelSpec(
            "fcgpu_adam",
            "T grad, float64 beta1, float64 beta2, float64 one_minus_beta1, float64 one_minus_beta2, float64 eps, "
            "float64 wd, float64 decay, float64 step_size, float64 bc2_sqrt, bool decoupled",
            "T p, S m, S v",
            "fc_adam_update(p, m, v, grad, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay, "
            "step_size, bc2_sqrt, decoupled)",
        ),
    ]
    return {s.name: s for s in specs}


KERNEL_SPECS: dict[str, KernelSpec] = _specs()

# cudaDeviceAttr: clock rate (kHz), SM count, memory clock (kHz), bus width (bits), compute capability.
_PEAK_ATTRIBUTES = (13, 16, 36, 37, 75, 76)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, cupy_module: ModuleType | None = None) -> None:
        if cupy_module is None:
            import cupy as cupy_module  # noqa: PLC0415 - only where a device was found usable
        self.xp = self.cp = cupy_module
        self._kernels: dict[str, Any] = {}

    def kernel(self, name: str) -> Any:
        """The compiled-on-first-use ``ElementwiseKernel`` of ``KERNEL_SPECS[name]``."""
        k = self._kernels.get(name)
        if k is None:
            spec = KERNEL_SPECS[name]
            k = self._kernels[name] = self.cp.ElementwiseKernel(
                spec.in_params, spec.out_params, spec.operation, spec.name, preamble=kernel_sources.preamble()
            )
        return k

    # -- arrays ------------------------------------------------------------------
    def owns(self, a: object) -> bool:
        return isinstance(a, self.cp.ndarray)

    def to_numpy(self, a: Array) -> np.ndarray:
        return self.cp.asnumpy(a)

    def from_numpy(self, a: np.ndarray) -> Array:
        # cupy.array(copy=True), not asarray: with CUPY_ENABLE_UMP=1 on HMM/ATS systems asarray is
        # zero-copy, and the device array would alias the caller's memory.
        return self.cp.array(np.ascontiguousarray(a), copy=True)

    def synchronize(self) -> None:
        self.cp.cuda.runtime.deviceSynchronize()

    def device_timer(self) -> Callable[[Callable[[], Any], int], list[float]]:
        def time_calls(run: Callable[[], Any], n: int) -> list[float]:
            """Device seconds of each of ``n`` calls of ``run`` (CUDA events around each call)."""
            from cupyx.profiler import benchmark

            repeats = int(n)  # benchmark refuses anything but a Python int (a NumPy integer too)
            if repeats < 1:
                raise ValueError(f"n: expected at least one timed call, got {n!r}")
            # benchmark reads func.__name__ unless given a name: a bound method or partial has none.
            name = str(getattr(run, "__name__", None) or type(run).__name__)
            result = benchmark(run, n_repeat=repeats, n_warmup=0, name=name)
            return [float(t) for t in result.gpu_times[0]]

        return time_calls

    def info(self) -> dict[str, Any]:
        rt = self.cp.cuda.runtime
        device = rt.getDevice()
        name = rt.getDeviceProperties(device)["name"]
        info: dict[str, Any] = {
            "backend": self.name,
            "device": name.decode() if isinstance(name, bytes) else str(name),
            "cupy": self.cp.__version__,
            "cuda_runtime": rt.runtimeGetVersion(),
            "cuda_driver": rt.driverGetVersion(),
        }
        try:  # read as attributes: CUDA 13's cudaDeviceProp no longer has the clock fields
            attrs = [rt.deviceGetAttribute(a, device) for a in _PEAK_ATTRIBUTES]
            info.update(device_peak(*attrs))
            info["compute_capability"] = f"{attrs[4]}.{attrs[5]}"
        except Exception as e:  # the roofline is then left to --peak-gflops / --peak-gbps
            info["peak_error"] = f"{type(e).__name__}: {e}"
        return info

    # -- activations -------------------------------------------------------------
    def bias_act_forward(self, z: Array, bias: Array | None, activation: str, out: Array) -> Array:
        if bias is None:
            return self.kernel(f"fcgpu_{activation}_fwd")(z, out)
        return self.kernel(f"fcgpu_bias_{activation}_fwd")(z, bias, out)

    def act_backward(self, y: Array, dy: Array, activation: str, out: Array) -> Array:
        return self.kernel(f"fcgpu_{activation}_bwd")(y, dy, out)

    # -- losses ------------------------------------------------------------------
    def softmax_xent_grad(self, z: Array, lse: Array, labels: Array, scale: float, out: Array) -> Array:
        if labels.ndim == 1:
            return self.kernel("fcgpu_softmax_xent_grad_ids")(z, lse, labels, z.shape[1], scale, out)
        return self.kernel("fcgpu_softmax_xent_grad_probs")(z, lse, labels, scale, out)

    def softmax_xent_step(
        self, z: Array, labels: Array, scale: float, weight: float, count: bool, out: Array, acc: Array
    ) -> Array:
        # One thread per row: log-sum-exp, loss, gradient and correct count in one launch.
        name = "fcgpu_softmax_xent_rows_ids" if labels.ndim == 1 else "fcgpu_softmax_xent_rows_probs"
        self.kernel(name)(z, labels, z.shape[1], scale, weight, bool(count), out, acc, size=z.shape[0])
        return out

    def bce_logits_step(
        self, z: Array, y: Array, scale: float, weight: float, count: bool, out: Array, acc: Array
    ) -> Array:
        self.kernel("fcgpu_bce_logits_step")(z, y, scale, weight, bool(count), out, acc)
        return out

    def mse_step(self, p: Array, y: Array, scale: float, weight: float, out: Array, acc: Array) -> Array:
        self.kernel("fcgpu_mse_step")(p, y, scale, weight, out, acc)
        return out

    def bce_logits_sum(self, z: Array, y: Array) -> Scalar:
        return self.cp.sum(self.kernel("fcgpu_bce_logits_loss")(z, y), dtype=self.cp.float64)

    def bce_logits_grad(self, z: Array, y: Array, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_bce_logits_grad")(z, y, scale, out)

    def bce_prob_sum(self, p: Array, y: Array, eps: float) -> Scalar:
        return self.cp.sum(self.kernel("fcgpu_bce_prob_loss")(p, y, eps), dtype=self.cp.float64)

    def bce_prob_grad(self, p: Array, y: Array, eps: float, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_bce_prob_grad")(p, y, eps, scale, out)

    def mse_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_mse_grad")(p, y, scale, out)

    # -- optimizers --------------------------------------------------------------
    def sgd_update(self, param, grad, buf, lr, momentum, weight_decay, nesterov) -> None:
        if momentum:
            self.kernel("fcgpu_sgd_momentum")(grad, lr, momentum, weight_decay, bool(nesterov), param, buf)
        else:
            self.kernel("fcgpu_sgd")(grad, lr, weight_decay, param)

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled) -> None:
        step_size, bc2_sqrt = self.adam_bias_corrections(lr, beta1, beta2, step)
        # 1 - beta and 1 - lr*wd in double here, as PyTorch (and the NumPy backend) compute them.
        self.kernel("fcgpu_adam")(
            grad, beta1, beta2, 1.0 - beta1, 1.0 - beta2, eps, weight_decay, 1.0 - lr * weight_decay,
            step_size, bc2_sqrt, bool(decoupled), param, m, v,
        )
