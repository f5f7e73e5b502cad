"""Checks of a CuPy-path backend's kernels against the NumPy backend, with tolerances in ulp.

The same checks run on the host stand-in (``HOST`` tolerances: g++ with IEEE rounding, no fused
multiply-adds, glibc math) and on a real GPU (``GPU`` tolerances: ``-ftz=true``, fused
multiply-adds, device ``expf``/``tanhf``); an activation's own budgets and output range are in its
entry in ``fcgpu.activations``. Each ``check_*`` function raises ``AssertionError`` with the worst
element when the kernel and the NumPy backend disagree.

Inputs mix random values of many magnitudes with the edge cases 0, -0.0, +-inf, NaN, 1e4,
+-87..104, +-745, +-3.4e38 and denormals. For float16 the kernels compute in float and round once,
so the reference is the NumPy backend run in float32 on the same float16 inputs, rounded to float16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fcgpu.activations import get_activation
from support.tolerances import ACTIVATION_ULP, UlpBudget
from fcgpu.backends.base import Backend
from fcgpu.backends.numpy.backend import NumpyBackend

_NP = NumpyBackend()


@dataclass(frozen=True)
class Tolerances:
    """ulp allowed between kernel and NumPy; ``fused`` adds an absolute slack where an FMA skips a rounding;
    ``flushes_inputs``: float32 denormal inputs read as 0 (CuPy's -ftz=true), so the reference gets them as 0;
    ``on_gpu``: each activation's budget is its GPU budget in ``support.tolerances``, else its host one."""

    loss_grad: int = 4
    mse_grad: int = 0
    sgd: int = 0
    adam: tuple[int, int, int] = (4, 4, 2)  # m, v, param
    fused: bool = False
    flushes_inputs: bool = False
    on_gpu: bool = False

    def act(self, activation: str) -> UlpBudget:
        """The activation's budget, from its entry in the table."""
        host, gpu = ACTIVATION_ULP[get_activation(activation).name]
        return gpu if self.on_gpu else host


HOST = Tolerances()
GPU = Tolerances(loss_grad=6, mse_grad=1, sgd=2, adam=(6, 6, 4), fused=True, flushes_inputs=True, on_gpu=True)


# -- comparison -------------------------------------------------------------------------------------


def _ordered(a: np.ndarray) -> np.ndarray:
    """Float bit patterns as integers that count ulps monotonically (+0 and -0 both map to 0)."""
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    i = np.ascontiguousarray(a).view(bits).astype(np.int64)
    return np.where(i < 0, np.int64(np.iinfo(bits).min) - i, i)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise number of representable values between ``a`` and ``b`` (same float dtype)."""
    return np.abs(_ordered(np.asarray(a)) - _ordered(np.asarray(b, dtype=np.asarray(a).dtype)))


def assert_ulp(actual: Any, expected: Any, max_ulp: int, what: str, atol: Any = 0.0, flush: bool = True) -> None:
    """Same NaNs and infinities; finite values within ``max_ulp`` ulp or ``atol``; with ``flush``, a
    denormal may stand where the other side has 0 (CuPy compiles with -ftz=true)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected).astype(actual.dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_a, nan_e):
        k = np.argwhere(nan_a != nan_e)[0]
        raise AssertionError(f"{what}: NaN on one side only, first at {tuple(k)}: kernel {actual[tuple(k)]!r}, numpy {expected[tuple(k)]!r}")
    ok = nan_a.copy()
    inf = np.isinf(actual) | np.isinf(expected)
    if not np.array_equal(actual[inf], expected[inf]):
        k = np.argwhere(inf & (actual != expected))[0]
        raise AssertionError(f"{what}: infinity on one side only, first at {tuple(k)}: kernel {actual[tuple(k)]!r}, numpy {expected[tuple(k)]!r}")
    ok |= inf
    if flush:
        tiny = np.finfo(actual.dtype).tiny
        ok |= (np.abs(actual) < tiny) & (np.abs(expected) < tiny)
    with np.errstate(invalid="ignore", over="ignore"):
        ok |= np.abs(actual.astype(np.float64) - expected.astype(np.float64)) <= atol
    dist = np.where(ok, 0, ulp_distance(actual, expected))
    worst = int(dist.max()) if dist.size else 0
    if worst > max_ulp:
        k = np.unravel_index(np.argmax(dist), dist.shape)
        raise AssertionError(
            f"{what}: {worst} ulp apart (allowed {max_ulp}) at {tuple(int(i) for i in k)}: "
            f"kernel {actual[k]!r}, numpy {expected[k]!r}"
        )


