"""Every entry of the activation table (fcgpu.activations) on every backend of the ``backend`` fixture:
forward against torch.nn.functional, backward (from what forward kept: y, or z + b) against float64
central differences and through a Dense layer against torch autograd, edge values, float16 inputs,
softmax's rows, and Keras's name lookup."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.layers.context import ForwardContext
from fcgpu.activations import ACTIVATIONS, LEAKY_RELU_SLOPE, get, get_activation

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the NumPy-only install: the lookup tests still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: it is the reference for the numerics")

NAMES = list(ACTIVATIONS)
KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "activations.cuh"


def torch_activation(name: str):
    """The torch.nn.functional counterpart of a table entry, on a (B, N) tensor."""
    return {
        "linear": lambda t: t,
        "relu": F.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "leaky_relu": lambda t: F.leaky_relu(t, LEAKY_RELU_SLOPE),
        "elu": F.elu,
        "selu": F.selu,
        "softplus": F.softplus,  # beta 1, threshold 20
        "softsign": F.softsign,
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_approximate": lambda t: F.gelu(t, approximate="tanh"),
        "softmax": lambda t: F.softmax(t, dim=-1),
    }[name]


def forward(backend, name: str, z: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    d = backend.from_numpy
    with np.errstate(all="ignore"):
        out = backend.bias_act_forward(d(z), None if b is None else d(b), name, backend.empty(z.shape, z.dtype))
    return backend.to_numpy(out)


def backward(backend, name: str, s: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dz from what forward keeps: act(s) for a backward from y, s itself for one from z."""
    kept = s if ACTIVATIONS[name].backward_from == "z" else forward(backend, name, s)
    d = backend.from_numpy
    with np.errstate(all="ignore"):
        return backend.to_numpy(backend.act_backward(d(kept), d(dy), name, backend.empty(s.shape, s.dtype)))


def away_from_kinks(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    """Normal values at least 1e-2 from 0 (relu, leaky_relu, selu) and from softplus's threshold 20."""
    s = rng.normal(size=shape) * scale
    s[np.abs(s) < 1e-2] += 0.5
    return s


# -- the table --------------------------------------------------------------------------------------


def test_every_entry_has_its_functor_a_torch_reference_and_a_valid_design() -> None:
    source = KERNELS.read_text()
    for name, entry in ACTIVATIONS.items():
        assert name == name.lower() and entry.name == name
        assert f"struct {entry.kernel_functor} " in source, entry.kernel_functor
        assert entry.backward_from in ("y", "z")
        lo, hi = entry.outputs
        assert lo < hi
    assert {n for n, e in ACTIVATIONS.items() if e.backward_from == "z"} == {"silu", "gelu", "gelu_approximate"}
    assert [n for n, e in ACTIVATIONS.items() if e.rows] == ["softmax"]
    assert "row_forward" in source and "row_backward" in source
    if torch is not None:
        for name in NAMES:
            torch_activation(name)


@pytest.mark.parametrize(
    "identifier,expected",
    [("relu", "relu"), ("ReLU", "relu"), ("GELU", "gelu"), ("swish", "silu"), ("Swish", "silu"), ("SiLU", "silu"),
     ("Softmax", "softmax"), ("LEAKY_RELU", "leaky_relu"), (None, "linear"), ("linear", "linear")],
)
def test_keras_lookup(identifier, expected) -> None:
    assert get(identifier).name == expected
    assert fc.activations.get(identifier) is ACTIVATIONS[expected]
    assert get(ACTIVATIONS[expected]) is ACTIVATIONS[expected]


def test_lookup_refuses_unknown_names() -> None:
    for bad in ("swishh", "", 3, "gelu_tanh"):
        with pytest.raises(ValueError, match=r"activation: expected one of None, \[.*'gelu'.*\] \(or \['swish'\]\)"):
            get_activation(bad)
    assert "swish" not in ACTIVATIONS  # an alias, not a second entry (no duplicate kernels)


def test_dense_takes_keras_names(backend) -> None:
    layer = fc.Dense(3, activation="Swish")
    assert layer.activation.name == "silu" and layer.get_config()["activation"] == "silu"
    assert "activation='gelu'" in repr(fc.Dense(2, activation="GELU"))


# -- forward against PyTorch ------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_torch(backend, rng, name, dtype) -> None:
    z = (rng.normal(size=(6, 9)) * 4).astype(dtype)
    z[0, :4] = [30.0, -30.0, 1e-3, -1e-3]
    b = rng.normal(size=9).astype(dtype)
    got = forward(backend, name, z, b)
    s = (z + b).astype(dtype)  # both add the bias in the layer's type
    want = torch_activation(name)(torch.from_numpy(s.astype(np.float64))).numpy()
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got, want, rtol=16 * eps, atol=16 * eps, err_msg=name)


