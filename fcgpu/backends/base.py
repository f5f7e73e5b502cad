"""The method set every backend implements.

Layers, losses, optimizers and the model call only these methods, so nothing outside
``fcgpu.backends`` knows which array library runs underneath. Shapes use B (batch),
M (input features), N (units), C (classes). Methods named ``*_update`` and those taking
``out`` write in place and return ``out``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any, Callable

import numpy as np

from .dtypes import is_half_dtype, is_numeric_dtype
from .dense_ops import DenseOps
from .layer_ops import LayerOps
from .steps import FusedSteps

Array = Any  # numpy.ndarray or cupy.ndarray
# A reduction's result where it was computed: a NumPy scalar on the host, a 0-d array on a GPU.
# Reading it (float(), int()) waits for the device, so training loops add these up and read once.
Scalar = Any


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


class BackendMismatch(TypeError):
    """An array of one backend was handed to another."""


def _dlpack_hint(x: Any, backend: str) -> str:
    """Why a tensor could not cross DLPack, as far as its attributes tell."""
    dtype = str(getattr(x, "dtype", "unknown"))
    if getattr(x, "requires_grad", False):
        return "it requires grad: pass tensor.detach()"
    if "bfloat16" in dtype:
        return f"{backend} cannot take bfloat16 through DLPack: pass tensor.float()"
    return f"its dtype is {dtype}"


class Backend(LayerOps, DenseOps, FusedSteps, ABC):
    name: str
    xp: ModuleType

    #: Whether fit can capture a training step on this backend as a CUDA graph (``graph_mode``), and
    #: whether the graph's GEMMs are fcgpu's own tiled kernels (real CuPy) rather than a plain loop.
    has_graph_mode = False
    own_capture_gemms = False

    def __deepcopy__(self, memo: dict) -> "Backend":
        """The backend itself: a copied model computes on the same backend (and device)."""
        return self

    # -- arrays ------------------------------------------------------------------
    @abstractmethod
    def owns(self, a: object) -> bool:
        """Whether ``a`` is an array of this backend."""

    @abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """A host copy (or the array itself on the NumPy backend)."""

    @abstractmethod
    def from_numpy(self, a: np.ndarray) -> Array:
        """This backend's array with the contents of host array ``a``."""

    #: DLPack's device type of this backend's arrays (kDLCPU = 1, kDLCUDA = 2).
    dlpack_device_type = 1

    def asarray(self, x: object, dtype: Any, argument: str = "x") -> Array:
        """``x`` (host data, an array of this backend, or a DLPack array such as a torch tensor or a
        JAX array) as this backend's array of ``dtype``. A DLPack array of this backend's device is
        taken without a copy; a CPU one on a GPU backend is copied to the device, as NumPy input."""
        dlpack_device = getattr(x, "__dlpack_device__", None)
        if callable(dlpack_device) and not self.owns(x) and not isinstance(x, np.ndarray):
            x = self._from_dlpack(x, int(dlpack_device()[0]), argument)
        if self.owns(x):
            if not is_numeric_dtype(x.dtype):
                raise TypeError(f"{argument}: expected a numeric array, got dtype {x.dtype}")
            return x if x.dtype == dtype else x.astype(dtype)
        foreign = getattr(x, "__cuda_array_interface__", None) is not None or type(x).__module__.split(".")[0] in (
            "cupy",
            "torch",
        )
        if foreign:
            raise BackendMismatch(
                f"{argument}: expected {self._accepted_arrays()}, got a {type(x).__module__}.{type(x).__name__} "
                f"(the layer or model lives on the {self.name} backend); convert the array with "
                f"fcgpu.to_numpy() or move the model with model.to(...)"
            )
        host = np.asarray(x)
        if not is_numeric_dtype(host.dtype):
            raise TypeError(f"{argument}: expected a numeric array, got dtype {host.dtype}")
        return self.from_numpy(host.astype(dtype, copy=False))

    def _from_dlpack(self, x: Any, device_type: int, argument: str) -> Any:
        if device_type not in (1, self.dlpack_device_type):
            raise BackendMismatch(
                f"{argument}: expected {self._accepted_arrays()}, got a {type(x).__module__}.{type(x).__name__} "
                f"on DLPack device type {device_type} (the layer or model lives on the {self.name} backend)"
            )
        try:
            return self.xp.from_dlpack(x) if device_type == self.dlpack_device_type else np.from_dlpack(x)
        except (RuntimeError, TypeError, BufferError, ValueError) as e:
            raise TypeError(f"{argument}: a {type(x).__module__}.{type(x).__name__} could not be read through "
                            f"DLPack ({e}); {_dlpack_hint(x, self.name)}") from None

    def _accepted_arrays(self) -> str:
        return f"a NumPy array or a {self.name} array"

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.zeros(shape, dtype=dtype)

    def copy(self, a: Array, out: Array | None = None) -> Array:
        """``a``'s contents in ``out`` (same shape and dtype), or in a new C-ordered array."""
        if out is None:
            return self.xp.array(a, copy=True, order="C")
        self.xp.copyto(out, a)
        return out

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""

    def device_timer(self) -> Callable[[Callable[[], Any], int], list[float]] | None:
        """A function timing n calls of ``run`` on the device's own clock (seconds each), or None
        where a host clock around the call is right (work that is not queued asynchronously)."""
        return None

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}

    # -- GEMMs -------------------------------------------------------------------
    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """out (B, N) = a (B, M) @ b (M, N)."""
        return self.xp.matmul(a, b, out=out)

    def matmul_at_b(self, a: Array, b: Array, out: Array) -> Array:
        """out (M, N) = a.T @ b for a (B, M), b (B, N): the weight gradient."""
        return self.xp.matmul(a.T, b, out=out)

    def matmul_a_bt(self, a: Array, b: Array, out: Array) -> Array:
        """out (B, M) = a @ b.T for a (B, N), b (M, N): the input gradient."""
        return self.xp.matmul(a, b.T, out=out)

    def sum_rows(self, a: Array, out: Array) -> Array:
        """out (N,) = a (B, N) summed over the batch."""
        return self.xp.sum(a, axis=0, out=out)

    def weight_grads(self, x: Array, dz: Array, dW: Array, db: Array | None) -> None:
        """A Dense's parameter gradients: dW (M, N) = x (B, M).T @ dz (B, N) and, where ``db`` is
        given, db (N,) = dz summed over the batch (the CuPy backend's captured step: one launch)."""
        self.matmul_at_b(x, dz, out=dW)
        if db is not None:
            self.sum_rows(dz, out=db)

    # -- activations -------------------------------------------------------------
    @abstractmethod
    def bias_act_forward(self, z: Array, bias: Array | None, activation: str, out: Array,
                         keep: Array | None = None) -> Array:
        """out (B, N) = act(z + bias); ``out`` may be ``z``; keep (B, N) = z + bias too where given."""

    @abstractmethod
    def act_backward(self, y: Array, dy: Array, activation: str, out: Array) -> Array:
        """out (B, N) = dy * act'(z), from the forward output y = act(z)."""

    # -- dropout (kernels/random.cuh) ---------------------------------------------
    @abstractmethod
    def dropout_forward(self, x: Array, out: Array, seed: int, step: int, rate: float, offset: int = 0) -> Array:
        """out (B, N) = x * mask / (1 - rate); ``out`` may be ``x``. Element e of x (C order) is
        dropped (0) where word ``offset + e`` of the Philox4x32-10 stream of (seed, step) is below
        floor(rate * 2**32) (``philox.dropout_constants``). ``offset`` is the index of x's first
        element in the whole batch (data-parallel: the rank's first row x N), so every sharding
        draws the same mask."""

    def bias_act_dropout_forward(
        self, z: Array, bias: Array | None, activation: str, out: Array, dropped: Array,
        seed: int, step: int, rate: float, offset: int = 0,
    ) -> Array:
        """A Dense's bias + activation and the Dropout after it: out (B, N) = act(z + bias) (out may be
        z; the Dense's backward reads it) and dropped = dropout(out) as ``dropout_forward`` draws it.
        Returns ``dropped``. Shown as the two passes; the CuPy backend runs them as one kernel."""
        self.bias_act_forward(z, bias, activation, out)
        return self.dropout_forward(out, dropped, seed, step, rate, offset)

    def act_dropout_backward(
        self, y: Array, dy: Array, activation: str, out: Array, seed: int, step: int, rate: float, offset: int = 0
    ) -> Array:
        """Its backward: out = act'(from y) * dropout_backward(dy), in one pass on CuPy."""
        masked = self.dropout_backward(dy, self.empty(dy.shape, dy.dtype), seed, step, rate, offset)
        return self.act_backward(y, masked, activation, out)

    def dropout_backward(self, dy: Array, out: Array, seed: int, step: int, rate: float, offset: int = 0) -> Array:
        """out (B, N) = dy * mask / (1 - rate), the mask of ``dropout_forward`` with the same seed,
        step and offset, regenerated rather than stored: the same arithmetic, applied to dy."""
        return self.dropout_forward(dy, out, seed, step, rate, offset)

    # -- losses ------------------------------------------------------------------
    def _widened(self, *arrays: Array) -> list[Array]:
        """float16 and bfloat16 arrays as float32 (others as they are): the kernels compute half in
        float, a float16 difference or sum of squares overflows at 65504, and bfloat16 keeps 8 bits."""
        return [a.astype(self.xp.float32) if a.dtype.itemsize == 2 and is_half_dtype(a.dtype) else a for a in arrays]

    def logsumexp_rows(self, z: Array) -> Array:
        """(B, 1) log(sum(exp(z), axis=1)) in z's dtype, stable for any logit size."""
        xp = self.xp
        (w,) = self._widened(z)
        m = xp.max(w, axis=1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(w.dtype)
        s = xp.sum(xp.exp(w - m), axis=1, keepdims=True)
        return (xp.log(s) + m).astype(z.dtype, copy=False)

    def softmax_xent_sum(self, z: Array, lse: Array, labels: Array) -> Scalar:
        """sum over rows of lse - log-likelihood; labels are class ids (B,) or targets (B, C)."""
        xp = self.xp
        z, lse = self._widened(z, lse)
        if labels.ndim == 1:
            picked = z[xp.arange(z.shape[0]), labels]
            return xp.sum(lse[:, 0] - picked, dtype=xp.float64)
        (labels,) = self._widened(labels)
        # Two sums: lse (B, 1) against labels * z (B, C) would broadcast lse over every class.
        return xp.sum(lse[:, 0] * xp.sum(labels, axis=1), dtype=xp.float64) - xp.sum(labels * z, dtype=xp.float64)

    @abstractmethod
    def softmax_xent_grad(self, z: Array, lse: Array, labels: Array, scale: float, out: Array) -> Array:
        """out (B, C) = (softmax(z) - onehot(labels)) * scale."""

    @abstractmethod
    def bce_logits_sum(self, z: Array, y: Array) -> Scalar:
        """sum of softplus(z) - y*z."""

    @abstractmethod
    def bce_logits_grad(self, z: Array, y: Array, scale: float, out: Array) -> Array:
        """out = (sigmoid(z) - y) * scale."""

    @abstractmethod
    def bce_prob_sum(self, p: Array, y: Array, eps: float) -> Scalar:
        """sum of -(y log p + (1-y) log(1-p)), p clipped to [eps, 1-eps]."""

    @abstractmethod
    def bce_prob_grad(self, p: Array, y: Array, eps: float, scale: float, out: Array) -> Array:
        """out = (p - y) / (p (1 - p)) * scale, p clipped."""

    def mse_sum(self, p: Array, y: Array) -> Scalar:
        """sum of (p - y)**2."""
        p, y = self._widened(p, y)
        d = p - y
        return self.xp.sum(d * d, dtype=self.xp.float64)

    @abstractmethod
    def mse_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        """out = 2 (p - y) * scale."""

    def abs_error_sum(self, p: Array, y: Array) -> Scalar:
        """sum of |p - y| (the mean absolute error's loss and metric)."""
        p, y = self._widened(p, y)
        return self.xp.sum(self.xp.abs(p - y), dtype=self.xp.float64)

    @abstractmethod
    def mae_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        """out = sign(p - y) * scale, sign(0) = 0 (PyTorch's l1_loss)."""

    def huber_sum(self, p: Array, y: Array, delta: float) -> Scalar:
        """sum of 0.5 d**2 where |d| < delta, else delta (|d| - 0.5 delta), d = p - y (PyTorch's huber_loss)."""
        xp = self.xp
        p, y = self._widened(p, y)
        d = p - y
        a = xp.abs(d)
        return xp.sum(xp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)), dtype=xp.float64)

    @abstractmethod
    def huber_grad(self, p: Array, y: Array, delta: float, scale: float, out: Array) -> Array:
        """out = clip(p - y, -delta, delta) * scale."""

    def _class_rows(self, labels: Array, like: Array) -> Array:
        """Class ids (B,) as one-hot rows of ``like``'s shape and dtype; target rows (widened) as they are."""
        if labels.ndim != 1:
            return self._widened(labels)[0]
        rows = self.xp.zeros(like.shape, like.dtype)
        rows[self.xp.arange(like.shape[0]), labels] = 1
        return rows

    def _normalised(self, p: Array, eps: float) -> tuple[Array, Array, Array]:
        """(row sums s (B, 1), q = p / s, q clipped to [eps, 1 - eps]) in the arithmetic type."""
        (p,) = self._widened(p)
        s = self.xp.sum(p, axis=1, keepdims=True)
        q = p / s
        return s, q, self.xp.clip(q, eps, 1 - eps)

    def cce_prob_sum(self, p: Array, labels: Array, eps: float) -> Scalar:
        """Keras's categorical cross-entropy of probability rows p (B, C), summed over rows:
        -sum_c t_c log(clip(p_c / sum(p), eps, 1 - eps)), labels class ids (B,) or targets t (B, C)."""
        xp = self.xp
        _, _, c = self._normalised(p, eps)
        if labels.ndim == 1:
            return -xp.sum(xp.log(c[xp.arange(c.shape[0]), labels]), dtype=xp.float64)
        return -xp.sum(self._class_rows(labels, c) * xp.log(c), dtype=xp.float64)

    def cce_prob_grad(self, p: Array, labels: Array, eps: float, scale: float, out: Array) -> Array:
        """out (B, C) = d cce_prob_sum / dp * scale, through the row normalisation; zero through
        the clip where p / sum(p) was clipped (the clipped loss is flat there, as in Keras)."""
        xp = self.xp
        s, q, c = self._normalised(p, eps)
        g = xp.where((q < eps) | (q > 1 - eps), 0, -self._class_rows(labels, c) / c)
        grad = (g - xp.sum(g * q, axis=1, keepdims=True)) * (scale / s)
        xp.copyto(out, grad.astype(out.dtype, copy=False))
        return out

    # -- metrics -----------------------------------------------------------------
    def count_correct(self, pred: Array, labels: Array, threshold: float | None) -> Scalar:
        """Correct predictions, counted where the arrays live. With a ``threshold`` (binary
        outputs): elements where (pred > threshold) matches (label > 0.5), each output of a
        multi-label row counting on its own as in Keras's binary accuracy. Without: rows of
        pred (B, C) whose argmax is the label (class ids (B,) or one-hot (B, C))."""
        xp = self.xp
        if threshold is None:
            truth = labels if labels.ndim == 1 else xp.argmax(labels, axis=1)
            return xp.count_nonzero(xp.argmax(pred, axis=1) == truth)
        return xp.count_nonzero((pred.reshape(-1) > threshold) == (labels.reshape(-1) > 0.5))

    def count_top_k(self, pred: Array, labels: Array, k: int) -> Scalar:
        """Rows of pred (B, C) whose label (class ids (B,), or the first argmax of one-hot rows)
        is among the k largest, as Keras's in_top_k: fewer than k classes score strictly higher
        (ties at the boundary count as in), and a NaN score at the label ranks last."""
        xp = self.xp
        truth = labels if labels.ndim == 1 else xp.argmax(labels, axis=1)
        picked = pred[xp.arange(pred.shape[0]), truth][:, None]
        picked = xp.where(xp.isnan(picked), -xp.inf, picked)
        return xp.count_nonzero(xp.sum(pred > picked, axis=1) < k)

    # -- optimizers --------------------------------------------------------------
    @abstractmethod
    def sgd_update(
        self,
        param: Array,
        grad: Array,
        buf: Array | None,
        lr: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        *,
        half: Array | None = None,
        unscale: float = 1.0,
        guard: Array | None = None,
        clip: tuple | None = None,
    ) -> None:
        """torch.optim.SGD's update of ``param`` (and ``buf``, zero-initialised) in place.

        Every update method also takes, for mixed precision: ``half``, the parameter's half copy,
        written from the new value in the same pass; ``unscale``, 1/loss scale (a power of two),
        multiplied into the gradient as it is read (the gradient buffer itself is left as it is);
        ``guard``, LossScaleOptimizer's device state (``loss_scale_check``): the update leaves
        everything as it was where it flags an overflow, and otherwise unscales by its 1/scale
        (``unscale`` is then unused) and, for Adam, takes its bias corrections (``step`` unused);
        ``clip``, Keras's gradient clipping of the unscaled gradient as it is read: (factors, segs,
        nseg, clipvalue), ``FusedSteps.clipped_gradient``'s arguments, None for none."""

    @abstractmethod
    def adam_update(
        self,
        param: Array,
        grad: Array,
        m: Array,
        v: Array,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        step: int,
        decoupled: bool,
        *,
        half: Array | None = None,
        unscale: float = 1.0,
        guard: Array | None = None,
        clip: tuple | None = None,
    ) -> None:
        """torch.optim.Adam (or AdamW when ``decoupled``) update of ``param``, ``m``, ``v`` in place."""

    @abstractmethod
    def rmsprop_update(
        self,
        param: Array,
        grad: Array,
        v: Array,
        mg: Array | None,
        mom: Array | None,
        lr: float,
        rho: float,
        momentum: float,
        eps: float,
        weight_decay: float,
        *,
        half: Array | None = None,
        unscale: float = 1.0,
        guard: Array | None = None,
        clip: tuple | None = None,
    ) -> None:
        """Keras 3's RMSprop update of ``param`` and its state in place: centered when ``mg`` (the
        average gradient) is given, with momentum when ``mom`` is; ``weight_decay`` is Keras's
        decoupled decay (p -= p*wd*lr first)."""

    @abstractmethod
    def adagrad_update(
        self,
        param: Array,
        grad: Array,
        acc: Array,
        lr: float,
        eps: float,
        weight_decay: float,
        *,
        half: Array | None = None,
        unscale: float = 1.0,
        guard: Array | None = None,
        clip: tuple | None = None,
    ) -> None:
        """Keras 3's Adagrad update of ``param`` and its accumulator ``acc`` in place (decay as RMSprop's)."""

    def all_finite(self, a: Array) -> Scalar:
        """Whether every element of ``a`` is finite, as a 0-d bool where ``a`` lives (one reduction;
        the loss scaler reads it on the host once a step)."""
        return self.xp.all(self.xp.isfinite(a))

    # -- regularizers --------------------------------------------------------------
    @abstractmethod
    def l1l2_grad(self, grad: Array, param: Array, l1: float, l2: float, *, gscale: Array | None = None) -> Array:
        """grad += 2*l2*param + l1*sign(param) in place (the gradient of l1*sum|p| + l2*sum p^2); returns grad.
        ``gscale``: as the loss steps take it, a device factor of both terms (the loss scale)."""

    def l1l2_penalty(self, param: Array, l1: float, l2: float) -> Scalar:
        """l1*sum|param| + l2*sum param^2 in float64, where the parameter lives (a term is skipped when its
        factor is 0)."""
        xp = self.xp
        w = param.astype(xp.float64)
        total = xp.float64(0.0)
        if l1:
            total = total + xp.sum(xp.abs(w)) * l1
        if l2:
            total = total + xp.sum(w * w) * l2
        return total

    @staticmethod
    def adam_bias_corrections(lr: float, beta1: float, beta2: float, step: int) -> tuple[float, float]:
        """(lr / (1 - beta1**step), sqrt(1 - beta2**step)), in double on the host."""
        return lr / (1.0 - beta1**step), (1.0 - beta2**step) ** 0.5

    # -- data parallel (fcgpu.distributed) ----------------------------------------
    # ``comm`` is a communicator of fcgpu.distributed; the host versions here move the buffers
    # themselves over MPI (no copies), the CuPy backend moves device buffers over NCCL.
    def allreduce_sum(self, buffer: Array, comm: Any, weight: float = 1.0) -> Array:
        """``buffer`` (contiguous) replaced in place, on every rank, by the sum over the ranks of
        weight x buffer, each rank giving its own ``weight``: one MPI all-reduce (MPI_IN_PLACE,
        SUM) on the buffer itself, after one scaling pass where the weight is not 1."""
        if weight != 1.0:
            self.xp.multiply(buffer, weight, out=buffer)
        comm.allreduce_host(buffer)
        return buffer

    def broadcast(self, buffer: Array, comm: Any, root: int = 0) -> Array:
        """``buffer`` (contiguous) overwritten in place, on every rank, by rank ``root``'s."""
        comm.broadcast_host(buffer, root)
        return buffer

    def use_device(self, index: int) -> None:
        """Make device ``index`` this process's current device (data parallel: one GPU per local
        rank); the host has one, so nothing to do."""

    def __repr__(self) -> str:
        return f"<fcgpu {self.name} backend>"