# -- inputs ---------------------------------------------------------------------------------------


def edge_values(dtype: Any) -> np.ndarray:
    """0, -0.0, +-inf, NaN, +-1, 1e4, +-745, +-3.4e38, +-87..104, the smallest normal, denormals, +-max."""
    info = np.finfo(dtype)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 1e4, -1e4, 745.0, -745.0, 3.4e38, -3.4e38]
    vals += [s * v for v in (87.0, 87.5, 88.7, 89.0, 100.0, 103.9, 104.0) for s in (1, -1)]
    vals += [float(info.tiny), -float(info.tiny), float(info.smallest_subnormal), -float(info.smallest_subnormal)]
    vals += [float(info.tiny) * 0.25, float(info.max), -float(info.max)]
    with np.errstate(over="ignore"):
        return np.array(vals, dtype=np.float64).astype(dtype)


def sample(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...], scale: float = 3.0) -> np.ndarray:
    """Random values over several magnitudes, every edge value in the first positions."""
    n = int(np.prod(shape))
    edges = edge_values(dtype)
    out = (rng.standard_normal(n) * scale * np.exp(rng.uniform(-3, 3, n))).astype(dtype)
    out[: min(n, edges.size)] = edges[:n]
    return out.reshape(shape)


def _reference(fn: Callable[..., Any], dtype: Any, *arrays: Any, round_back: bool = True) -> Any:
    """``fn`` on the NumPy backend; for float16, in float32 and rounded back (the kernels' arithmetic)."""
    half = np.dtype(dtype) == np.float16
    with np.errstate(all="ignore"):
        if not half:
            return fn(*arrays)
        result = fn(*[a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a for a in arrays])
        if not round_back:
            return result
        if isinstance(result, tuple):
            return tuple(r.astype(np.float16) for r in result)
        return result.astype(np.float16)


