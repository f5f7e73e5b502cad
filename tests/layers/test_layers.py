"""Dense: forward/backward against float64 central differences and an independent NumPy reference,
on every backend of the ``backend`` fixture."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.activations import ACTIVATIONS as TABLE

ACTIVATIONS = list(TABLE)  # every entry of fcgpu.activations


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


# The test's own float64 formulas, written from the definitions without fcgpu: act(z) and act'(z).
# An activation missing here still gets the central-difference check and every kernel check.
CLOSED_FORMS = {
    "linear": (lambda z: z, np.ones_like),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
    "sigmoid": (_logistic, lambda z: _logistic(z) * (1.0 - _logistic(z))),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
}


def reference_forward(x, w, b, activation):
    z = x @ w + (b if b is not None else 0.0)
    return CLOSED_FORMS[activation][0](z), z


def reference_backward(x, w, z, dy, activation):
    dz = dy * CLOSED_FORMS[activation][1](z)
    return dz @ w.T, x.T @ dz, dz.sum(0)


def _layer_and_input(rng, batch, activation, use_bias, m=5, n=4):
    layer = fc.Dense(n, activation=activation, use_bias=use_bias, dtype="float64")
    layer.build(m)
    w = rng.normal(size=(m, n))
    b = rng.normal(size=n)
    layer.set_weights([w, b] if use_bias else [w])
    shape = (m,) if batch is None else (batch, m)
    while True:  # keep ReLU's kink away from the finite-difference step
        x = rng.normal(size=shape)
        z = np.atleast_2d(x) @ w + (b if use_bias else 0)
        if np.abs(z).min() > 1e-3:
            return layer, x, w, (b if use_bias else None)


def numeric_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("batch", [1, 7, 64, None], ids=["b1", "b7", "b64", "1d"])
def test_gradients_match_central_differences(backend, rng, activation, use_bias, batch):
    layer, x, w, b = _layer_and_input(rng, batch, activation, use_bias)
    r = rng.normal(size=(layer.units,) if batch is None else (batch, layer.units))

    def loss() -> float:
        return float(np.sum(fc.to_numpy(layer.forward(x)) * r))

    def loss_with(name, value):
        def f():
            weights = [w, b] if use_bias else [w]
            weights[{"w": 0, "b": 1}[name]] = value
            layer.set_weights(weights)
            return loss()

        return f

    layer.forward(x)
    dx = fc.to_numpy(layer.backward(r))
    dw = fc.to_numpy(layer.kernel_grad).copy()
    db = fc.to_numpy(layer.bias_grad).copy() if use_bias else None

    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    wn = w.copy()
    np.testing.assert_allclose(dw, numeric_grad(loss_with("w", wn), wn), rtol=1e-6, atol=1e-8)
    if use_bias:
        bn = b.copy()
        np.testing.assert_allclose(db, numeric_grad(loss_with("b", bn), bn), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", sorted(CLOSED_FORMS))
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("batch", [1, 7, 64, None], ids=["b1", "b7", "b64", "1d"])
def test_forward_and_backward_match_the_closed_form(backend, rng, activation, use_bias, batch):
    layer, x, w, b = _layer_and_input(rng, batch, activation, use_bias)
    r = rng.normal(size=(layer.units,) if batch is None else (batch, layer.units))
    y = fc.to_numpy(layer.forward(x))
    dx = fc.to_numpy(layer.backward(r))
    y_ref, z = reference_forward(np.atleast_2d(x), w, b, activation)
    dx_ref, dw_ref, db_ref = reference_backward(np.atleast_2d(x), w, z, np.atleast_2d(r), activation)
    assert y.shape == ((layer.units,) if batch is None else (batch, layer.units))
    np.testing.assert_allclose(np.atleast_2d(y), y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.atleast_2d(dx), dx_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fc.to_numpy(layer.kernel_grad), dw_ref, rtol=1e-12, atol=1e-14)
    if use_bias:
        np.testing.assert_allclose(fc.to_numpy(layer.bias_grad), db_ref, rtol=1e-12, atol=1e-14)


OTHERS = ["cupy-standin", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backends_agree_in_float32(rng, activation, other):
    from conftest import make_backend

    x = rng.normal(size=(33, 20)).astype(np.float32)
    dy = rng.normal(size=(33, 11)).astype(np.float32)
    results = []
    for name in ("numpy", other):
        with fc.use_backend(make_backend(name)):
            fc.set_seed(7)
            layer = fc.Dense(11, activation=activation, bias_initializer="ones")
            y = fc.to_numpy(layer(x)).copy()
            dx = fc.to_numpy(layer.backward(dy)).copy()
            results.append((y, dx, fc.to_numpy(layer.kernel_grad).copy(), fc.to_numpy(layer.bias_grad).copy()))
    for a, b in zip(*results):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("init", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "ones"])
def test_same_seed_same_parameters_on_every_backend(init, other):
    from conftest import make_backend

    weights = []
    for name in ("numpy", other):
        with fc.use_backend(make_backend(name)):
            fc.set_seed(42)
            layer = fc.Dense(9, kernel_initializer=init, bias_initializer=init)
            layer.build((None, 13))
            weights.append(layer.get_weights())
    for a, b in zip(*weights):
        assert a.tobytes() == b.tobytes()
    fc.set_seed(43)
    reseeded = fc.Dense(9, kernel_initializer=init)
    reseeded.build(13)
    if init != "ones":
        assert not np.array_equal(reseeded.get_weights()[0], weights[0][0])


def test_initializer_statistics():
    fc.set_seed(0)
    m, n = 400, 300
    for init, check in {
        "glorot_uniform": lambda w: np.abs(w).max() <= np.sqrt(6 / (m + n)),
        "he_uniform": lambda w: np.abs(w).max() <= np.sqrt(6 / m),
        "he_normal": lambda w: abs(w.std() - np.sqrt(2 / m)) < 0.05 * np.sqrt(2 / m),
        "glorot_normal": lambda w: abs(w.std() - np.sqrt(2 / (m + n))) < 0.05 * np.sqrt(2 / (m + n)),
        "zeros": lambda w: not w.any(),
    }.items():
        layer = fc.Dense(n, kernel_initializer=init)
        layer.build(m)
        assert check(layer.get_weights()[0].astype(np.float64)), init


def test_layer_basics(backend):
    layer = fc.Dense(3, activation="relu")
    assert not layer.built
    y = layer(np.ones((2, 4)))
    assert backend.owns(y) and y.dtype == np.float32 and y.shape == (2, 3)
    assert layer.built and layer.kernel.shape == (4, 3) and layer.bias.shape == (3,)
    assert layer.count_params() == 4 * 3 + 3
    no_bias = fc.Dense(3, use_bias=False)
    no_bias.build(4)
    assert no_bias.bias is None and no_bias.count_params() == 4 * 3 and len(no_bias.get_weights()) == 1
    k, b = layer.get_weights()
    assert isinstance(k, np.ndarray) and type(k) is np.ndarray
    k[...] = 99  # a copy: the layer is unchanged
    assert not np.any(fc.to_numpy(layer.kernel) == 99)
    # device arrays are accepted as input too
    y2 = layer(backend.from_numpy(np.ones((2, 4), np.float32)))
    np.testing.assert_array_equal(fc.to_numpy(y2), fc.to_numpy(y))


def test_outputs_a_caller_keeps_are_never_overwritten(backend, rng):
    layer = fc.Dense(4, activation="tanh")
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    y1 = layer(x1)
    kept = fc.to_numpy(y1).copy()
    y2 = layer(x2)
    np.testing.assert_array_equal(fc.to_numpy(y1), kept)
    assert not np.allclose(fc.to_numpy(y2), kept)
    dx1 = layer.backward(np.ones((5, 4)))
    kept_dx = fc.to_numpy(dx1).copy()
    layer(x1)
    layer.backward(np.full((5, 4), 3.0))
    np.testing.assert_array_equal(fc.to_numpy(dx1), kept_dx)


def test_buffers_are_reused_when_released(backend, rng):
    layer = fc.Dense(4)
    x = rng.normal(size=(5, 3))
    first = id(layer(x))  # dropped at once
    assert id(layer(x)) == first


def test_float16_and_float64_layers(backend, rng):
    x = rng.normal(size=(4, 6))
    for dtype in ("float64", "float16"):
        layer = fc.Dense(2, activation="sigmoid", dtype=dtype)
        y = layer(x)
        assert y.dtype == np.dtype(dtype)
        ref = 1 / (1 + np.exp(-(x @ layer.get_weights()[0].astype(np.float64))))
        tol = 1e-12 if dtype == "float64" else 2e-3
        np.testing.assert_allclose(fc.to_numpy(y).astype(np.float64), ref, rtol=tol, atol=tol)


def test_sigmoid_is_stable_for_huge_inputs(backend, recwarn):
    layer = fc.Dense(1, activation="sigmoid")
    layer.build(1)
    layer.set_weights([np.ones((1, 1)), np.zeros(1)])
    y = fc.to_numpy(layer(np.array([[-1e4], [1e4], [0.0], [-100.0]], np.float32)))
    assert [w for w in recwarn if issubclass(w.category, RuntimeWarning)] == []
    np.testing.assert_allclose(y[:, 0], [0.0, 1.0, 0.5, 0.0], atol=1e-30)
    dx = fc.to_numpy(layer.backward(np.ones((4, 1), np.float32)))
    assert np.isfinite(dx).all()


def test_relu_derivative_at_zero_is_zero(backend):
    layer = fc.Dense(1, activation="relu")
    layer.build(1)
    layer.set_weights([np.ones((1, 1)), np.zeros(1)])
    layer(np.array([[0.0], [-0.0], [2.0]]))
    np.testing.assert_array_equal(fc.to_numpy(layer.backward(np.ones((3, 1))))[:, 0], [0.0, 0.0, 1.0])


# -- errors -------------------------------------------------------------------------
def test_wrong_rank_is_a_clear_error(backend):
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, in_features\).*got shape \(2, 3, 4\)"):
        fc.Dense(2)(np.zeros((2, 3, 4)))


def test_wrong_feature_count_after_build(backend):
    layer = fc.Dense(2, name="hidden")
    layer(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"x: expected 3 features.*'hidden'.*got shape \(1, 5\)"):
        layer(np.zeros((1, 5)))


def test_non_numeric_input(backend):
    with pytest.raises(TypeError, match=r"x: expected a numeric array, got dtype <U1"):
        fc.Dense(2)(np.array([["a", "b"]]))


def test_set_weights_checks_shapes_and_types(backend):
    layer = fc.Dense(3)
    layer.build(2)
    with pytest.raises(ValueError, match=r"weights\[0\] \(kernel\): expected shape \(2, 3\).*got \(3, 3\)"):
        layer.set_weights([np.zeros((3, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"weights\[1\] \(bias\): expected shape \(3,\).*got \(4,\)"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"weights: expected a list of 2 arrays.*got 1"):
        layer.set_weights([np.zeros((2, 3))])
    with pytest.raises(TypeError, match=r"weights\[0\] \(kernel\): expected a numeric array"):
        layer.set_weights([np.array([["a"] * 3] * 2), np.zeros(3)])
    with pytest.raises(ValueError, match=r"weights\[1\] \(bias\): expected finite values"):
        layer.set_weights([np.zeros((2, 3)), np.array([0, np.nan, 0])])
    before = layer.get_weights()
    np.testing.assert_array_equal(before[0], layer.get_weights()[0])  # nothing half-written


def test_backward_before_forward(backend):
    layer = fc.Dense(2)
    layer.build(3)
    with pytest.raises(RuntimeError, match="backward called before forward on layer 'dense'"):
        layer.backward(np.zeros((1, 2)))


def test_backward_with_wrong_dy_shape(backend):
    layer = fc.Dense(2)
    layer(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 2\).*got \(4, 3\)"):
        layer.backward(np.zeros((4, 3)))


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match=r"activation: expected one of .*'relu'.*got 'rleu'"):
        fc.Dense(2, activation="rleu")
    with pytest.raises(ValueError, match=r"kernel_initializer: expected one of .*got 'glorot'"):
        fc.Dense(2, kernel_initializer="glorot")
    with pytest.raises(ValueError, match=r"bias_initializer: expected one of"):
        fc.Dense(2, bias_initializer="twos")
    with pytest.raises(ValueError, match=r"units: expected a positive int, got 0"):
        fc.Dense(0)
    with pytest.raises(TypeError, match=r"dtype: expected one of .*got 'int32'"):
        fc.Dense(2, dtype="int32")


def test_device_array_on_the_numpy_backend_is_a_backend_mix_error():
    from fcgpu.testing import stand_in_backend

    device_x = stand_in_backend().from_numpy(np.zeros((2, 3), np.float32))
    with fc.use_backend("numpy"):
        with pytest.raises(fc.BackendMismatch, match=r"x: expected a NumPy array, got a .*\(the layer or model lives on the numpy backend\)"):
            fc.Dense(2)(device_x)


def test_float16_layers_compute_like_the_kernels(backend):
    """Half precision computes in float32 and rounds once on every backend (the kernels' arithmetic)."""
    layer = fc.Dense(1, activation="sigmoid", dtype="float16")
    layer.build(1)
    layer.set_weights([np.ones((1, 1)), np.zeros(1)])
    y = fc.to_numpy(layer(np.full((4096, 1), -12.0)))
    np.testing.assert_allclose(y.astype(np.float64), 1 / (1 + np.exp(12.0)), rtol=1e-3)  # not 0: exp(12) > float16 max
    layer.backward(np.ones((4096, 1), np.float16))
    # a float16 accumulator would stop at 2048 + ... ; the column sum is accumulated in float
    expected = 4096 * float(y[0, 0]) * (1 - float(y[0, 0]))
    assert float(fc.to_numpy(layer.bias_grad)[0]) == pytest.approx(expected, rel=2e-3)


def test_more_bad_input_is_named():
    layer = fc.Dense(2, dtype="float16")
    layer.build(1)
    with pytest.raises(ValueError, match=r"weights\[0\] \(kernel\): expected finite values, got values that overflow float16"):
        layer.set_weights([np.array([[1e6, 0.0]]), np.zeros(2)])
    with pytest.raises(ValueError, match=r"x: expected a rectangular numeric array for layer 'dense'"):
        fc.Dense(2)([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match=r"use_bias: expected True or False, got 'no'"):
        fc.Dense(2, use_bias="no")
    with pytest.raises(ValueError, match=r"kernel_initializer: expected one of .*got <function"):
        fc.Dense(2, kernel_initializer=lambda shape: np.zeros(shape))