# -- backward: central differences and torch autograd ------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_central_differences(backend, rng, name) -> None:
    """act_backward from what forward keeps against float64 central differences of the forward pass,
    of L = sum(dy * act(s)) (a row entry's outputs all move with each logit)."""
    s = away_from_kinks(rng, (3, 5))
    dy = rng.normal(size=s.shape)
    got = backward(backend, name, s, dy)
    h = 1e-6
    numeric = np.zeros_like(s)
    for i in np.ndindex(s.shape):
        plus, minus = s.copy(), s.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = np.sum(dy * (forward(backend, name, plus) - forward(backend, name, minus))) / (2 * h)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


@needs_torch
@pytest.mark.parametrize("batch", [None, 1, 4], ids=["1d", "b1", "b4"])
@pytest.mark.parametrize("name", NAMES)
def test_dense_gradients_match_torch_autograd(backend, rng, name, batch) -> None:
    """dx, kernel_grad and bias_grad of a float64 Dense against torch's Linear + activation; an
    inference pass in between (predict) leaves what backward reads (the kept z + b) alone."""
    m, n = 5, 4
    layer = fc.Dense(n, activation=name, dtype="float64")
    w, b = rng.normal(size=(m, n)), rng.normal(size=n)
    layer.set_weights([w, b])
    x = rng.normal(size=(m,) if batch is None else (batch, m))
    dy = rng.normal(size=(n,) if batch is None else (batch, n))
    y = fc.to_numpy(layer.forward(x))
    layer.infer(rng.normal(size=(7, m)))  # another batch's forward, kept nothing
    dx = fc.to_numpy(layer.backward(dy))

    xt = torch.tensor(np.atleast_2d(x), requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    yt = torch_activation(name)(xt @ wt + bt)
    (yt * torch.tensor(np.atleast_2d(dy))).sum().backward()
    np.testing.assert_allclose(np.atleast_2d(y), yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.atleast_2d(dx), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fc.to_numpy(layer.kernel_grad), wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fc.to_numpy(layer.bias_grad), bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["silu", "gelu", "gelu_approximate"])
def test_a_backward_from_z_keeps_the_pre_activation_of_its_own_forward(backend, rng, name) -> None:
    """Two forwards of different batches, then backward: the gradient of the second, from its own z + b;
    logits=True runs no activation and backward follows (dz = dy)."""
    layer = fc.Dense(3, activation=name, dtype="float64")
    layer.build(4)
    x1, x2, dy = rng.normal(size=(2, 4)), rng.normal(size=(2, 4)) * 3, rng.normal(size=(2, 3))
    layer.forward(x1)
    layer.forward(x2)
    g2 = fc.to_numpy(layer.backward(dy)).copy()
    fresh = fc.Dense(3, activation=name, dtype="float64")
    fresh.set_weights(layer.get_weights())
    fresh.forward(x2)
    np.testing.assert_array_equal(g2, fc.to_numpy(fresh.backward(dy)))
    layer.forward(x2, ForwardContext(logits=True))
    w = layer.get_weights()[0]
    np.testing.assert_allclose(fc.to_numpy(layer.backward(dy)), dy @ w.T, rtol=1e-14)


# -- edge values ----------------------------------------------------------------------------------

EDGES = np.array(
    [0.0, -0.0, 1e-40, -1e-40, 1.0, -1.0, 20.5, -20.5, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4,
     1e20, -1e20, 3.4e38, -3.4e38, np.inf, -np.inf, np.nan],
    np.float32,
)

# Where fcgpu gives the limit and PyTorch's float32 formula does not, because an intermediate of
# torch's own overflows (input -> fcgpu's value; torch gives inf or NaN there).
TORCH_OVERFLOWS = {
    ("gelu", "forward"): {3.4e38: 3.4e38, np.inf: np.inf},  # torch: inf (x * (1 + erf) overflows), NaN
    ("gelu_approximate", "backward"): {  # torch: 0 * inf in (1 - tanh^2) * (1 + 3k x^2) for |x| > 1.8e19
        1e20: 1.0, -1e20: 0.0, 3.4e38: 1.0, -3.4e38: 0.0, np.inf: 1.0, -np.inf: 0.0,
    },
}


def _edge_rows(name: str) -> np.ndarray:
    """The edge values in one row, or for a row entry each in a row of its own beside 0 and -1."""
    if ACTIVATIONS[name].rows:
        return np.stack([EDGES, np.zeros_like(EDGES), -np.ones_like(EDGES)], axis=1)
    return EDGES.reshape(1, -1)


def _torch_pass(name: str, z: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(z.astype(dtype), requires_grad=True)
    y = torch_activation(name)(t)
    weights = torch.zeros_like(y)
    weights[:, 0] = 1  # the first column's gradient, for a row entry too
    (y * weights).sum().backward()
    return y.detach().numpy(), t.grad.numpy()


@needs_torch
@pytest.mark.parametrize("name", NAMES)
def test_edge_values_are_finite_or_nan_as_torch_gives(backend, name) -> None:
    z = _edge_rows(name)
    dy = np.zeros_like(z)
    dy[:, 0] = 1
    ours = {"forward": forward(backend, name, z), "backward": backward(backend, name, z, dy)}
    ty, tg = _torch_pass(name, z, np.float32)
    exact_y, exact_g = _torch_pass(name, z, np.float64)
    for what, got, torch32, torch64 in (("forward", ours["forward"], ty, exact_y), ("backward", ours["backward"], tg, exact_g)):
        expected = torch32.copy()
        for value, limit in TORCH_OVERFLOWS.get((name, what), {}).items():
            expected[z == np.float32(value)] = limit
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{name} {what}: NaN where torch gives")
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected), err_msg=f"{name} {what}: finite where torch is")
        inf = np.isinf(expected)
        np.testing.assert_array_equal(got[inf], expected[inf], err_msg=f"{name} {what}: infinities")
        finite = np.isfinite(got) & np.isfinite(torch64)
        # Against torch in float64 on the same float32 inputs: float32's rounding, denormals aside;
        # a gradient to eps * |dy| (softmax's 1 - y is 0 in float32 once y rounds to 1).
        atol = 1e-37 if what == "forward" else 4 * float(np.finfo(np.float32).eps)
        np.testing.assert_allclose(got[finite], torch64[finite].astype(np.float32), rtol=1e-5, atol=atol,
                                   err_msg=f"{name} {what}")