def _act_outputs(rng: np.random.Generator, act: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Values the forward pass can produce (its entry's ``outputs`` range), the ends of the range recurring.

    The sample goes onto a bounded range by tanh and onto a half-line by reflection, both of which
    keep small values small; the edge values come first, as ``sample`` puts them."""
    lo, hi = get_activation(act).outputs
    y = sample(rng, dtype, shape).astype(np.float64)
    if np.isfinite(lo) and np.isfinite(hi):  # odd about 0 where the range is, else up from lo
        y = hi * np.tanh(y) if lo == -hi else lo + (hi - lo) * np.abs(np.tanh(y))
    elif np.isfinite(lo):
        y = lo + np.abs(y - lo)
    elif np.isfinite(hi):
        y = hi - np.abs(y - hi)
    y = y.astype(dtype)
    start = min(y.size, edge_values(dtype).size)
    for k, end in enumerate(v for v in (lo, hi) if np.isfinite(v)):
        y.flat[start + k :: 8] = end
    return y


def _eps(dtype: Any) -> float:
    return float(np.finfo(dtype).eps)


# -- checks ---------------------------------------------------------------------------------------


def _row_sample(rng: np.random.Generator, dtype: Any, shape: tuple[int, int], scale: float = 3.0) -> np.ndarray:
    """Rows for a row activation: ``sample``'s values with each edge value in a row of its own (down
    the first columns), then a row of -inf, a row of equal values and a row of +-1e4 and 0."""
    rows, cols = shape
    z = sample(rng, dtype, (cols, rows), scale).T.copy()
    special = np.array(rng.standard_normal((3, cols)) * scale, dtype=dtype)
    special[0] = -np.inf
    special[1] = 2.5
    special[2, :3] = [1e4, -1e4, 0.0]
    return np.concatenate([z, special])


def _with_keep(act: str, fn: Callable[..., Any], z: np.ndarray, b: np.ndarray | None) -> tuple[Any, Any]:
    """``fn(z, b, out, keep)`` into fresh arrays: (y, z + b) of the pass that keeps z + b."""
    y, s = np.empty_like(z), np.empty_like(z)
    fn(z, b, act, y, keep=s)
    return y, s


def check_forward(backend: Backend, act: str, dtype: Any, with_bias: bool, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``bias_act_forward`` (bias row broadcast, or none) against the NumPy backend; for an entry with
    backward_from 'z' also the pass that keeps z + b (exact) beside y."""
    entry = get_activation(act)
    what = f"{act} forward ({np.dtype(dtype).name}, {'bias' if with_bias else 'no bias'})"
    if entry.rows:  # finite biases: an infinite one would make every row NaN
        z = _row_sample(rng, dtype, (32, 40))
        b = rng.standard_normal(40).astype(dtype) if with_bias else None
    else:
        z = sample(rng, dtype, (24, 40))
        b = sample(rng, dtype, (40,), scale=1.0)[::-1].copy() if with_bias else None
    d = backend.from_numpy
    got = backend.to_numpy(backend.bias_act_forward(d(z), None if b is None else d(b), act, backend.empty(z.shape, dtype)))
    want = _reference(lambda z, b: _NP.bias_act_forward(z, b, act, np.empty_like(z)), dtype, z, b)
    # float16: both sides add z + b in float, apply the activation in float and round once to half.
    # A result within a few tiny of 0 may pass through a denormal intermediate (e.g. erfc in gelu),
    # less precise on the host and flushed to 0 on a GPU: that close to 0 an absolute slack.
    near_zero = 8 * float(np.finfo(dtype).tiny)
    assert_ulp(got, want, tol.act(act).forward, what, atol=near_zero)
    if entry.backward_from == "z":
        dz = d(z)
        keep = dz if b is None else backend.empty(z.shape, dtype)  # a layer without bias keeps z itself
        y = backend.empty(z.shape, dtype)
        backend.bias_act_forward(dz, None if b is None else d(b), act, y, keep=keep)
        want_y, want_s = _reference(lambda z, b: _with_keep(act, _NP.bias_act_forward, z, b), dtype, z, b)
        assert_ulp(backend.to_numpy(keep), want_s, 0, f"{what}: the kept z + b")
        assert_ulp(backend.to_numpy(y), want_y, tol.act(act).forward, f"{what}, keeping z + b", atol=near_zero)


def check_backward(backend: Backend, act: str, dtype: Any, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``act_backward`` from what the forward pass keeps, against the NumPy backend: outputs y the
    forward pass can produce (softmax rows for a row entry), or any z for backward_from 'z'."""
    entry = get_activation(act)
    if entry.rows:
        z = _row_sample(rng, dtype, (32, 40))
        y = _reference(lambda z: _NP.bias_act_forward(z, None, act, np.empty_like(z)), dtype, z)
        dy = _row_sample(rng, dtype, (32, 40))[::-1].copy()
    else:
        y = sample(rng, dtype, (24, 40), scale=2.0) if entry.backward_from == "z" else _act_outputs(rng, act, dtype, (24, 40))
        dy = sample(rng, dtype, (24, 40))[::-1].copy()
    got = backend.to_numpy(backend.act_backward(backend.from_numpy(y), backend.from_numpy(dy), act, backend.empty(y.shape, dtype)))
    y_read, dy_read = y, dy
    if tol.flushes_inputs and np.dtype(dtype) == np.float32:  # e.g. relu: a denormal y > 0 is 0 on the device
        y_read, dy_read = (np.where(np.abs(a) < np.finfo(dtype).tiny, np.zeros_like(a), a) for a in (y, dy))
    want = _reference(lambda y, dy: _NP.act_backward(y, dy, act, np.empty_like(y)), dtype, y_read, dy_read)
    budget = tol.act(act)
    atol: Any = 0.0
    if budget.backward_dy_eps:
        with np.errstate(all="ignore"):
            size = np.abs(dy.astype(np.float64))
            if entry.rows:  # the row's dot product sum(dy * y) cancels: eps of the row's largest |dy|, times y
                largest = np.max(np.where(np.isfinite(size), size, 0), axis=1, keepdims=True)
                size = np.abs(y.astype(np.float64)) * largest
            atol = budget.backward_dy_eps * _eps(dtype) * size
    assert_ulp(got, want, budget.backward, f"{act} backward ({np.dtype(dtype).name})", atol=atol)


def _logits(rng: np.random.Generator, dtype: Any, batch: int = 16, classes: int = 10) -> np.ndarray:
    z = (rng.standard_normal((batch, classes)) * 4).astype(dtype)
    z[0, :3] = [1e4, -1e4, 0.0]
    z[1, :] = -1e4
    z[2, 0] = 87.5
    z[3, :2] = [-745.0, 745.0] if np.dtype(dtype) == np.float64 else [-60000.0, 60000.0]
    return z


def check_softmax_xent_grad(backend: Backend, dtype: Any, targets: str, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``softmax_xent_grad`` with class ids (raw index kernel) or target rows."""
    z = _logits(rng, dtype)
    with np.errstate(over="ignore"):  # float16 rows of +-60000 overflow z - max in the reference
        lse = _NP.logsumexp_rows(z)
    if targets == "ids":
        labels = rng.integers(0, z.shape[1], z.shape[0])
    else:
        labels = rng.dirichlet(np.ones(z.shape[1]), z.shape[0]).astype(dtype)
    scale = 1.0 / z.shape[0]
    d = backend.from_numpy
    got = backend.to_numpy(backend.softmax_xent_grad(d(z), d(lse), d(labels), scale, backend.empty(z.shape, dtype)))
    want = _reference(lambda z, lse, t: _NP.softmax_xent_grad(z, lse, t, scale, np.empty_like(z)), dtype, z, lse, labels)
    # exp(z - lse) - target cancels near 1: a few ulp of the largest term (scale), not of the result.
    assert_ulp(got, want, tol.loss_grad, f"softmax cross-entropy grad ({targets}, {np.dtype(dtype).name})", atol=4 * _eps(dtype) * scale)


def check_bce_logits(backend: Backend, dtype: Any, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``bce_logits_grad`` elementwise and ``bce_logits_sum``."""
    z = sample(rng, dtype, (32, 1))
    y = rng.uniform(0, 1, (32, 1)).astype(dtype)
    y[:6, 0] = [0, 1, 1, 0, 0.5, 1]
    scale = 1.0 / z.size
    eps = _eps(dtype)
    d = backend.from_numpy
    got = backend.to_numpy(backend.bce_logits_grad(d(z), d(y), scale, backend.empty(z.shape, dtype)))
    want = _reference(lambda z, y: _NP.bce_logits_grad(z, y, scale, np.empty_like(z)), dtype, z, y)
    assert_ulp(got, want, tol.loss_grad, f"bce-with-logits grad ({np.dtype(dtype).name})", atol=4 * eps * scale)
    finite = np.isfinite(z)
    zf, yf = z[finite].reshape(-1, 1), y[finite].reshape(-1, 1)
    want_sum = _reference(lambda z, y: _NP.bce_logits_sum(z, y), dtype, zf, yf, round_back=False)
    have_sum = float(backend.bce_logits_sum(d(zf), d(yf)))
    assert np.isclose(have_sum, float(want_sum), rtol=8 * eps, atol=8 * eps), f"bce-with-logits sum: kernel {have_sum}, numpy {want_sum}"


def check_bce_prob(backend: Backend, dtype: Any, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``bce_prob_grad`` and ``bce_prob_sum``, with probabilities outside (0, 1) clipped."""
    p = rng.uniform(0, 1, (40,)).astype(dtype)
    p[:8] = [0.0, 1.0, -0.0, 1e-30, 1 - 1e-9, np.nan, 0.5, 2.0]
    y = rng.uniform(0, 1, (40,)).astype(dtype)
    y[:8] = [0, 1, 1, 0, 1, 0, 0.5, 1]
    clip = 1e-7 if np.dtype(dtype) != np.float16 else 1e-3
    scale = 1.0 / p.size
    d = backend.from_numpy
    got = backend.to_numpy(backend.bce_prob_grad(d(p), d(y), clip, scale, backend.empty(p.shape, dtype)))
    want = _reference(lambda p, y: _NP.bce_prob_grad(p, y, clip, scale, np.empty_like(p)), dtype, p, y)
    assert_ulp(got, want, tol.loss_grad, f"bce grad ({np.dtype(dtype).name})")
    ok = ~np.isnan(p)
    want_sum = _reference(lambda p, y: _NP.bce_prob_sum(p, y, clip), dtype, p[ok], y[ok], round_back=False)
    have_sum = float(backend.bce_prob_sum(d(p[ok]), d(y[ok]), clip))
    assert np.isclose(have_sum, float(want_sum), rtol=16 * _eps(dtype)), f"bce sum: kernel {have_sum}, numpy {want_sum}"


def check_mse_grad(backend: Backend, dtype: Any, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    p = sample(rng, dtype, (8, 16))
    y = sample(rng, dtype, (8, 16), scale=1.0)[::-1].copy()
    scale = 1.0 / p.size
    d = backend.from_numpy
    got = backend.to_numpy(backend.mse_grad(d(p), d(y), scale, backend.empty(p.shape, dtype)))
    want = _reference(lambda p, y: _NP.mse_grad(p, y, scale, np.empty_like(p)), dtype, p, y)
    assert_ulp(got, want, tol.mse_grad + (1 if np.dtype(dtype) == np.float16 else 0), f"mse grad ({np.dtype(dtype).name})")


def _params(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...] = (16, 12)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = sample(rng, dtype, shape, scale=1.0)
    g = sample(rng, dtype, shape, scale=0.1)[::-1].copy()
    state = (np.abs(rng.standard_normal(shape)) * 0.01).astype(dtype)
    return p, g, state


SGD_CASES: list[dict[str, Any]] = [
    dict(lr=0.1, momentum=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.0, weight_decay=1e-2, nesterov=False),
    dict(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False),
    dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
]

ADAM_CASES: list[dict[str, Any]] = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1, decoupled=False),
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-2, step=7, decoupled=False),
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, step=3, decoupled=True),
]


