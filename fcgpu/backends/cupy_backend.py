"""The CuPy backend: cuBLAS GEMMs through ``cupy.matmul`` and fcgpu's own elementwise kernels.

Every kernel's arithmetic lives in ``kernels/*.cuh``; this module only declares the
``cupy.ElementwiseKernel`` signatures (``KERNEL_SPECS``), builds each kernel on first use
and caches it. The module object is injected, so the same code runs against the real CuPy
or against ``fcgpu.testing.fake_cupy`` on a machine without a GPU.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import numpy as np

from .. import kernel_sources
from ..activations import ACTIVATIONS
from . import philox
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
        if act.rows:
            # One thread per row (size=B): i is the row of the C-ordered (B, ncols) arrays.
            specs += [
                KernelSpec(f"fcgpu_bias_{act.name}_fwd", "raw T z, raw T b, int64 ncols", "raw T y",
                           f"{f}::row_forward<T>(z, b, true, y, i, ncols)"),
                KernelSpec(f"fcgpu_{act.name}_fwd", "raw T z, int64 ncols", "raw T y",
                           f"{f}::row_forward<T>(z, z, false, y, i, ncols)"),
                KernelSpec(f"fcgpu_{act.name}_bwd", "raw T y, raw T dy, int64 ncols", "raw T dz",
                           f"{f}::row_backward<T>(y, dy, dz, i, ncols)"),
            ]
            continue
        specs += [
            KernelSpec(f"fcgpu_bias_{act.name}_fwd", "T z, T b", "T y", f"y = fc_bias_act_forward<{f}>(z, b)"),
            KernelSpec(f"fcgpu_{act.name}_fwd", "T z", "T y", f"y = fc_act_forward<{f}>(z)"),
            KernelSpec(f"fcgpu_{act.name}_bwd", "T y, T dy", "T dz", f"dz = fc_act_backward<{f}>(y, dy)"),
        ]
        if act.backward_from == "z":  # two outputs: s = z + b, which backward reads, and y = act(s)
            specs.append(KernelSpec(f"fcgpu_bias_{act.name}_fwd_keep", "T z, T b", "T s, T y",
                                    f"fc_bias_act_forward_keep<{f}>(z, b, s, y)"))
        else:  # fused with a Dropout after the Dense: the mask as fcgpu_dropout draws it
            mask = "uint64 seed, uint64 step, int64 offset, uint32 threshold, float64 scale"
            index = "(unsigned long long)(offset + i)"
            specs += [
                KernelSpec(f"fcgpu_bias_{act.name}_dropout_fwd", f"T z, T b, bool has_bias, {mask}", "T y, T yd",
                           f"fc_bias_act_dropout_forward<{f}>(z, b, has_bias, y, yd, seed, step, {index}, "
                           f"threshold, scale)"),
                KernelSpec(f"fcgpu_{act.name}_dropout_bwd", f"T y, T dyd, {mask}", "T dz",
                           f"dz = fc_act_dropout_backward<{f}>(y, dyd, seed, step, {index}, threshold, scale)"),
            ]
    # Dropout, forward on x and backward on dy: element i is element offset + i of the batch, its
    # mask bit drawn from (seed, step, offset + i) by Philox both times (kernels/random.cuh).
    specs.append(KernelSpec(
        "fcgpu_dropout",
        "T x, uint64 seed, uint64 step, int64 offset, uint32 threshold, float64 scale",
        "T y",
        "y = fc_dropout(x, seed, step, (unsigned long long)(offset + i), threshold, scale)",
    ))
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
        KernelSpec("fcgpu_mae_grad", "T p, T y, float64 scale", "T dp", "dp = fc_mae_grad(p, y, scale)"),
        KernelSpec(
            "fcgpu_mae_step",
            "T p, T y, float64 scale, float64 weight",
            "T dp, raw float64 acc",
            "dp = fc_mae_step(p, y, scale, weight, &acc[0])",
        ),
        KernelSpec(
            "fcgpu_huber_grad", "T p, T y, float64 delta, float64 scale", "T dp", "dp = fc_huber_grad(p, y, delta, scale)"
        ),
        KernelSpec(
            "fcgpu_huber_step",
            "T p, T y, float64 delta, float64 scale, float64 weight",
            "T dp, raw float64 acc",
            "dp = fc_huber_step(p, y, delta, scale, weight, &acc[0])",
        ),
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
        KernelSpec(
            "fcgpu_adagrad",
            "T grad, float64 lr, float64 eps, float64 decay",
            "T p, S acc",
            "fc_adagrad_update(p, acc, grad, lr, eps, decay)",
        ),
        KernelSpec("fcgpu_l1l2_grad", "T w, float64 l1, float64 two_l2", "T g", "fc_l1l2_grad(g, w, l1, two_l2)"),
        KernelSpec("fcgpu_l1l2_terms", "T w, float64 l1, float64 l2", "float64 r", "r = fc_l1l2_term(w, l1, l2)"),
    ]
    # RMSprop with and without the centered average and the momentum buffer: a state a variant does
    # not keep is a local, so no kernel reads or writes an unused buffer.
    for centered in (False, True):
        for momentum in (False, True):
            outs = "T p, S v" + (", S mg" if centered else "") + (", S mom" if momentum else "")
            local = "".join(f"S {n} = S(0); " for n, kept in (("mg", centered), ("mom", momentum)) if not kept)
            specs.append(KernelSpec(
                "fcgpu_rmsprop" + ("_centered" if centered else "") + ("_momentum" if momentum else ""),
                "T grad, float64 lr, float64 rho, float64 one_minus_rho, float64 momentum, float64 eps, float64 decay",
                outs,
                f"{local}fc_rmsprop_update(p, v, mg, mom, grad, lr, rho, one_minus_rho, momentum, eps, decay, "
                f"{'true' if centered else 'false'}, {'true' if momentum else 'false'})",
            ))
    specs += [variant for spec in specs if spec.name in _UPDATE_KERNELS for variant in _mixed_variants(spec)]
    return {s.name: s for s in specs}


# The optimizer updates, each also in two variants for mixed precision (``_mixed_variants``).
_UPDATE_KERNELS = ("fcgpu_sgd", "fcgpu_sgd_momentum", "fcgpu_adam", "fcgpu_adagrad") + tuple(
    "fcgpu_rmsprop" + c + m for c in ("", "_centered") for m in ("", "_momentum")
)


def _mixed_variants(spec: KernelSpec) -> list[KernelSpec]:
    """``<name>_unscaled``: the gradient multiplied by ``unscale`` (1/loss scale) as it is read;
    ``<name>_mixed``: that, and the parameter's half copy ``ph`` (type H) written in the same pass,
    so a mixed-precision step casts the master weights once, here, and nowhere else."""
    operation = re.sub(r"\bgrad\b", "fc_unscaled(grad, unscale)", spec.operation)
    in_params = spec.in_params + ", float64 unscale"
    return [
        KernelSpec(spec.name + "_unscaled", in_params, spec.out_params, operation),
        KernelSpec(spec.name + "_mixed", in_params, spec.out_params + ", H ph", f"{operation}; ph = H(p)"),
    ]


KERNEL_SPECS: dict[str, KernelSpec] = _specs()

# cudaDeviceAttr: clock rate (kHz), SM count, memory clock (kHz), bus width (bits), compute capability.
_PEAK_ATTRIBUTES = (13, 16, 36, 37, 75, 76)


class CupyBackend(Backend):
    name = "cupy"
    dlpack_device_type = 2  # kDLCUDA

    def __init__(self, cupy_module: ModuleType | None = None) -> None:
        if cupy_module is None:
            import cupy as cupy_module  # noqa: PLC0415 - only where a device was found usable
        self.xp = self.cp = cupy_module
        self._kernels: dict[str, Any] = {}
        if getattr(cupy_module, "__name__", "") == "cupy":  # the real CuPy has read CUPY_TF32 by now
            from ..mixed_precision import note_gemm

            note_gemm()

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
    def bias_act_forward(
        self, z: Array, bias: Array | None, activation: str, out: Array, keep: Array | None = None
    ) -> Array:
        if ACTIVATIONS[activation].rows:
            ncols = z.shape[-1]
            if bias is None:
                return self.kernel(f"fcgpu_{activation}_fwd")(z, ncols, out, size=z.size // ncols)
            return self.kernel(f"fcgpu_bias_{activation}_fwd")(z, bias, ncols, out, size=z.size // ncols)
        if keep is not None:
            # z + b into keep (may be z) for a backward from z; without a bias z itself is kept.
            if bias is not None:
                self.kernel(f"fcgpu_bias_{activation}_fwd_keep")(z, bias, keep, out)
                return out
            if keep is not z:
                self.cp.copyto(keep, z)
        if bias is None:
            return self.kernel(f"fcgpu_{activation}_fwd")(z, out)
        return self.kernel(f"fcgpu_bias_{activation}_fwd")(z, bias, out)

    def act_backward(self, y: Array, dy: Array, activation: str, out: Array) -> Array:
        # y is what the forward pass kept: the output, or z + b for an entry with backward_from "z".
        if ACTIVATIONS[activation].rows:
            ncols = y.shape[-1]
            return self.kernel(f"fcgpu_{activation}_bwd")(y, dy, ncols, out, size=y.size // ncols)
        return self.kernel(f"fcgpu_{activation}_bwd")(y, dy, out)

    # -- dropout -----------------------------------------------------------------
    def bias_act_dropout_forward(self, z, bias, activation, out, dropped, seed, step, rate, offset=0):
        threshold, scale = philox.dropout_constants(rate)
        b = bias if bias is not None else z[..., :1]  # unread without a bias; any array of z's type
        self.kernel(f"fcgpu_bias_{activation}_dropout_fwd")(
            z, b, bias is not None, np.uint64(seed), np.uint64(step), np.int64(offset), np.uint32(threshold), scale,
            out, dropped,
        )
        return dropped

    def act_dropout_backward(self, y, dy, activation, out, seed, step, rate, offset=0):
        threshold, scale = philox.dropout_constants(rate)
        return self.kernel(f"fcgpu_{activation}_dropout_bwd")(
            y, dy, np.uint64(seed), np.uint64(step), np.int64(offset), np.uint32(threshold), scale, out
        )

    def dropout_forward(self, x: Array, out: Array, seed: int, step: int, rate: float, offset: int = 0) -> Array:
        threshold, scale = philox.dropout_constants(rate)
        # NumPy scalars of the parameters' types: a Python int above 2**63 has no CuPy scalar type.
        return self.kernel("fcgpu_dropout")(
            x, np.uint64(seed), np.uint64(step), np.int64(offset), np.uint32(threshold), scale, out
        )

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

    def mae_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_mae_grad")(p, y, scale, out)

    def mae_step(self, p: Array, y: Array, scale: float, weight: float, out: Array, acc: Array) -> Array:
        self.kernel("fcgpu_mae_step")(p, y, scale, weight, out, acc)
        return out

    def huber_grad(self, p: Array, y: Array, delta: float, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_huber_grad")(p, y, delta, scale, out)

    def huber_step(
        self, p: Array, y: Array, delta: float, scale: float, weight: float, out: Array, acc: Array
    ) -> Array:
        self.kernel("fcgpu_huber_step")(p, y, delta, scale, weight, out, acc)
        return out

    # -- optimizers --------------------------------------------------------------
    # ``half``: the parameter's half copy, written in the same pass (the ``_mixed`` kernels);
    # ``unscale``: 1/loss scale, applied to the gradient as it is read (``_unscaled``, ``_mixed``).
    def _launch_update(self, name: str, ins: tuple, outs: tuple, half: Array | None, unscale: float) -> None:
        if half is not None:
            self.kernel(name + "_mixed")(*ins, float(unscale), *outs, half)
        elif unscale != 1.0:
            self.kernel(name + "_unscaled")(*ins, float(unscale), *outs)
        else:
            self.kernel(name)(*ins, *outs)

    def sgd_update(self, param, grad, buf, lr, momentum, weight_decay, nesterov, *, half=None, unscale=1.0) -> None:
        if momentum:
            ins = (grad, lr, momentum, weight_decay, bool(nesterov))
            self._launch_update("fcgpu_sgd_momentum", ins, (param, buf), half, unscale)
        else:
            self._launch_update("fcgpu_sgd", (grad, lr, weight_decay), (param,), half, unscale)

    def adam_update(
        self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, *, half=None, unscale=1.0
    ) -> None:
        step_size, bc2_sqrt = self.adam_bias_corrections(lr, beta1, beta2, step)
        # 1 - beta and 1 - lr*wd in double here, as PyTorch (and the NumPy backend) compute them.
        ins = (grad, beta1, beta2, 1.0 - beta1, 1.0 - beta2, eps, weight_decay, 1.0 - lr * weight_decay,
               step_size, bc2_sqrt, bool(decoupled))
        self._launch_update("fcgpu_adam", ins, (param, m, v), half, unscale)

    def rmsprop_update(self, param, grad, v, mg, mom, lr, rho, momentum, eps, weight_decay, *, half=None, unscale=1.0) -> None:
        name = "fcgpu_rmsprop" + ("_centered" if mg is not None else "") + ("_momentum" if mom is not None else "")
        states = tuple(s for s in (v, mg, mom) if s is not None)
        # 1 - rho and Keras's decoupled decay 1 - lr*wd in double here, as the NumPy backend has them.
        ins = (grad, lr, rho, 1.0 - rho, momentum, eps, 1.0 - lr * weight_decay)
        self._launch_update(name, ins, (param, *states), half, unscale)

    def adagrad_update(self, param, grad, acc, lr, eps, weight_decay, *, half=None, unscale=1.0) -> None:
        self._launch_update("fcgpu_adagrad", (grad, lr, eps, 1.0 - lr * weight_decay), (param, acc), half, unscale)

    # -- regularizers ------------------------------------------------------------
    def l1l2_grad(self, grad: Array, param: Array, l1: float, l2: float) -> Array:
        self.kernel("fcgpu_l1l2_grad")(param, l1, 2.0 * l2, grad)
        return grad

    def l1l2_penalty(self, param: Array, l1: float, l2: float) -> Scalar:
        # One pass of float64 terms, one reduction: no per-element atomics on a single address.
        return self.cp.sum(self.kernel("fcgpu_l1l2_terms")(param, l1, l2))

    # -- data parallel (fcgpu.distributed): NCCL between GPUs --------------------------------
    def use_device(self, index: int) -> None:
        self.cp.cuda.Device(int(index)).use()

    def allreduce_sum(self, buffer: Array, comm: Any, weight: float = 1.0) -> Array:
        # One scaling kernel where the weight is not 1, then one NCCL all-reduce in place, both
        # on the current (compute) stream: the update that follows waits for neither on the host.
        if weight != 1.0:
            buffer *= weight
        nccl = self.nccl_module()
        pointer = _device_pointer(buffer, "allreduce_sum")
        self._nccl(comm).allReduce(
            pointer, pointer, buffer.size, _nccl_type(nccl, buffer.dtype), nccl.NCCL_SUM, self._stream()
        )
        return buffer

    def broadcast(self, buffer: Array, comm: Any, root: int = 0) -> Array:
        nccl = self.nccl_module()
        pointer = _device_pointer(buffer, "broadcast")
        self._nccl(comm).broadcast(pointer, pointer, buffer.size, _nccl_type(nccl, buffer.dtype), root, self._stream())
        return buffer

    def nccl_module(self) -> ModuleType:
        """``cupy.cuda.nccl``, imported as ``from cupy.cuda import nccl`` does: ``import cupy`` loads
        no such attribute (CuPy 14.2's ``cupy/cuda/__init__.py`` neither imports nor lazily serves it)."""
        return importlib.import_module(f"{self.cp.__name__}.cuda.nccl")

    def _stream(self) -> int:
        return self.cp.cuda.get_current_stream().ptr

    def _nccl(self, comm: Any) -> Any:
        """This backend's NCCL communicator over ``comm``'s ranks, made on first use (collectively:
        rank 0's unique id travels over MPI, no CUDA-aware MPI needed) and kept with ``comm``."""
        key = ("nccl", id(self))
        nccl_comm = comm.attachments.get(key)
        if nccl_comm is None:
            nccl = self.nccl_module()
            if not getattr(nccl, "available", True):
                raise RuntimeError("data parallel on the cupy backend needs NCCL: pip install nvidia-nccl-cu12 (or -cu13)")
            uid = comm.bcast_object(nccl.get_unique_id() if comm.rank == 0 else None)
            nccl_comm = comm.attachments[key] = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        return nccl_comm


# NCCL's element types by NumPy dtype name (cupy.cuda.nccl's constants).
_NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64", "bfloat16": "NCCL_BFLOAT16"}


def _nccl_type(nccl: Any, dtype: Any) -> int:
    name = _NCCL_TYPES.get(np.dtype(dtype).name)
    if name is None or not hasattr(nccl, name):
        raise TypeError(f"NCCL collectives: no NCCL type for dtype {np.dtype(dtype).name}")
    return getattr(nccl, name)


def _device_pointer(a: Array, what: str) -> int:
    """The device address of contiguous array ``a`` (``__cuda_array_interface__``'s data)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{what}: NCCL needs a contiguous buffer, got strides {a.strides}")
    return int(a.__cuda_array_interface__["data"][0])
