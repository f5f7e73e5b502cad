"""The NumPy backend: the host implementation and the reference the CUDA kernels are tested against.

Every method writes into ``out`` with in-place ufuncs, so a training step with a fixed batch
size allocates nothing once the layers' buffers exist.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np

from ...activations.table import ACTIVATIONS, get_activation
from .activations import HOST, Workspace
from .. import philox
from ..base import Array, Backend
from ..dtypes import is_half_dtype

_BOOL = np.dtype(np.bool_)
_F32 = np.dtype(np.float32)
# Types NumPy hands to BLAS (float16 products run in NumPy's own loops).
_BLAS_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def __init__(self) -> None:
        self._scratch: dict[tuple, np.ndarray] = {}
        self._ones: dict[tuple, np.ndarray] = {}  # constant vectors: ones for GEMV sums, row indices
        self._work: Workspace = self._workspace  # bound once: the activations' scratch, lent per call

    def _workspace(self, shape: tuple[int, ...], dtype: Any, tag: str = "") -> np.ndarray:
        """A scratch array reused across calls of the same shape (never returned to callers)."""
        key = (shape, dtype, tag)
        buf = self._scratch.get(key)
        if buf is None:
            if len(self._scratch) >= 64:
                # Drop the oldest shape only, so a model with many layer shapes does not thrash.
                del self._scratch[next(iter(self._scratch))]
            buf = self._scratch[key] = np.empty(shape, dtype)
        return buf

    def owns(self, a: object) -> bool:
        return type(a) is np.ndarray

    def asarray(self, x: object, dtype: Any, argument: str = "x") -> Array:
        if type(x) is np.ndarray and x.dtype == dtype and x.dtype.kind in "biuf":  # the hot path: as it is
            return x
        return super().asarray(x, dtype, argument)

    def to_numpy(self, a: Array) -> np.ndarray:
        return a

    def _accepted_arrays(self) -> str:
        return "a NumPy array"

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        # A 0-d array stays 0-d (np.ascontiguousarray makes it (1,), which a Keras scalar weight,
        # Normalization's count, must not become).
        return np.ascontiguousarray(a) if np.ndim(a) else np.asarray(a)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "numpy": np.__version__}

    # -- GEMMs -------------------------------------------------------------------
    # NumPy hands transposed views (F-ordered) to BLAS as they are, so none of these copies.
    # bfloat16 (dtype kind 'V', ml_dtypes) has no BLAS: its operands are widened to float32, the
    # product is taken in float32 and rounded once into out, as a tensor core accumulates in float.
    def _wide_gemm(self, name: str, a: Array, b: Array, out: Array) -> Array:
        wa = self._workspace(a.shape, _F32, "gemm_a")
        wb = self._workspace(b.shape, _F32, "gemm_b")
        np.copyto(wa, a)
        np.copyto(wb, b)
        if out.dtype == _F32:
            return getattr(self, name)(wa, wb, out)
        wide = self._workspace(out.shape, _F32, "gemm_out")
        getattr(self, name)(wa, wb, wide)
        np.copyto(out, wide, casting="same_kind")
        return out

    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        if a.dtype.kind == "V":
            return self._wide_gemm("matmul", a, b, out)
        return np.matmul(a, b, out=out)

    def matmul_at_b(self, a: Array, b: Array, out: Array) -> Array:
        # bfloat16, or half operands into a float32 weight gradient (mixed precision): products and
        # sums in float32, as the CuPy backend's cublasGemmEx, not rounded to half first.
        if a.dtype.kind == "V" or out.dtype != a.dtype:
            return self._wide_gemm("matmul_at_b", a, b, out)
        if a.shape[0] == 1:
            # An outer product: BLAS GEMM with K = 1 runs several times slower than this, and a
            # broadcast multiply goes through NumPy's buffered iterator, which allocates.
            return np.einsum("i,j->ij", a[0], b[0], out=out)
        return np.matmul(a.T, b, out=out)

    def matmul_a_bt(self, a: Array, b: Array, out: Array) -> Array:
        if a.dtype.kind == "V":
            return self._wide_gemm("matmul_a_bt", a, b, out)
        if a.shape[0] == 1:
            # A matrix-vector product: GEMV instead of a degenerate GEMM.
            np.dot(b, a[0], out=out[0])
            return out
        return np.matmul(a, b.T, out=out)

    def sum_rows(self, a: Array, out: Array) -> Array:
        if a.dtype.itemsize == 2:  # float16 or bfloat16: in float32 (_half_in_float32)
            return _HALF_HOT["sum_rows"](self, a, out)
        if a.dtype in _BLAS_TYPES and out.dtype == a.dtype and a.ndim == 2 and a.flags.c_contiguous:
            # ones (B,) @ a (B, N) as a BLAS GEMV: 2-3x faster than add.reduce over axis 0.
            ones = self._ones.get((a.shape[0], a.dtype))
            if ones is None:
                ones = self._ones[(a.shape[0], a.dtype)] = np.ones(a.shape[0], a.dtype)
            return np.dot(ones, a, out=out)
        return np.add.reduce(a, axis=0, out=out)

    # -- activations -------------------------------------------------------------
    # The arithmetic is each activation's host formulas (fcgpu/backends/numpy/activations.py); this adds the bias by
    # same-shape ufunc calls (a broadcast operand such as the bias row sends NumPy through its
    # buffered iterator, which allocates a buffer on every call) and lends the entries scratch.
    def bias_act_forward(
        self, z: Array, bias: Array | None, activation: str, out: Array, keep: Array | None = None
    ) -> Array:
        if z.dtype.itemsize == 2:
            return _HALF_HOT["bias_act_forward"](self, z, bias, activation, out, keep)
        act = ACTIVATIONS.get(activation) or get_activation(activation)
        if keep is not None:
            # z + b into keep (which may be z) for a backward from z, then act(keep) into out.
            if bias is not None and bias.dtype == keep.dtype:
                rows = self._workspace(keep.shape, keep.dtype, "rows")
                np.copyto(rows, bias)
                np.add(z, rows, out=keep)
            elif bias is not None:
                np.add(z, bias, out=keep)
            elif keep is not z:
                np.copyto(keep, z)
            HOST[act.name].forward(keep, out, self._work)
            return out
        if bias is not None and bias.dtype == out.dtype:
            rows = self._workspace(out.shape, out.dtype, "rows")
            if HOST[act.name].forward_of_negated is not None:
                # (-b) - z is -(z + b) exactly (IEEE rounding is symmetric), saving a pass.
                negative_bias = self._workspace(bias.shape, bias.dtype, "negative_bias")
                np.negative(bias, out=negative_bias)
                np.copyto(rows, negative_bias)  # a plain broadcast copy: no buffering, no allocation
                np.subtract(rows, z, out=out)
                HOST[act.name].forward_of_negated(out, out, self._work)
                return out
            np.copyto(rows, bias)
            z = np.add(z, rows, out=out)
        elif bias is not None:
            z = np.add(z, bias, out=out)
        HOST[act.name].forward(z, out, self._work)
        return out

    def act_dropout_backward(self, y, dy, activation, out, seed, step, rate, offset=0):
        masked = self._workspace(dy.shape, dy.dtype, "dropout_dy")  # reused: no allocation per step
        self.dropout_backward(dy, masked, seed, step, rate, offset)
        return self.act_backward(y, masked, activation, out)

    def act_backward(self, y: Array, dy: Array, activation: str, out: Array) -> Array:
        # y is what the forward pass kept: the output, or z + b for an entry with backward_from "z".
        if y.dtype.itemsize == 2:
            return _HALF_HOT["act_backward"](self, y, dy, activation, out)
        HOST[(ACTIVATIONS.get(activation) or get_activation(activation)).name].backward(y, dy, out, self._work)
        return out

    # -- dropout -----------------------------------------------------------------
    def dropout_forward(self, x: Array, out: Array, seed: int, step: int, rate: float, offset: int = 0) -> Array:
        # The mask from the NumPy Philox (backends/philox.py); kept values times the scale in the
        # kernel's arithmetic type (float32 for float16 and bfloat16), one rounding, so both backends
        # agree bit for bit.
        threshold, scale = philox.dropout_constants(rate)
        drop = philox.dropped(seed, step, offset, x.shape, threshold)
        if is_half_dtype(x.dtype):
            wide = self._workspace(x.shape, _F32, "dropout")
            np.copyto(wide, x)
            np.multiply(wide, np.float32(scale), out=wide)
            np.copyto(out, wide, casting="same_kind")
        else:
            np.multiply(x, x.dtype.type(scale), out=out)
        np.copyto(out, 0, where=drop)
        return out

    # -- losses ------------------------------------------------------------------
    def logsumexp_rows(self, z: Array) -> Array:
        # Backend.logsumexp_rows's arithmetic with its (B, C) temporaries in a workspace; the
        # (B, 1) result is new, since the loss keeps it until its backward.
        if z.ndim != 2:
            return super().logsumexp_rows(z)
        m = self._workspace((z.shape[0], 1), z.dtype, "lse_max")
        np.max(z, axis=1, keepdims=True, out=m)
        infinite = self._workspace(m.shape, _BOOL, "lse_inf")
        np.isfinite(m, out=infinite)
        np.logical_not(infinite, out=infinite)
        np.copyto(m, 0, where=infinite)
        t = self._workspace(z.shape, z.dtype, "rows")
        np.copyto(t, m)  # the column broadcast as a plain copy: a broadcast subtract would allocate
        np.subtract(z, t, out=t)
        np.exp(t, out=t)
        lse = np.add.reduce(t, axis=1, keepdims=True)
        np.log(lse, out=lse)
        np.add(lse, m, out=lse)
        return lse

    def softmax_xent_step(self, z, labels, scale, weight, count, out, acc, *, gscale=None, sample_weight=None):
        # FusedSteps.softmax_xent_step's composition, with gscale read here (the host is the device).
        if sample_weight is not None:
            return super().softmax_xent_step(z, labels, scale, weight, count, out, acc, gscale=gscale,
                                             sample_weight=sample_weight)
        if gscale is not None:
            scale = scale * float(gscale[0])
        lse = self.logsumexp_rows(z)
        acc[0] += self.softmax_xent_sum(z, lse, labels) * weight
        self.softmax_xent_grad(z, lse, labels, scale, out)
        if count:
            acc[1] += self.count_correct(z, labels, None) * weight
        return out

    def softmax_xent_grad(self, z: Array, lse: Array, labels: Array, scale: float, out: Array) -> Array:
        if lse.dtype == out.dtype == z.dtype:
            np.copyto(out, lse)  # broadcast by a plain copy, then a same-shape subtract: no allocation
            np.subtract(z, out, out=out)
        else:
            np.subtract(z, lse, out=out)
        np.exp(out, out=out)
        if labels.ndim == 1:
            rows = self._ones.get((z.shape[0], "arange"))
            if rows is None:
                rows = self._ones[(z.shape[0], "arange")] = np.arange(z.shape[0])
            out[rows, labels] -= 1
        else:
            np.subtract(out, labels, out=out)
        np.multiply(out, scale, out=out)
        return out

    def bce_logits_sum(self, z: Array, y: Array) -> np.float64:
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return np.sum(loss, dtype=np.float64)

    def bce_logits_grad(self, z: Array, y: Array, scale: float, out: Array) -> Array:
        self.bias_act_forward(z, None, "sigmoid", out)
        np.subtract(out, y, out=out)
        np.multiply(out, scale, out=out)
        return out

    def bce_prob_sum(self, p: Array, y: Array, eps: float) -> np.float64:
        q = np.clip(p, eps, 1 - eps)
        return -np.sum(y * np.log(q) + (1 - y) * np.log(1 - q), dtype=np.float64)

    def bce_prob_grad(self, p: Array, y: Array, eps: float, scale: float, out: Array) -> Array:
        q = np.clip(p, eps, 1 - eps)
        np.subtract(q, y, out=out)
        np.divide(out, q * (1 - q), out=out)
        np.multiply(out, scale, out=out)
        out[(p < eps) | (p > 1 - eps)] = 0  # the clipped loss is flat there, as in Keras
        return out

    def mse_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        np.subtract(p, y, out=out)
        np.multiply(out, 2 * scale, out=out)
        return out

    def mse_step(self, p, y, scale, weight, out, acc, *, gscale=None, sample_weight=None) -> Array:
        # p - y once, for both the sum and the gradient, with the squares in a reused workspace:
        # the roundings of mse_sum and mse_grad, without their second subtraction and temporaries.
        scale = self.times_scale(scale, gscale)
        if p.dtype.itemsize == 2 or p.shape != y.shape or out is p or out is y or sample_weight is not None:
            return super().mse_step(p, y, scale, weight, out, acc, sample_weight=sample_weight)
        np.subtract(p, y, out=out)
        squares = self._workspace(out.shape, out.dtype, "mse_squares")
        np.multiply(out, out, out=squares)
        acc[0] += np.sum(squares, dtype=np.float64) * weight
        np.multiply(out, 2 * scale, out=out)
        return out

    def mae_grad(self, p: Array, y: Array, scale: float, out: Array) -> Array:
        np.subtract(p, y, out=out)
        np.sign(out, out=out)  # sign(0) = 0, NaN stays NaN
        np.multiply(out, scale, out=out)
        return out

    def huber_grad(self, p: Array, y: Array, delta: float, scale: float, out: Array) -> Array:
        np.subtract(p, y, out=out)
        np.clip(out, -delta, delta, out=out)
        np.multiply(out, scale, out=out)
        return out

    # -- optimizers --------------------------------------------------------------
    def sgd_update(self, param, grad, buf, lr, momentum, weight_decay, nesterov) -> None:
        # Same roundings as torch.optim.SGD and the kernel (lr * g rounded, then subtracted) in the
        # fewest passes: 2 for plain SGD, 4 with momentum.
        g = grad
        if weight_decay:
            g = self._workspace(param.shape, param.dtype, "decayed")
            np.multiply(param, weight_decay, out=g)
            g += grad
        if momentum:
            buf *= momentum
            buf += g
            if nesterov:
                look_ahead = self._workspace(param.shape, param.dtype, "tmp")
                np.multiply(buf, momentum, out=look_ahead)
                look_ahead += g
                g = look_ahead
            else:
                g = buf
        step = self._workspace(param.shape, param.dtype, "step")
        np.multiply(g, lr, out=step)
        param -= step

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, corrections=None) -> None:
        # corrections: (step size, sqrt(1 - beta2^t)) of loss scaling's device step count, else from step.
        step_size, bc2_sqrt = corrections or self.adam_bias_corrections(lr, beta1, beta2, step)
        g = grad
        if weight_decay and decoupled:
            param *= 1 - lr * weight_decay
        elif weight_decay:
            g = self._workspace(param.shape, param.dtype, "step")
            np.multiply(param, weight_decay, out=g)
            g += grad
        tmp = self._workspace(param.shape, param.dtype, "tmp")
        m *= beta1
        np.multiply(g, 1 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= bc2_sqrt
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        param -= tmp

    def rmsprop_update(self, param, grad, v, mg, mom, lr, rho, momentum, eps, weight_decay) -> None:
        # The kernel's roundings term by term: (rho v) + ((1-rho) g^2); lr g / sqrt(denominator).
        if weight_decay:
            param *= 1.0 - lr * weight_decay
        tmp = self._workspace(param.shape, v.dtype, "tmp")
        v *= rho
        np.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - rho
        v += tmp
        if mg is not None:
            mg *= rho
            np.multiply(grad, 1.0 - rho, out=tmp)
            mg += tmp
            np.multiply(mg, mg, out=tmp)
            np.subtract(v, tmp, out=tmp)
            tmp += eps
        else:
            np.add(v, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        increment = self._workspace(param.shape, param.dtype, "step")
        np.multiply(grad, lr, out=increment)
        increment /= tmp
        if mom is not None:
            mom *= momentum
            mom += increment
            increment = mom
        param -= increment

    def adagrad_update(self, param, grad, acc, lr, eps, weight_decay) -> None:
        if weight_decay:
            param *= 1.0 - lr * weight_decay
        tmp = self._workspace(param.shape, acc.dtype, "tmp")
        np.multiply(grad, grad, out=tmp)
        acc += tmp
        np.add(acc, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        increment = self._workspace(param.shape, param.dtype, "step")
        np.multiply(grad, lr, out=increment)
        increment /= tmp
        param -= increment

    # -- regularizers ------------------------------------------------------------
    def l1l2_grad(self, grad, param, l1, l2, *, gscale=None):
        # The kernel's order: (2 l2 w + l1 sign(w)), then added to g; gscale[0] folded into both factors.
        if gscale is not None:
            l1, l2 = l1 * float(gscale[0]), l2 * float(gscale[0])
        term = self._workspace(param.shape, grad.dtype, "penalty")
        if l2:
            np.multiply(param, 2.0 * l2, out=term)
            if l1:
                signs = self._workspace(param.shape, grad.dtype, "penalty_sign")
                np.sign(param, out=signs)
                signs *= l1
                term += signs
        else:
            np.sign(param, out=term)
            term *= l1
        grad += term
        return grad


def _half_in_float32(method: Callable[..., Any], outputs: tuple[str, ...]) -> Callable[..., Any]:
    """Run ``method`` on float16 and bfloat16 arrays in float32 and round the ``outputs`` once, as
    the kernels do (their arithmetic type for both is float: in float16 arithmetic eps = 1e-8 is 0,
    exp(12) overflows, and a column sum of 4096 ones is 2048; bfloat16 keeps 8 significant bits,
    and ml_dtypes has no BLAS or fast loops for it). A call mixes at most one of the two types."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: NumpyBackend, first: Any, *args: Any, **kwargs: Any) -> Any:
        if first.dtype.itemsize != 2 or not is_half_dtype(first.dtype):
            return method(self, first, *args, **kwargs)
        bound = signature.bind(self, first, *args, **kwargs)
        originals = {}
        half = first.dtype
        for name, value in bound.arguments.items():
            if isinstance(value, np.ndarray) and is_half_dtype(value.dtype):
                originals[name] = value
                half = value.dtype
                bound.arguments[name] = value.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            result = method(*bound.args, **bound.kwargs)
        for name in outputs:
            if name in originals:
                np.copyto(originals[name], bound.arguments[name], casting="same_kind")
                if result is bound.arguments[name]:
                    result = originals[name]
        if isinstance(result, np.ndarray) and result.dtype == np.float32 and all(result is not o for o in originals.values()):
            result = result.astype(half)
        return result

    return wrapper


