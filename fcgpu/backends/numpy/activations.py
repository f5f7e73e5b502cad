"""The activations' host formulas: the NumPy backend's implementation and the kernels' reference.

One ``HostActivation`` per entry of ``fcgpu.activations.ACTIVATIONS`` (same names), written
without the kernel code: same-shape in-place ufuncs into ``out``, scratch from ``work`` (half runs
in float32). ``forward(s, out, work)``: out = act(s), out may be s; ``backward(kept, dy, out, work)``:
out = dy * act'(z) from what forward kept (y = act(z), or z itself: the entry's ``backward_from``),
out neither kept nor dy; ``forward_of_negated``: act(-t) from t, for an entry that starts by negating
s (the bias pass then hands it -(z + b) at no extra cost). Numerics follow PyTorch's
torch.nn.functional of the same name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ...activations.table import GELU_KAPPA, LEAKY_RELU_SLOPE, SELU_ALPHA, SELU_SCALE, SOFTPLUS_THRESHOLD
from .special_functions import erfc


class Workspace(Protocol):
    """A scratch array of ``shape`` and ``dtype``, the same one on every call with the same ``tag``."""

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype, tag: str) -> np.ndarray: ...


Forward = Callable[[np.ndarray, np.ndarray, Workspace], object]
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray, Workspace], object]


@dataclass(frozen=True)
class HostActivation:
    """An activation's host forward and backward (and its forward of -s where it has one)."""

    forward: Forward = field(repr=False)
    backward: Backward = field(repr=False)
    forward_of_negated: Forward | None = field(default=None, repr=False)


HOST: dict[str, HostActivation] = {}


# -- linear: y = s ----------------------------------------------------------------------------------
def _linear_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    if out is not s:
        np.copyto(out, s)


HOST["linear"] = HostActivation(_linear_forward, lambda y, dy, out, work: np.copyto(out, dy))


# -- relu: y = max(s, 0); relu(NaN) = NaN and relu(-0.0) = +0.0 as np.maximum; relu'(0) = 0 as PyTorch.
_INT_OF_SIZE = {2: np.dtype(np.int16), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}  # same-width bit patterns


def _relu_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # dz = dy where y > 0, else +0 (also for an inf or NaN dy, as the kernel's select does).
    # A masked copy (copyto where=) costs ~6 ns an element and a float multiply by the mask
    # turns inf * 0 into NaN; an integer multiply of dy's bit pattern by 0/1 is exact.
    mask = work(y.shape, np.dtype(np.bool_), "mask")
    np.greater(y, 0, out=mask)
    bits = _INT_OF_SIZE.get(out.dtype.itemsize)
    if dy.dtype == out.dtype and bits is not None:
        ones = work(out.shape, out.dtype, "rows").view(bits)
        np.copyto(ones, mask)
        np.multiply(dy.view(bits), ones, out=out.view(bits))
    else:
        np.copyto(out, 0)
        np.copyto(out, dy, where=mask)


HOST["relu"] = HostActivation(lambda s, out, work: np.maximum(s, 0, out=out), _relu_backward)