@pytest.mark.parametrize("name", NAMES)
def test_float16_is_finite_for_finite_input(backend, rng, name) -> None:
    """Half layers compute in float: finite inputs give finite outputs and gradients wherever the
    true value fits in float16 (selu(65504) = 68824 does not)."""
    z = np.concatenate([np.linspace(-65504, 65504, 41), rng.normal(size=23) * 4, [0.0, -0.0, 6e-8, 1e-4]])
    z = z.astype(np.float16).reshape(-1, 17) if ACTIVATIONS[name].rows else z.astype(np.float16).reshape(1, -1)
    dy = np.ones_like(z)
    y, dz = forward(backend, name, z), backward(backend, name, z, dy)
    y64 = forward(fc.backends.resolve_backend("numpy")[0], name, z.astype(np.float64))
    dz64 = backward(fc.backends.resolve_backend("numpy")[0], name, z.astype(np.float64), dy.astype(np.float64))
    half_max = float(np.finfo(np.float16).max)
    fits = np.abs(y64) <= half_max
    assert np.all(np.isfinite(y[fits])), name
    assert np.all(np.isfinite(dz[np.abs(dz64) <= half_max])), name
    np.testing.assert_allclose(y[fits].astype(np.float64), y64[fits], rtol=2e-3, atol=1e-4)


# -- softmax's rows -----------------------------------------------------------------------------------


def test_softmax_rows_are_stable_and_follow_the_numpy_reference(backend) -> None:
    inf, nan = np.inf, np.nan
    z = np.array([
        [1e4, -1e4, 0.0, 1.0],      # huge logits: no overflow, the largest wins
        [3.0, 3.0, 3.0, 3.0],       # equal: uniform
        [-inf, 0.0, 1.0, -inf],     # some -inf: exactly 0 there
        [-inf, -inf, -inf, -inf],   # all -inf: NaN (0 / 0), as the reference and PyTorch
        [nan, 0.0, 1.0, 2.0],       # a NaN: NaN row
        [inf, 0.0, 1.0, 2.0],       # +inf: NaN row (inf - inf)
        [88.0, 89.0, -104.0, 0.0],  # exp would overflow without the shift
    ], np.float32)
    b = np.array([0.0, 0.5, -0.5, 0.25], np.float32)
    y = forward(backend, "softmax", z, b)
    ref = forward(fc.backends.resolve_backend("numpy")[0], "softmax", z, b)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(y).all(axis=1), [False, False, False, True, True, True, False])
    ok = ~np.isnan(y).any(axis=1)
    np.testing.assert_allclose(y[ok].sum(axis=1), 1.0, rtol=1e-6)
    assert y[0, 0] == 1.0 and y[0, 1] == 0.0 and y[2, 0] == 0.0 and y[2, 3] == 0.0
    np.testing.assert_allclose(y[1], [0.25 * np.exp(v) / np.exp(b).sum() * 4 for v in b], rtol=1e-6)
    np.testing.assert_allclose(y[ok], ref[ok], rtol=1e-6, atol=1e-30)
    if torch is not None:
        want = F.softmax(torch.tensor(z + b, dtype=torch.float64), dim=1).numpy()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        np.testing.assert_allclose(y[ok], want[ok], rtol=1e-6, atol=1e-30)


def test_softmax_backward_of_a_row_and_its_output_layer(backend, rng) -> None:
    """dz = y * (dy - sum(dy * y)) row by row: zero for a dy constant along a row (softmax is
    shift-invariant), and a Dense softmax forwards to probabilities."""
    s = rng.normal(size=(5, 6))
    y = forward(backend, "softmax", s)
    dz = backward(backend, "softmax", s, np.ones_like(s) * 3.0)
    np.testing.assert_allclose(dz, 0.0, atol=1e-15)
    dy = rng.normal(size=s.shape)
    want = y * (dy - (dy * y).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(backward(backend, "softmax", s, dy), want, rtol=1e-12, atol=1e-15)
    layer = fc.Dense(6, activation="softmax")
    probs = fc.to_numpy(layer(rng.normal(size=(3, 4)).astype(np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(probs >= 0)