def check_sgd(backend: Backend, dtype: Any, case: dict[str, Any], rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """One ``sgd_update`` of parameter and momentum buffer."""
    p, g, buf = _params(rng, dtype)
    has_buf = case["momentum"] != 0

    def ref(p: np.ndarray, g: np.ndarray, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, buf = p.copy(), buf.copy()
        _NP.sgd_update(p, g, buf if has_buf else None, **case)
        return p, buf

    dp, dbuf = backend.from_numpy(p), backend.from_numpy(buf)
    backend.sgd_update(dp, backend.from_numpy(g), dbuf if has_buf else None, **case)
    want_p, want_buf = _reference(ref, dtype, p, g, buf)
    ulp = tol.sgd + (1 if np.dtype(dtype) == np.float16 else 0)
    atol: Any = 0.0
    if tol.fused:  # p - lr*g and mu*buf + g as FMAs cancel without the intermediate rounding
        with np.errstate(over="ignore"):
            atol = 2 * _eps(dtype) * (np.abs(p.astype(np.float64)) + np.abs(buf.astype(np.float64)) + np.abs(g.astype(np.float64)))
    assert_ulp(backend.to_numpy(dp), want_p, ulp, f"sgd parameter ({np.dtype(dtype).name}, {case})", atol=atol)
    assert_ulp(backend.to_numpy(dbuf), want_buf, ulp, f"sgd buffer ({np.dtype(dtype).name}, {case})", atol=atol)


def check_adam(backend: Backend, dtype: Any, case: dict[str, Any], rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """One ``adam_update`` of parameter, m and v ."""
    p, g, v = _params(rng, dtype)
    m = (g * 0.5).astype(dtype)

    def ref(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        p, m, v = p.copy(), m.copy(), v.copy()
        _NP.adam_update(p, g, m, v, **case)
        return p, m, v

    d = backend.from_numpy
    dp, dm, dv = d(p), d(m), d(v)
    backend.adam_update(dp, d(g), dm, dv, **case)
    want_p, want_m, want_v = _reference(ref, dtype, p, g, m, v)
    um, uv, up = tol.adam
    f64 = np.float64
    atol_m = atol_v = atol_p = 0.0
    if tol.fused:
        with np.errstate(all="ignore"):
            atol_m = 2 * _eps(dtype) * (np.abs(m.astype(f64)) + np.abs(g.astype(f64)))
            atol_v = 2 * _eps(dtype) * (np.abs(v.astype(f64)) + g.astype(f64) ** 2)
            # An error of eps * (|m| + |g|) in a cancelling m1 reaches p through step_size / denominator.
            step_size, bc2_sqrt = Backend.adam_bias_corrections(case["lr"], case["beta1"], case["beta2"], case["step"])
            denom = np.sqrt(np.abs(want_v.astype(f64))) / bc2_sqrt + case["eps"]
            reach = step_size * (np.abs(m.astype(f64)) + np.abs(g.astype(f64))) / denom
            atol_p = 4 * _eps(dtype) * (np.abs(p.astype(f64)) + np.nan_to_num(reach, nan=0.0, posinf=np.inf))
    name = f"({np.dtype(dtype).name}, {case})"
    assert_ulp(backend.to_numpy(dm), want_m, um, f"adam m {name}", atol=atol_m)
    assert_ulp(backend.to_numpy(dv), want_v, uv, f"adam v {name}", atol=atol_v)
    assert_ulp(backend.to_numpy(dp), want_p, up, f"adam parameter {name}", atol=atol_p)


def _regression_pair(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Predictions with every edge value and targets, equal in some places (a zero error)."""
    p = sample(rng, dtype, (8, 16))
    y = sample(rng, dtype, (8, 16), scale=1.0)[::-1].copy()
    y[7, :5] = p[7, :5]
    return p, y


def _check_step(
    backend: Backend, dtype: Any, what: str, grad: np.ndarray, rng: np.random.Generator,
    step: Callable[..., Any], total: Callable[..., Any],
) -> None:
    """A fused regression step (gradient and summed loss in one kernel) on finite moderate values:
    its gradient is the separate kernel's, its sum (x weight) the NumPy backend's."""
    p = (rng.standard_normal((8, 16)) * 3).astype(dtype)
    y = (rng.standard_normal((8, 16)) * 3).astype(dtype)
    scale, weight = 1.0 / p.size, 0.25
    d = backend.from_numpy
    acc = backend.zeros((2,), np.float64)
    got = backend.to_numpy(step(d(p), d(y), scale, weight, backend.empty(p.shape, dtype), acc))
    want = backend.to_numpy(grad(d(p), d(y), scale, backend.empty(p.shape, dtype)))
    assert_ulp(got, want, 0, f"{what} step grad ({np.dtype(dtype).name})")
    want_sum = float(_reference(lambda p, y: total(p, y), dtype, p, y, round_back=False)) * weight
    have = backend.to_numpy(acc)
    assert np.isclose(have[0], want_sum, rtol=8 * _eps(dtype)) and have[1] == 0, f"{what} step sum: kernel {have}, numpy {want_sum}"


def check_mae(backend: Backend, dtype: Any, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``mae_grad`` (sign(0) = 0, NaN kept) and the fused ``mae_step`` against the NumPy backend."""
    p, y = _regression_pair(rng, dtype)
    scale = 1.0 / p.size
    d = backend.from_numpy
    got = backend.to_numpy(backend.mae_grad(d(p), d(y), scale, backend.empty(p.shape, dtype)))
    want = _reference(lambda p, y: _NP.mae_grad(p, y, scale, np.empty_like(p)), dtype, p, y)
    assert_ulp(got, want, tol.mse_grad, f"mae grad ({np.dtype(dtype).name})")
    _check_step(backend, dtype, "mae", backend.mae_grad, rng, backend.mae_step, _NP.abs_error_sum)


def check_huber(backend: Backend, dtype: Any, delta: float, rng: np.random.Generator, tol: Tolerances = HOST) -> None:
    """``huber_grad`` (the error clamped to [-delta, delta]) and the fused ``huber_step``."""
    p, y = _regression_pair(rng, dtype)
    p[6, :4] = y[6, :4] + np.array([delta, -delta, 0.5 * delta, 2 * delta], dtype)  # both sides of the bend
    scale = 1.0 / p.size
    d = backend.from_numpy
    got = backend.to_numpy(backend.huber_grad(d(p), d(y), delta, scale, backend.empty(p.shape, dtype)))
    want = _reference(lambda p, y: _NP.huber_grad(p, y, delta, scale, np.empty_like(p)), dtype, p, y)
    assert_ulp(got, want, tol.mse_grad, f"huber grad ({np.dtype(dtype).name}, delta {delta})")

    def grad(p: Any, y: Any, scale: float, out: Any) -> Any:
        return backend.huber_grad(p, y, delta, scale, out)

    def step(p: Any, y: Any, scale: float, weight: float, out: Any, acc: Any) -> Any:
        return backend.huber_step(p, y, delta, scale, weight, out, acc)

    _check_step(backend, dtype, f"huber (delta {delta})", grad, rng, step, lambda p, y: _NP.huber_sum(p, y, delta))