# -- sigmoid: y = 1 / (1 + exp(-s)); y' = y (1 - y) -------------------------------------------------
def _sigmoid_of_negated(t: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # exp overflows to inf for s < -88 (float32) and the result is then 0 where the true value is
    # a denormal below 3e-39, as on the GPU, which flushes denormals to zero.
    _one_plus_exp(t, out)
    np.reciprocal(out, out=out)


def _sigmoid_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.negative(s, out=out)
    _sigmoid_of_negated(out, out, work)


def _sigmoid_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.subtract(1, y, out=out)
    np.multiply(out, y, out=out)
    np.multiply(out, dy, out=out)


HOST["sigmoid"] = HostActivation(_sigmoid_forward, _sigmoid_backward, forward_of_negated=_sigmoid_of_negated)


# -- tanh: y = tanh(s); y' = 1 - y^2 -----------------------------------------------------------------
def _tanh_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.multiply(y, y, out=out)
    np.subtract(1, out, out=out)
    np.multiply(out, dy, out=out)


HOST["tanh"] = HostActivation(lambda s, out, work: np.tanh(s, out=out), _tanh_backward)


# -- leaky_relu: y = s for s > 0, else 0.2 s (Keras 3's default negative_slope) -----------------


def _leaky_relu_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # A slope below 1 makes max(s, slope * s) the leaky relu; -0.0 and NaN come through as PyTorch's.
    scaled = work(s.shape, s.dtype, "act_tmp")
    np.multiply(s, LEAKY_RELU_SLOPE, out=scaled)
    np.maximum(s, scaled, out=out)


def _leaky_relu_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    positive = work(y.shape, np.dtype(np.bool_), "mask")
    np.greater(y, 0, out=positive)  # y > 0 exactly where s > 0; a NaN takes the slope, as PyTorch
    np.multiply(dy, LEAKY_RELU_SLOPE, out=out)
    np.copyto(out, dy, where=positive)


HOST["leaky_relu"] = HostActivation(_leaky_relu_forward, _leaky_relu_backward)


# -- elu (alpha 1) and selu: scale * (s if s > 0 else alpha * expm1(s)); backward from y ------------


def _elu(scale: float, alpha: float) -> tuple[Forward, Backward]:
    negcoef = scale * alpha

    def forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
        # max(s, 0) * scale + alpha * scale * expm1(min(s, 0)): one of the two terms is 0.
        negative = work(s.shape, s.dtype, "act_tmp")
        np.minimum(s, 0, out=negative)
        np.expm1(negative, out=negative)
        np.multiply(negative, negcoef, out=negative)
        np.maximum(s, 0, out=out)
        if scale != 1:
            np.multiply(out, scale, out=out)
        np.add(out, negative, out=out)

    def backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
        # dz = dy * (y + alpha * scale) where y <= 0 (alpha * scale * exp(s)), else dy * scale: a
        # NaN takes the scale, as PyTorch's s <= 0 test does.
        positive = work(y.shape, np.dtype(np.bool_), "mask")
        np.less_equal(y, 0, out=positive)
        np.logical_not(positive, out=positive)
        np.add(y, negcoef, out=out)
        np.multiply(out, dy, out=out)
        if scale == 1:
            np.copyto(out, dy, where=positive)
        else:
            scaled = work(y.shape, y.dtype, "act_tmp")
            np.multiply(dy, scale, out=scaled)
            np.copyto(out, scaled, where=positive)

    return forward, backward


_ELU, _SELU = _elu(1.0, 1.0), _elu(SELU_SCALE, SELU_ALPHA)
HOST["elu"] = HostActivation(_ELU[0], _ELU[1])
HOST["selu"] = HostActivation(_SELU[0], _SELU[1])


# -- softplus: log(1 + exp(s)), s itself above 20 (PyTorch's beta 1, threshold 20) ----------------


def _softplus_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    linear = work(s.shape, np.dtype(np.bool_), "mask")
    np.greater(s, SOFTPLUS_THRESHOLD, out=linear)
    low = work(s.shape, s.dtype, "act_tmp")
    np.minimum(s, SOFTPLUS_THRESHOLD, out=low)  # exp cannot overflow; NaN stays NaN
    np.exp(low, out=low)
    np.log1p(low, out=low)
    np.copyto(low, s, where=linear)
    np.copyto(out, low)


def _softplus_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # softplus' = sigmoid(s) = 1 - exp(-y), as -expm1(-y) so that a tiny y keeps its digits.
    linear = work(y.shape, np.dtype(np.bool_), "mask")
    np.greater(y, SOFTPLUS_THRESHOLD, out=linear)
    np.negative(y, out=out)
    np.expm1(out, out=out)
    np.multiply(out, dy, out=out)
    np.negative(out, out=out)
    np.copyto(out, dy, where=linear)


HOST["softplus"] = HostActivation(_softplus_forward, _softplus_backward)


# -- softsign: s / (1 + |s|); softsign' = (1 - |y|)^2 -----------------------------------------------
def _softsign_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    denominator = work(s.shape, s.dtype, "act_tmp")
    np.abs(s, out=denominator)
    np.add(denominator, 1, out=denominator)
    np.divide(s, denominator, out=out)


def _softsign_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.abs(y, out=out)
    np.subtract(1, out, out=out)
    np.multiply(out, out, out=out)
    np.multiply(out, dy, out=out)


HOST["softsign"] = HostActivation(_softsign_forward, _softsign_backward)


# -- silu (Keras's swish): s * sigmoid(s) = s / (1 + exp(-s)); backward from z -----------------------
def _one_plus_exp(t: np.ndarray, out: np.ndarray) -> None:
    """out = 1 + exp(t) (out may be t); exp's overflow to inf is intended (a sigmoid of 0)."""
    with np.errstate(over="ignore"):
        np.exp(t, out=out)
    np.add(out, 1, out=out)


def _silu_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    denominator = work(s.shape, s.dtype, "act_tmp")
    np.negative(s, out=denominator)
    _one_plus_exp(denominator, denominator)
    np.divide(s, denominator, out=out)


def _silu_backward(z: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # dy * sigmoid(z) * (1 + z * (1 - sigmoid(z))), as PyTorch forms it.
    sig = work(z.shape, z.dtype, "act_tmp")
    np.negative(z, out=sig)
    _one_plus_exp(sig, sig)
    np.reciprocal(sig, out=sig)
    np.subtract(1, sig, out=out)
    np.multiply(out, z, out=out)
    np.add(out, 1, out=out)
    np.multiply(sig, dy, out=sig)
    np.multiply(sig, out, out=out)


HOST["silu"] = HostActivation(_silu_forward, _silu_backward)


# -- gelu: s * Phi(s), Phi the standard normal CDF (Keras's default approximate=False); backward from z
SQRT1_2 = 0.70710678118654752440084436210485
INV_SQRT_2PI = 0.39894228040143267793994605993438


def _gelu_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # 0.5 s erfc(-s / sqrt 2): erfc keeps Phi's relative accuracy where 1 + erf would cancel.
    phi2 = work(s.shape, s.dtype, "act_tmp")
    np.multiply(s, -SQRT1_2, out=phi2)
    erfc(phi2, phi2, work)
    np.multiply(s, 0.5, out=out)
    np.multiply(out, phi2, out=out)


def _gelu_backward(z: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # dy * (Phi(z) + z * phi(z)), phi(z) = exp(-z^2 / 2) / sqrt(2 pi).
    cdf = work(z.shape, z.dtype, "act_tmp")
    np.multiply(z, -SQRT1_2, out=cdf)
    erfc(cdf, cdf, work)
    np.multiply(cdf, 0.5, out=cdf)
    np.multiply(z, z, out=out)
    np.multiply(out, -0.5, out=out)
    np.exp(out, out=out)
    np.multiply(out, INV_SQRT_2PI, out=out)
    np.multiply(out, z, out=out)
    np.add(cdf, out, out=out)
    np.multiply(out, dy, out=out)


HOST["gelu"] = HostActivation(_gelu_forward, _gelu_backward)


# -- gelu_approximate: PyTorch's approximate='tanh', 0.5 s (1 + tanh(u)), u = sqrt(2/pi) (s + 0.044715 s^3)
SQRT_2_PI = 0.79788456080286535587989211986876


def _gelu_tanh_u(s: np.ndarray, out: np.ndarray) -> None:
    np.multiply(s, s, out=out)
    np.multiply(out, s, out=out)
    np.multiply(out, GELU_KAPPA, out=out)
    np.add(out, s, out=out)
    np.multiply(out, SQRT_2_PI, out=out)


def _gelu_approximate_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # 1 + tanh(u) = 2 sigmoid(2u): y = s / (1 + exp(-2u)), accurate also where 1 + tanh(u) cancels.
    denominator = work(s.shape, s.dtype, "act_tmp")
    _gelu_tanh_u(s, denominator)
    np.multiply(denominator, -2, out=denominator)
    _one_plus_exp(denominator, denominator)
    np.divide(s, denominator, out=out)


def _gelu_approximate_backward(z: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # With e = exp(-2|u|), r = 1 / (1 + e), q = e r: sigmoid(2u) is r where u >= 0, else q, and
    # sigmoid(2u) (1 - sigmoid(2u)) = q r. dz = dy * (sigmoid(2u) + 2 u'(z) z q r), the second
    # term 0 where q underflows (no inf * 0 for a large |z|).
    u = work(z.shape, z.dtype, "act_tmp")
    q = work(z.shape, z.dtype, "act_tmp2")
    r = work(z.shape, z.dtype, "act_tmp3")
    mask = work(z.shape, np.dtype(np.bool_), "mask")
    _gelu_tanh_u(z, u)
    np.abs(u, out=q)
    np.multiply(q, -2, out=q)
    np.exp(q, out=q)
    np.add(q, 1, out=r)
    np.reciprocal(r, out=r)
    np.multiply(q, r, out=q)
    np.multiply(z, z, out=out)
    np.multiply(out, 3 * GELU_KAPPA, out=out)
    np.add(out, 1, out=out)
    np.multiply(out, 2 * SQRT_2_PI, out=out)  # 2 u'(z)
    np.multiply(out, z, out=out)
    np.multiply(out, q, out=out)
    np.multiply(out, r, out=out)
    np.copyto(out, 0, where=np.equal(q, 0, out=mask))
    np.copyto(q, r, where=np.greater_equal(u, 0, out=mask))  # q is now sigmoid(2u)
    np.add(q, out, out=out)
    np.multiply(out, dy, out=out)


HOST["gelu_approximate"] = HostActivation(_gelu_approximate_forward, _gelu_approximate_backward)


# -- softmax over each row: exp(s - max) / sum; backward y * (dy - sum(dy * y)) ----------------------
def _softmax_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # The row max subtracted (NaN-propagating), so exp never overflows; a row holding NaN or +inf,
    # or all -inf, is NaN. Row vectors are broadcast by plain copies into a (B, N) scratch.
    s2, out2 = s.reshape(-1, s.shape[-1]), out.reshape(-1, s.shape[-1])
    column = work((s2.shape[0], 1), s.dtype, "row_column")
    spread = work(s2.shape, s.dtype, "rows")
    np.max(s2, axis=1, keepdims=True, out=column)
    np.copyto(spread, column)
    np.subtract(s2, spread, out=out2)
    np.exp(out2, out=out2)
    np.add.reduce(out2, axis=1, keepdims=True, out=column)
    np.copyto(spread, column)
    np.divide(out2, spread, out=out2)


def _softmax_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    y2, dy2, out2 = (a.reshape(-1, y.shape[-1]) for a in (y, dy, out))
    column = work((y2.shape[0], 1), y.dtype, "row_column")
    spread = work(y2.shape, y.dtype, "rows")
    np.multiply(dy2, y2, out=spread)
    np.add.reduce(spread, axis=1, keepdims=True, out=column)
    np.copyto(spread, column)
    np.subtract(dy2, spread, out=out2)
    np.multiply(out2, y2, out=out2)


HOST["softmax"] = HostActivation(_softmax_forward, _softmax_backward)