# The per-layer hot paths check for a 2-byte dtype inline (see _HALF_HOT): at (32, 64, 64) the extra
# Python frame of the wrapper costs ~0.5 us a call, 7% of a Dense forward+backward.
_HALF_HOT: dict[str, Callable[..., Any]] = {
    _name: _half_in_float32(getattr(NumpyBackend, _name), _outputs)
    for _name, _outputs in (("sum_rows", ("out",)), ("bias_act_forward", ("out", "keep")), ("act_backward", ("out",)))
}

for _name, _outputs in {
    "logsumexp_rows": (),
    "softmax_xent_grad": ("out",),
    "bce_logits_sum": (),
    "bce_logits_grad": ("out",),
    "bce_prob_sum": (),
    "bce_prob_grad": ("out",),
    "mse_grad": ("out",),
    "mae_grad": ("out",),
    "huber_grad": ("out",),
    "sgd_update": ("param", "buf"),
    "adam_update": ("param", "m", "v"),
    "rmsprop_update": ("param", "v", "mg", "mom"),
    "adagrad_update": ("param", "acc"),
    "l1l2_grad": ("grad",),
}.items():
    setattr(NumpyBackend, _name, _half_in_float32(getattr(NumpyBackend, _name), _outputs))


def _mixed_update(method: Callable[..., Any]) -> Callable[..., Any]:
    """An update method with the mixed-precision arguments of ``Backend.sgd_update``: the gradient
    times ``unscale`` in a scratch copy (exact: a power of two), then clipped (``clip``), and after
    the update the half copy ``half`` rounded once from the new parameter (a second pass here, one fused pass on CuPy)."""

    @functools.wraps(method)
    def wrapper(
        self: NumpyBackend, param: Any, grad: Any, *args: Any, half: Any = None, unscale: float = 1.0, guard: Any = None,
        clip: Any = None, **kwargs: Any,
    ) -> Any:
        if guard is not None:  # loss scaling's decision (Backend.loss_scale_check): skip, or unscale by it
            if guard[self.LS_SKIP] != 0.0:
                return None
            unscale = float(guard[self.LS_UNSCALE])
            if method.__name__ == "adam_update":
                kwargs["corrections"] = (float(guard[self.LS_STEP_SIZE]), float(guard[self.LS_BC2_SQRT]))
        if unscale != 1.0:
            scaled = self._workspace(grad.shape, grad.dtype, "unscaled")
            np.multiply(grad, grad.dtype.type(unscale), out=scaled)
            grad = scaled
        if clip is not None:  # Keras's clipping of the unscaled gradient, in a scratch copy
            grad = self.clipped_gradient(grad, *clip, self._workspace(grad.shape, grad.dtype, "clipped"))
        result = method(self, param, grad, *args, **kwargs)
        if half is not None:
            np.copyto(half, param, casting="same_kind")
        return result

    return wrapper


for _name in ("sgd_update", "adam_update", "rmsprop_update", "adagrad_update"):
    setattr(NumpyBackend, _name, _mixed_update(getattr(NumpyBackend, _name)))
