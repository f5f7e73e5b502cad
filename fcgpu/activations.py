"""The activations a Dense layer accepts: one table entry each, the only place that lists them.

An entry holds all fcgpu knows of an activation: its name, the functor in ``kernels/activations.cuh``
the CUDA kernels instantiate, its NumPy forward and backward (the host implementation, and the
reference the kernels are tested against, so written without the kernel code), and what the kernel
checks need (ulp budgets on the host and on a GPU, the range of the outputs y). Adding an
activation is one ``_add(Activation(...))`` block here plus one functor in kernels/activations.cuh;
the NumPy backend, the CuPy backend's kernel specs, the kernel checks and the tests iterate the table.

The NumPy functions write into ``out`` with in-place ufuncs and take their scratch arrays from
``work`` (the backend's reused buffers), so a training step allocates nothing. Only same-shape
(or scalar) ufunc calls: a broadcast operand sends NumPy through its buffered iterator, which
allocates on every call. float16 never reaches them: the backend runs half in float32.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np


class Workspace(Protocol):
    """A scratch array of ``shape`` and ``dtype``, the same one on every call with the same ``tag``."""

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype, tag: str) -> np.ndarray: ...


# forward(s, out, work): out = act(s); out may be s.
Forward = Callable[[np.ndarray, np.ndarray, Workspace], object]
# backward(y, dy, out, work): out = dy * act'(z) from the output y = act(z); out is neither y nor dy.
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray, Workspace], object]


@dataclass(frozen=True)
class UlpBudget:
    """How far a kernel may be from the NumPy entry: ulp of the forward and of the backward result;
    ``backward_dy_eps`` adds an absolute slack of that many eps * |dy| to the backward, where a fused
    multiply-add cancels without the intermediate rounding NumPy does."""

    forward: int
    backward: int
    backward_dy_eps: float = 0.0


@dataclass(frozen=True)
class Activation:
    """One entry of the table: what the kernels, the NumPy backend and the kernel checks use of it."""

    name: str
    kernel_functor: str  # struct in kernels/activations.cuh
    forward: Forward = field(repr=False)
    backward: Backward = field(repr=False)
    host_ulp: UlpBudget = field(repr=False)  # g++ with IEEE rounding, no FMA, glibc math
    gpu_ulp: UlpBudget = field(repr=False)  # -ftz=true, fused multiply-adds, device expf/tanhf
    outputs: tuple[float, float] = field(repr=False)  # closed range of y = act(s), for backward inputs
    # act(-t) from t, for an entry that starts by negating s: the NumPy backend's bias pass then
    # hands it -(z + b) at no extra cost.
    forward_of_negated: Forward | None = field(default=None, repr=False)


ACTIVATIONS: dict[str, Activation] = {}


def _add(entry: Activation) -> None:
    ACTIVATIONS[entry.name] = entry


# -- linear: y = s ----------------------------------------------------------------------------------
def _linear_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    if out is not s:
        np.copyto(out, s)


_add(Activation(
    "linear", "fc_act_linear",
    forward=_linear_forward,
    backward=lambda y, dy, out, work: np.copyto(out, dy),
    host_ulp=UlpBudget(0, 0), gpu_ulp=UlpBudget(0, 0), outputs=(-np.inf, np.inf),
))


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


_add(Activation(
    "relu", "fc_act_relu",
    forward=lambda s, out, work: np.maximum(s, 0, out=out),
    backward=_relu_backward,
    host_ulp=UlpBudget(0, 0), gpu_ulp=UlpBudget(0, 0), outputs=(0.0, np.inf),
))


# -- sigmoid: y = 1 / (1 + exp(-s)); y' = y (1 - y) -------------------------------------------------
def _sigmoid_of_negated(t: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    # exp overflows to inf for s < -88 (float32) and the result is then 0 where the true value is
    # a denormal below 3e-39, as on the GPU, which flushes denormals to zero; the overflow is
    # expected, so its warning is silenced.
    with np.errstate(over="ignore"):
        np.exp(t, out=out)
    np.add(out, 1, out=out)
    np.reciprocal(out, out=out)


def _sigmoid_forward(s: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.negative(s, out=out)
    _sigmoid_of_negated(out, out, work)


def _sigmoid_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.subtract(1, y, out=out)
    np.multiply(out, y, out=out)
    np.multiply(out, dy, out=out)


_add(Activation(
    "sigmoid", "fc_act_sigmoid",
    forward=_sigmoid_forward,
    forward_of_negated=_sigmoid_of_negated,
    backward=_sigmoid_backward,
    host_ulp=UlpBudget(4, 2), gpu_ulp=UlpBudget(6, 3), outputs=(0.0, 1.0),
))


# -- tanh: y = tanh(s); y' = 1 - y^2 -----------------------------------------------------------------
def _tanh_backward(y: np.ndarray, dy: np.ndarray, out: np.ndarray, work: Workspace) -> None:
    np.multiply(y, y, out=out)
    np.subtract(1, out, out=out)
    np.multiply(out, dy, out=out)


_add(Activation(
    "tanh", "fc_act_tanh",
    forward=lambda s, out, work: np.tanh(s, out=out),
    backward=_tanh_backward,
    # On the GPU 1 - y*y is one FMA: exact to |dy| * eps, not to ulps of the cancelling result.
    host_ulp=UlpBudget(2, 1), gpu_ulp=UlpBudget(4, 2, backward_dy_eps=2.0), outputs=(-1.0, 1.0),
))


def get_activation(name: str | Activation | None) -> Activation:
    """Resolve ``None`` (linear), an entry, or the name of one (case-insensitive)."""
    if isinstance(name, Activation):
        return name
    if name is None:
        return ACTIVATIONS["linear"]
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected one of None, {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return ACTIVATIONS[name.lower()]
