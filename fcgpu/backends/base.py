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

Array = Any  # numpy.ndarray or cupy.ndarray
# A reduction's result where it was computed: a NumPy scalar on the host, a 0-d array on a GPU.
# Reading it (float(), int()) waits for the device, so training loops add these up and read once.
Scalar = Any


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


class BackendMismatch(TypeError):
    """An array of one backend was handed to another."""


class Backend(ABC):
    name: str
    xp: ModuleType

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

    def asarray(self, x: object, dtype: Any, argument: str = "x") -> Array:
        """``x`` (host data or an array of this backend) as this backend's array of ``dtype``."""
        if self.owns(x):
            if x.dtype.kind not in "biuf":
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
        if host.dtype.kind not in "biuf":
            raise TypeError(f"{argument}: expected a numeric array, got dtype {host.dtype}")
        return self.from_numpy(host.astype(dtype, copy=False))

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

    # -- activations -------------------------------------------------------------
    @abstractmethod
    def bias_act_forward(self, z: Array, bias: Array | None, activation: str, out: Array) -> Array:
        """out (B, N) = act(z + bias); ``out`` may be ``z``."""

    @abstractmethod
    def act_backward(self, y: Array, dy: Array, activation: str, out: Array) -> Array:
        """out (B, N) = dy * act'(z), from the forward output y = act(z)."""

    # -- losses ------------------------------------------------------------------
    def _widened(self, *arrays: Array) -> list[Array]:
        """float16 arrays as float32 (others as they are): the kernels compute half in float, and a
        half difference or sum of squares overflows at 65504."""
        return [a.astype(self.xp.float32) if a.dtype == self.xp.float16 else a for a in arrays]

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

    # -- metrics -----------------------------------------------------------------
    # -- fused training steps: loss, gradient and correct count in one call --------------------
    # acc is a float64 device array (2,): acc[0] += loss x weight, acc[1] += correct x weight, so a
    # training loop keeps its running sums on the device and reads them a few times an epoch.
    # Shown here as compositions of the methods above; the CuPy backend runs each as one kernel.
    def softmax_xent_step(
        self, z: Array, labels: Array, scale: float, weight: float, count: bool, out: Array, acc: Array
    ) -> Array:
        """out = (softmax(z) - labels) * scale for logits z (B, C); adds sum over rows of the loss
        (and with ``count`` the rows whose argmax is right) into acc."""
        lse = self.logsumexp_rows(z)
        acc[0] += self.softmax_xent_sum(z, lse, labels) * weight
        self.softmax_xent_grad(z, lse, labels, scale, out)
        if count:
            acc[1] += self.count_correct(z, labels, None) * weight
        return out

    def bce_logits_step(
        self, z: Array, y: Array, scale: float, weight: float, count: bool, out: Array, acc: Array
    ) -> Array:
        """out = (sigmoid(z) - y) * scale; adds the summed loss (and elements where (z > 0) matches
        (y > 0.5)) into acc."""
        acc[0] += self.bce_logits_sum(z, y) * weight
        if count:
            acc[1] += self.count_correct(z, y, 0.0) * weight
        return self.bce_logits_grad(z, y, scale, out)

    def mse_step(self, p: Array, y: Array, scale: float, weight: float, out: Array, acc: Array) -> Array:
        """out = 2 (p - y) * scale; adds sum of (p - y)**2 into acc."""
        acc[0] += self.mse_sum(p, y) * weight
        return self.mse_grad(p, y, scale, out)

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

    # -- optimizers --------------------------------------------------------------
    @abstractmethod
    def sgd_update(
        self, param: Array, grad: Array, buf: Array | None, lr: float, momentum: float, weight_decay: float, nesterov: bool
    ) -> None:
        """torch.optim.SGD's update of ``param`` (and ``buf``, zero-initialised) in place."""

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
    ) -> None:
        """torch.optim.Adam (or AdamW when ``decoupled``) update of ``param``, ``m``, ``v`` in place."""

    @staticmethod
    def adam_bias_corrections(lr: float, beta1: float, beta2: float, step: int) -> tuple[float, float]:
        """(lr / (1 - beta1**step), sqrt(1 - beta2**step)), in double on the host."""
        return lr / (1.0 - beta1**step), (1.0 - beta2**step) ** 0.5

    def __repr__(self) -> str:
        return f"<fcgpu {self.name} backend>"
