"""The CuPy backend: cuBLAS GEMMs through ``cupy.matmul`` and fcgpu's own elementwise kernels.

Every kernel's arithmetic lives in ``kernels/*.cuh``; ``kernel_specs`` declares the
``cupy.ElementwiseKernel`` signatures (``KERNEL_SPECS``); this module builds each kernel on first use
and caches it. The module object is injected, so the same code runs against the real CuPy
or against ``fcgpu.testing.fake_cupy`` on a machine without a GPU.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any, Callable

import numpy as np

from . import kernel_sources
from ...activations.table import ACTIVATIONS
from .. import philox
from .device_specs import device_peak
from ..base import Array, Backend, Scalar
from .capture_ops import CaptureOps
from .layer_ops import CupyLayerOps
from .updates import CupyUpdates
from ..dtypes import is_bfloat16
from .kernel_specs import KERNEL_SPECS, KernelSpec
from .gemm import GemmLauncher
from ..buffers import Buffers
from .fused_mlp import FusedMlpLauncher
from .fused_mlp import eligible as fused_eligible

__all__ = ["KERNEL_SPECS", "CupyBackend", "KernelSpec"]


# cudaDeviceAttr: clock rate (kHz), SM count, memory clock (kHz), bus width (bits), compute capability.
_PEAK_ATTRIBUTES = (13, 16, 36, 37, 75, 76)


class CupyBackend(CaptureOps, CupyUpdates, CupyLayerOps, Backend):
    name = "cupy"
    dlpack_device_type = 2  # kDLCUDA

    def __init__(self, cupy_module: ModuleType | None = None) -> None:
        if cupy_module is None:
            import cupy as cupy_module  # noqa: PLC0415 - only where a device was found usable
        self.xp = self.cp = cupy_module
        self._kernels: dict[str, Any] = {}
        self._grid_work: dict[int, tuple[Array, Array]] = {}  # grid-reduced launches' partials and ticket
        self._finite_flags: dict[tuple[int, int], Array] = {}  # all_finite's result, one per buffer
        self._unit: Array | None = None  # a float64 1: the loss steps' gscale without a loss scale
        self._own_gemm: GemmLauncher | None = None
        self._workspaces = Buffers()  # graph mode: the split-K weight gradients' partials, by size
        if getattr(cupy_module, "__name__", "") == "cupy":  # the real CuPy has read CUPY_TF32 by now
            from ...mixed_precision import note_gemm

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
    @staticmethod
    def _check_dtype(dtype: Any) -> None:
        if is_bfloat16(dtype):
            from ...mixed_precision import cupy_bfloat16_problem

            problem = cupy_bfloat16_problem()
            if problem:
                raise TypeError(problem)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Array:
        self._check_dtype(dtype)
        return self.cp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        self._check_dtype(dtype)
        return self.cp.zeros(shape, dtype=dtype)

    def owns(self, a: object) -> bool:
        return isinstance(a, self.cp.ndarray)

    def to_numpy(self, a: Array) -> np.ndarray:
        return self.cp.asnumpy(a)

    def from_numpy(self, a: np.ndarray) -> Array:
        # cupy.array(copy=True), not asarray: with CUPY_ENABLE_UMP=1 on HMM/ATS systems asarray is
        # zero-copy, and the device array would alias the caller's memory.
        self._check_dtype(a.dtype)
        return self.cp.array(np.ascontiguousarray(a) if a.ndim else a, copy=True)  # 0-d stays 0-d

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

    # -- GEMMs -------------------------------------------------------------------
    @property
    def own_gemm(self) -> GemmLauncher:
        """fcgpu's own GEMM kernels (``gemm.GemmLauncher``: dense_forward, input_grad, weight_grad),
        for a step captured as a CUDA graph, where cuBLAS cannot run. The default path keeps cuBLAS."""
        if self._own_gemm is None:
            self._own_gemm = GemmLauncher(self.cp)
        return self._own_gemm

    @functools.cached_property
    def fused_mlp(self) -> FusedMlpLauncher:
        """The whole forward of a chain of small Dense layers (widths <= 128) in one kernel
        (``fused_mlp.FusedMlpLauncher``): predict's and evaluate's captured graphs run it."""
        return FusedMlpLauncher(self.cp)

    def fuses_chain(self, widths: Any, activations: Any, dtype: Any) -> bool:
        """Whether the forward of a chain of Dense layers (``widths``: the input's, then each
        layer's; their ``activations``) runs as one fused kernel here: real CuPy (RawModule) and
        ``fused_mlp.eligible``."""
        return self.own_capture_gemms and fused_eligible(widths, activations, dtype) is None

    def matmul_at_b(self, a: Array, b: Array, out: Array) -> Array:
        # A float32 weight gradient of half a and b (mixed precision): cupy.matmul would compute it
        # in half and copy (CuPy 14.2, _core/_routines_linalg.pyx, matmul: the product takes
        # numpy.promote_types(a.dtype, b.dtype); another out dtype gets elementwise_copy), rounding
        # the gradient to half (inf above 65504 under loss scaling) and costing a kernel and a
        # temporary. cublasGemmEx takes half operands, float32 compute and a float32 C instead.
        if self._graph_step is not None:  # graph mode (CaptureOps): no cuBLAS
            return self.gemm_for_capture()(a, b, out, trans_a=True)
        if out.dtype == a.dtype:
            return self.cp.matmul(a.T, b, out=out)
        return self._gemm_at_b_wide(a, b, out)

    def _gemm_at_b_wide(self, a: Array, b: Array, out: Array) -> Array:
        """out (M, N) float32 = a.T @ b for float16 or bfloat16 a (B, M), b (B, N), all C-ordered: in
        column-major terms out.T (N, M) = b.T (N, B, ld N) @ op_T(a.T (M, B), ld M), one gemmEx."""
        if a.dtype != b.dtype or out.dtype != np.float32 or a.dtype.name not in _CUDA_TYPES:
            raise TypeError(f"matmul_at_b: {a.dtype} x {b.dtype} into {out.dtype} is not a mixed-precision GEMM")
        cuda = self.cp.cuda
        cublas, rt = cuda.cublas, cuda.runtime
        (batch, m), n = a.shape, b.shape[1]
        in_type = getattr(rt, _CUDA_TYPES[a.dtype.name])
        pa, pb = _device_pointer(a, "matmul_at_b"), _device_pointer(b, "matmul_at_b")
        pc = _device_pointer(out, "matmul_at_b")
        handle = cuda.device.get_cublas_handle()
        mode = cublas.getPointerMode(handle)
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        try:
            cublas.gemmEx(
                handle, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T, n, m, batch,
                _ONE_F32.ctypes.data, pb, in_type, max(1, n), pa, in_type, max(1, m),
                _ZERO_F32.ctypes.data, pc, rt.CUDA_R_32F, max(1, n), cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_GEMM_DEFAULT,
            )
        finally:
            cublas.setPointerMode(handle, mode)
        return out

    # -- activations -------------------------------------------------------------
    def bias_act_forward(
        self, z: Array, bias: Array | None, activation: str, out: Array, keep: Array | None = None
    ) -> Array:
        if ACTIVATIONS[activation].rows:
            ncols = z.shape[-1]
            size = _WARP * (z.size // ncols)  # one warp a row (kernels/blocks.cuh)
            if bias is None:
                return self.kernel(f"fcgpu_{activation}_fwd")(z, ncols, out, size=size)
            return self.kernel(f"fcgpu_bias_{activation}_fwd")(z, bias, ncols, out, size=size)
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
            return self.kernel(f"fcgpu_{activation}_bwd")(y, dy, ncols, out, size=_WARP * (y.size // ncols))
        return self.kernel(f"fcgpu_{activation}_bwd")(y, dy, out)

    # -- dropout -----------------------------------------------------------------
    def bias_act_dropout_forward(self, z, bias, activation, out, dropped, seed, step, rate, offset=0):
        threshold, scale = philox.dropout_constants(rate)
        b = bias if bias is not None else z[..., :1]  # unread without a bias; any array of z's type
        if self._graph_step is not None:  # graph mode (CaptureOps): the step + the device counter
            self.graph_dropout(f"fcgpu_bias_{activation}_dropout_fwd", (z, b, bias is not None), seed, step,
                               (np.int64(offset), np.uint32(threshold), scale, out, dropped))
            return dropped
        self.kernel(f"fcgpu_bias_{activation}_dropout_fwd")(
            z, b, bias is not None, np.uint64(seed), np.uint64(step), np.int64(offset), np.uint32(threshold), scale,
            out, dropped,
        )
        return dropped

    def act_dropout_backward(self, y, dy, activation, out, seed, step, rate, offset=0):
        threshold, scale = philox.dropout_constants(rate)
        if self._graph_step is not None:
            return self.graph_dropout(f"fcgpu_{activation}_dropout_bwd", (y, dy), seed, step,
                                      (np.int64(offset), np.uint32(threshold), scale, out))
        return self.kernel(f"fcgpu_{activation}_dropout_bwd")(
            y, dy, np.uint64(seed), np.uint64(step), np.int64(offset), np.uint32(threshold), scale, out
        )

    def dropout_forward(self, x: Array, out: Array, seed: int, step: int, rate: float, offset: int = 0) -> Array:
        threshold, scale = philox.dropout_constants(rate)
        if self._graph_step is not None:
            return self.graph_dropout("fcgpu_dropout", (x,), seed, step, (np.int64(offset), np.uint32(threshold), scale, out))
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
        self, z: Array, labels: Array, scale: float, weight: float, count: bool, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        # One warp per row: log-sum-exp, loss, gradient and correct count in one launch.
        name = "fcgpu_softmax_xent_rows_ids" if labels.ndim == 1 else "fcgpu_softmax_xent_rows_probs"
        self.kernel(name)(z, labels, z.shape[1], scale, weight, bool(count), self._gscale(gscale),
                          *self._row_weights(sample_weight), out, acc, size=_WARP * z.shape[0])
        return out

    def _row_weights(self, sample_weight: Array | None) -> tuple[Array, bool]:
        """(the rows' weights, whether to read them): a kernel's ``sw, weighted`` arguments."""
        if sample_weight is None:
            return self._gscale(None), False  # any float array: not read
        return sample_weight, True

    def _gscale(self, gscale: Array | None) -> Array:
        """The device factor of a loss step's gradient scale: ``gscale``, or a float64 1 made once."""
        if gscale is not None:
            return gscale
        if self._unit is None:
            self._unit = self.cp.ones(1, np.float64)
        return self._unit

    def _grid(self, n: int) -> tuple[int, tuple[Array, Array]]:
        """(blocks, (partials, ticket)) of a grid-reduced launch over n elements; the workspace per
        block count is allocated once (the ticket starts at zero; the last block leaves it at zero)."""
        blocks = loss_grid_blocks(n)
        return blocks, self._grid_work_of(blocks)

    def _grid_work_of(self, blocks: int) -> tuple[Array, Array]:
        work = self._grid_work.get(blocks)
        if work is None:
            work = self._grid_work[blocks] = (self.cp.zeros(2 * blocks, np.float64), self.cp.zeros(1, np.uint32))
        return work

    def all_finite(self, a: Array) -> Scalar:
        # One launch (kernels/blocks.cuh, fc_all_finite_grid) instead of isfinite and all. The 0-d
        # result is this buffer's own, rewritten by the next call on it: read it before.
        if not a.flags.c_contiguous:
            return super().all_finite(a)
        blocks, work = self._grid(a.size)
        key = (id(a), a.size)
        ok = self._finite_flags.get(key)
        if ok is None:
            ok = self._finite_flags[key] = self.cp.zeros(1, np.bool_)
        self.kernel("fcgpu_all_finite")(a, a.size, ok, *work, size=blocks * LOSS_BLOCK, block_size=LOSS_BLOCK)
        return ok.reshape(())  # a 0-d device array, as a reduction gives

    def _loss_grid(
        self, name: str, p: Array, y: Array, params: tuple, out: Array, acc: Array, gscale: Array | None,
        sample_weight: Array | None = None,
    ) -> bool:
        """One launch of an elementwise loss step over contiguous p, y, out of one shape (False
        otherwise): the sums reduced per block into ``partials`` and added in block order
        (kernels/blocks.cuh, fc_loss_grid); a workspace per block count, allocated once."""
        if not (p.shape == y.shape == out.shape and p.flags.c_contiguous and y.flags.c_contiguous
                and out.flags.c_contiguous):
            return False
        blocks, work = self._grid(p.size)
        cols = p.shape[-1] if p.ndim == 2 else 1  # element e is in row e / cols
        self.kernel(name)(p, y, p.size, *params, self._gscale(gscale), *self._row_weights(sample_weight), cols, out, acc,
                          *work, size=blocks * LOSS_BLOCK, block_size=LOSS_BLOCK)
        return True

    def bce_logits_step(
        self, z: Array, y: Array, scale: float, weight: float, count: bool, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        if not self._loss_grid("fcgpu_bce_logits_step", z, y, (scale, weight, bool(count)), out, acc, gscale,
                               sample_weight):
            return super().bce_logits_step(z, y, scale, weight, count, out, acc, gscale=gscale,
                                           sample_weight=sample_weight)
        return out

    def mse_step(self, p, y, scale, weight, out, acc, *, gscale=None, sample_weight=None) -> Array:
        if not self._loss_grid("fcgpu_mse_step", p, y, (scale, weight), out, acc, gscale, sample_weight):
            return super().mse_step(p, y, scale, weight, out, acc, gscale=gscale, sample_weight=sample_weight)
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

    def mae_step(self, p, y, scale, weight, out, acc, *, gscale=None, sample_weight=None) -> Array:
        if not self._loss_grid("fcgpu_mae_step", p, y, (scale, weight), out, acc, gscale, sample_weight):
            return super().mae_step(p, y, scale, weight, out, acc, gscale=gscale, sample_weight=sample_weight)
        return out

    def huber_grad(self, p: Array, y: Array, delta: float, scale: float, out: Array) -> Array:
        return self.kernel("fcgpu_huber_grad")(p, y, delta, scale, out)

    def huber_step(
        self, p: Array, y: Array, delta: float, scale: float, weight: float, out: Array, acc: Array,
        *, gscale: Array | None = None, sample_weight: Array | None = None,
    ) -> Array:
        if not self._loss_grid("fcgpu_huber_step", p, y, (delta, scale, weight), out, acc, gscale, sample_weight):
            return super().huber_step(p, y, delta, scale, weight, out, acc, gscale=gscale, sample_weight=sample_weight)
        return out

    # -- optimizers: the updates are CupyUpdates's --------------------------------------
    def clip_factors(self, grads, segments, factors, clipnorm, per_variable, *, unscale=1.0, guard=None) -> None:
        # One launch a gradient buffer, one block a segment (kernels/optimizers.cuh, fc_clip_norms_grid).
        base = 0
        for k, (g, segs) in enumerate(zip(grads, segments)):
            nseg = segs.size // 2
            work = self._grid_work_of(nseg)
            ls = guard if guard is not None else factors
            self.kernel("fcgpu_clip_norms")(
                g, segs, base, float(clipnorm), bool(per_variable), k == 0, k == len(grads) - 1, float(unscale), ls,
                guard is not None, factors, *work, size=nseg * LOSS_BLOCK, block_size=LOSS_BLOCK,
            )
            base += nseg

    def loss_scale_check(self, grads, state, growth, lr=0.0, beta1=0.0, beta2=0.0) -> None:
        # One launch a gradient buffer (kernels/optimizers.cuh, fc_loss_scale_check_grid); the last
        # one applies the scale's rules into state, on the device.
        for k, g in enumerate(grads):
            if not g.flags.c_contiguous:
                raise ValueError("loss_scale_check: gradient buffers must be contiguous")
            blocks, work = self._grid(g.size)
            self.kernel("fcgpu_loss_scale_check")(
                g, g.size, k == 0, k == len(grads) - 1, float(growth), float(lr), float(beta1), float(beta2),
                state, *work, size=blocks * LOSS_BLOCK, block_size=LOSS_BLOCK,
            )

    # -- regularizers ------------------------------------------------------------
    def l1l2_grad(self, grad: Array, param: Array, l1: float, l2: float, *, gscale: Array | None = None) -> Array:
        self.kernel("fcgpu_l1l2_grad")(param, l1, 2.0 * l2, self._gscale(gscale), grad)
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


# kernels/blocks.cuh: a warp's lanes (FC_WARP) and the loss steps' block (FC_LOSS_BLOCK).
_WARP = 32
LOSS_BLOCK = 256
_MAX_LOSS_BLOCKS = 1024


def loss_grid_blocks(n: int) -> int:
    """Blocks of the loss-step kernels for n elements: a block per LOSS_BLOCK elements, at most
    _MAX_LOSS_BLOCKS (threads then take several elements), at least 1. Fixed by n, so the sum's
    order, and its rounding, is the same on every call."""
    return max(1, min(_MAX_LOSS_BLOCKS, -(-int(n) // LOSS_BLOCK)))


# cudaDataType of the half operands of _gemm_at_b_wide (cupy.cuda.runtime's constants), and its
# float32 alpha = 1 and beta = 0, read by cuBLAS from host memory (CUBLAS_POINTER_MODE_HOST).
_CUDA_TYPES = {"float16": "CUDA_R_16F", "bfloat16": "CUDA_R_16BF"}
_ONE_F32 = np.ones(1, np.float32)
_ZERO_F32 = np.zeros(1, np.float32)

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
