"""The layers beyond Dense (normalization, activation layers, noise): float64 central-difference
gradient checks of x and every parameter on NumPy and the stand-in, Keras 3 (torch backend) as
the float64 oracle of forward, backward and BatchNormalization's moving statistics, config round
trips, models that train and save them, and hostile arguments."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.layers.context import INFERENCE, TRAINING
from fcgpu import layers as L

F64 = "float64"


def _layers():
    """name -> (factory of a float64 fcgpu layer, training flag of the check)."""
    return {
        "bn_train": (lambda: L.BatchNormalization(momentum=0.8, dtype=F64), True),
        "bn_infer": (lambda: L.BatchNormalization(dtype=F64), False),
        "bn_plain": (lambda: L.BatchNormalization(center=False, scale=False, dtype=F64), True),
        "ln": (lambda: L.LayerNormalization(epsilon=1e-2, dtype=F64), False),
        "ln_plain": (lambda: L.LayerNormalization(center=False, scale=False, dtype=F64), False),
        "relu": (lambda: L.ReLU(dtype=F64), False),
        "relu_args": (lambda: L.ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3, dtype=F64), False),
        "leaky": (lambda: L.LeakyReLU(dtype=F64), False),
        "elu": (lambda: L.ELU(alpha=0.7, dtype=F64), False),
        "prelu": (lambda: L.PReLU(dtype=F64), False),
        "softmax": (lambda: L.Softmax(dtype=F64), False),
        "noise": (lambda: L.GaussianNoise(0.3, seed=5, dtype=F64), True),
        "normalization": (lambda: L.Normalization(mean=[0.5, -1, 2, 0, 1], variance=[4, 1, 0.25, 2, 9], dtype=F64), False),
        "normalization_inv": (lambda: L.Normalization(mean=0.5, variance=4.0, invert=True, dtype=F64), False),
    }


def _built(name, rng):
    factory, training = _layers()[name]
    layer = factory()
    layer.build(5)
    if layer.weight_count():  # random values, so a wrong formula cannot hide behind ones and zeros
        weights = [rng.standard_normal(w.shape) for w in layer.get_weights()]
        if isinstance(layer, L.BatchNormalization):
            weights[-1] = rng.random(5) + 0.5
        layer.set_weights(weights)
    return layer, training


def _input(rng):
    x = rng.standard_normal((6, 5)) * 2
    x[np.abs(x) < 0.05] += 0.2  # away from the kinks of the relu family
    x[np.abs(x - 0.3) < 0.05] += 0.2
    x[np.abs(x - 1.5) < 0.05] += 0.2
    return x


@pytest.mark.parametrize("name", sorted(_layers()))
def test_gradients_match_central_differences(backend, name):
    rng = np.random.default_rng(len(name))
    layer, training = _built(name, rng)
    x, eps = _input(rng), 1e-6
    y = fc.to_numpy(layer.forward(x, TRAINING if training else INFERENCE))
    w = rng.standard_normal(y.shape)

    def loss():
        if isinstance(layer, L.GaussianNoise):
            layer.step = 0  # the same noise every time
        return float(np.sum(fc.to_numpy(layer.forward(x, TRAINING if training else INFERENCE)) * w))

    if isinstance(layer, L.GaussianNoise):
        layer.step = 0
        layer.forward(x, TRAINING)
    dx = fc.to_numpy(layer.backward(w))
    grads = {n: fc.to_numpy(g).copy() for n, _, g in layer.parameters()}
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x[idx] += eps
        up = loss()
        x[idx] -= 2 * eps
        down = loss()
        x[idx] += eps
        numeric[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-7)
    assert set(grads) == {n for n, _, _ in layer.parameters()}
    for n, p, _ in layer.parameters():
        host = fc.to_numpy(p).copy()
        want = np.zeros_like(host)
        for idx in np.ndindex(host.shape):
            for sign in (1, -1):
                value = host.copy()
                value[idx] += sign * eps
                p[...] = layer.backend.from_numpy(value)
                want[idx] += sign * loss() / (2 * eps)
            p[...] = layer.backend.from_numpy(host)
        np.testing.assert_allclose(grads[n], want, rtol=1e-6, atol=1e-7, err_msg=n)
    if name != "noise":  # the check could fail: a perturbed gradient is caught
        assert not np.allclose(dx + 1e-3, numeric, rtol=1e-6, atol=1e-7)


# -- Keras 3 (torch backend) as the oracle, float64 ------------------------------------------------
def _keras_layer(name):
    keras = pytest.importorskip("keras")
    k = keras.layers
    return {
        "bn_train": lambda: k.BatchNormalization(momentum=0.8, dtype=F64),
        "bn_infer": lambda: k.BatchNormalization(dtype=F64),
        "bn_plain": lambda: k.BatchNormalization(center=False, scale=False, dtype=F64),
        "ln": lambda: k.LayerNormalization(epsilon=1e-2, dtype=F64),
        "ln_plain": lambda: k.LayerNormalization(center=False, scale=False, dtype=F64),
        "relu": lambda: k.ReLU(dtype=F64),
        "relu_args": lambda: k.ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3, dtype=F64),
        "leaky": lambda: k.LeakyReLU(dtype=F64),
        "elu": lambda: k.ELU(alpha=0.7, dtype=F64),
        "prelu": lambda: k.PReLU(dtype=F64),
        "softmax": lambda: k.Softmax(dtype=F64),
        "normalization": lambda: k.Normalization(mean=[0.5, -1, 2, 0, 1], variance=[4, 1, 0.25, 2, 9], dtype=F64),
        "normalization_inv": lambda: k.Normalization(mean=0.5, variance=4.0, invert=True, dtype=F64),
    }[name]()


@pytest.mark.parametrize("name", sorted(set(_layers()) - {"noise"}))
def test_forward_and_backward_match_keras(backend, name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    layer, training = _built(name, rng)
    ours_before = layer.get_weights()
    klayer = _keras_layer(name)
    klayer.build((None, 5))
    if ours_before:
        klayer.set_weights(ours_before)
    for step in range(3):  # BatchNormalization's moving statistics move three times
        x = _input(rng)
        w = rng.standard_normal(x.shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = klayer(xt, training=training)
        (yt * torch.tensor(w)).sum().backward()
        y = fc.to_numpy(layer.forward(x, TRAINING if training else INFERENCE))
        dx = fc.to_numpy(layer.backward(w))
        # Keras 3 on torch computes its normalization layers in float32 even under dtype='float64'
        # (LayerNormalization's y has float32 digits, measured): against Keras those are checked to
        # float32 accuracy, and to float64 accuracy against torch.nn.functional below.
        tol = 1e-6 if name.startswith(("bn", "ln", "normalization")) else 1e-10
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol * 10, atol=tol)
        grads = {n.rpartition("/")[2]: fc.to_numpy(g) for n, _, g in layer.parameters()}
        for v in klayer.trainable_weights:
            np.testing.assert_allclose(grads[v.name], v.value.grad.numpy(), rtol=tol * 10, atol=tol, err_msg=v.name)
            v.value.grad = None
    for ours, theirs in zip(layer.get_weights(), klayer.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
    if name == "bn_train":  # the moving statistics did move
        assert not np.allclose(layer.get_weights()[2], ours_before[2])
    assert layer.name == klayer.name or layer.name.startswith(klayer.name.rstrip("_0123456789"))


def test_bn_inference_matches_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    layer, _ = _built("bn_infer", rng)
    gamma, beta, mean, var = (torch.tensor(w) for w in layer.get_weights())
    x = _input(rng)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, mean, var, gamma.requires_grad_(), beta.requires_grad_(), False, 0.0, 1e-3)
    w = rng.standard_normal(x.shape)
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(fc.to_numpy(layer(x)), yt.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fc.to_numpy(layer.backward(w)), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    grads = {n.rpartition("/")[2]: fc.to_numpy(g) for n, _, g in layer.parameters()}
    np.testing.assert_allclose(grads["gamma"], gamma.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["beta"], beta.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_training_normalization_matches_torch_in_float64(backend, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    layer, _ = _built("bn_train" if kind == "batch" else "ln", rng)
    weights = layer.get_weights()
    gamma, beta = (torch.tensor(w, requires_grad=True) for w in weights[:2])
    if kind == "batch":
        mean, var = torch.tensor(weights[2]), torch.tensor(weights[3])
    for _ in range(3):
        x = _input(rng)
        w = rng.standard_normal(x.shape)
        xt = torch.tensor(x, requires_grad=True)
        if kind == "batch":  # torch's running variance is unbiased; Keras's moving variance, biased, is checked apart
            yt = F.batch_norm(xt, None, None, gamma, beta, True, 0.0, 1e-3)
        else:
            yt = F.layer_norm(xt, (5,), gamma, beta, 1e-2)
        (yt * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(fc.to_numpy(layer.forward(x, TRAINING)), yt.detach().numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(fc.to_numpy(layer.backward(w)), xt.grad.numpy(), rtol=1e-11, atol=1e-12)
        grads = {n.rpartition("/")[2]: fc.to_numpy(g) for n, _, g in layer.parameters()}
        np.testing.assert_allclose(grads["gamma"], gamma.grad.numpy(), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(grads["beta"], beta.grad.numpy(), rtol=1e-11, atol=1e-12)
        gamma.grad = beta.grad = None
        if kind == "batch":  # Keras's update, with the biased batch variance, in float64
            mean = mean * 0.8 + torch.tensor(x.mean(0)) * 0.2
            var = var * 0.8 + torch.tensor(x.var(0)) * 0.2
    if kind == "batch":
        np.testing.assert_allclose(layer.get_weights()[2], mean.numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(layer.get_weights()[3], var.numpy(), rtol=1e-13, atol=1e-14)


def test_normalization_adapt_matches_keras(backend):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(3)
    data = rng.standard_normal((50, 4)) * [1, 10, 0.1, 3] + [5, -2, 0, 1]
    ours, theirs = L.Normalization(dtype=F64), keras.layers.Normalization(dtype=F64)
    ours.adapt(data)
    theirs.adapt(data)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # Keras adapts in float32
    assert len(ours.non_trainable_weights) == 3 and ours.parameters() == []
    np.testing.assert_allclose(fc.to_numpy(ours(data)), np.asarray(theirs(data)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.get_weights()[1], data.var(axis=0), rtol=1e-13)


def test_gaussian_noise_only_in_training_and_the_same_on_every_backend(backend_named):
    x = np.ones((40, 30))
    outs = []
    for name in ("numpy", "cupy-standin"):
        with fc.use_backend(backend_named(name)):
            layer = L.GaussianNoise(0.5, seed=11, dtype=F64)
            np.testing.assert_array_equal(fc.to_numpy(layer(x)), x)
            outs.append(fc.to_numpy(layer(x, training=True)))
            assert layer.step == 1
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-13)
    assert abs(np.std(outs[0] - 1) - 0.5) < 0.05


# -- models, configs and saving ------------------------------------------------------------------------
def _model():
    return fc.Sequential([
        fc.Input(shape=(6,)), L.Dense(8), L.BatchNormalization(), L.ReLU(max_value=6.0), L.Dense(8),
        L.LayerNormalization(), L.PReLU(), L.ELU(alpha=0.5), L.LeakyReLU(0.1), L.GaussianNoise(0.1, seed=1),
        L.Dense(3), L.Softmax(),
    ])


def test_a_model_trains_saves_and_loads_with_its_moving_statistics(backend, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    model = _model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    bn = model.layers[1]
    before = bn.get_weights()
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = bn.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(after, before))  # gamma, beta trained; statistics moved
    assert len(model.non_trainable_weights) == 2 and len(bn.parameters()) == 2
    assert model.count_params() == sum(int(np.prod(w.shape)) for w in model.get_weights())
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(fc.to_numpy(loaded.predict(x, verbose=0)), fc.to_numpy(model.predict(x, verbose=0)), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(_layers()))
def test_config_round_trips(name):
    layer, _ = _built(name, np.random.default_rng(1))
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    assert fc.saving.serialization.deserialize(config).get_config() == config


def test_dense_takes_activation_functions_of_fcgpu_and_keras():
    keras = pytest.importorskip("keras")
    for fn, name in ((fc.activations.relu, "relu"), (keras.activations.gelu, "gelu"), (keras.activations.swish, "silu"),
                     (fc.activations.softmax, "softmax"), (keras.activations.linear, "linear")):
        assert L.Dense(3, activation=fn).get_config()["activation"] == name
    np.testing.assert_allclose(fc.activations.relu(np.array([-1.0, 2.0])), [0.0, 2.0])
    np.testing.assert_allclose(fc.activations.sigmoid(np.zeros((2, 2))), 0.5)
    with pytest.raises(ValueError, match="activation"):
        L.Dense(3, activation=lambda x: x)
    with pytest.raises(ValueError, match="hard_sigmoid"):
        L.Dense(3, activation=keras.activations.hard_sigmoid)


# -- hostile arguments and inputs ----------------------------------------------------------------------
@pytest.mark.parametrize("make, error, words", [
    (lambda: L.BatchNormalization(axis=0), ValueError, ["axis", "0"]),
    (lambda: L.BatchNormalization(momentum=float("nan")), ValueError, ["momentum", "nan"]),
    (lambda: L.BatchNormalization(momentum=1.5), ValueError, ["momentum", "1.5"]),
    (lambda: L.BatchNormalization(epsilon=0), ValueError, ["epsilon", "0"]),
    (lambda: L.BatchNormalization(center="yes"), TypeError, ["center", "yes"]),
    (lambda: L.BatchNormalization(gamma_initializer="nope"), ValueError, ["gamma_initializer", "nope"]),
    (lambda: L.BatchNormalization(synchronized=True), ValueError, ["synchronized"]),
    (lambda: L.BatchNormalization(dtype="mixed_float16"), TypeError, ["dtype", "mixed_float16"]),
    (lambda: L.LayerNormalization(axis=[0, 1]), ValueError, ["axis", "[0, 1]"]),
    (lambda: L.LayerNormalization(dtype="float16"), TypeError, ["dtype", "float16"]),
    (lambda: L.ReLU(max_value=-1), ValueError, ["max_value", "-1"]),
    (lambda: L.ReLU(negative_slope=None), TypeError, ["negative_slope", "None"]),
    (lambda: L.ReLU(threshold=float("inf")), ValueError, ["threshold", "inf"]),
    (lambda: L.LeakyReLU(negative_slope=-0.1), ValueError, ["negative_slope", "-0.1"]),
    (lambda: L.ELU(alpha="1"), TypeError, ["alpha", "'1'"]),
    (lambda: L.PReLU(shared_axes=[1]), ValueError, ["shared_axes", "[1]"]),
    (lambda: L.Softmax(axis=0), ValueError, ["axis", "0"]),
    (lambda: L.GaussianNoise(1.5), ValueError, ["stddev", "1.5"]),
    (lambda: L.GaussianNoise(0.1, seed=-1), ValueError, ["seed", "-1"]),
    (lambda: L.Normalization(mean=1.0), ValueError, ["mean", "variance"]),
    (lambda: L.Normalization(mean=[1.0, 2.0], variance=[1.0]), ValueError, ["same shape"]),
    (lambda: L.Normalization(mean=0.0, variance=-1.0), ValueError, ["variance", "-1"]),
])
def test_bad_arguments_are_refused_naming_them(make, error, words):
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value)


def test_hostile_inputs_and_weights():
    layer = L.BatchNormalization()
    layer.build(4)
    with pytest.raises(ValueError, match=r"expected 4 features.*got shape \(2, 3\)"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"weights\[1\] \(beta\): expected shape \(4,\).*\(3,\)"):
        layer.set_weights([np.ones(4), np.ones(3), np.zeros(4), np.ones(4)])
    with pytest.raises(ValueError, match="expected a list of 4 arrays"):
        layer.set_weights([np.ones(4)])
    with pytest.raises(ValueError, match="NaN"):
        layer.set_weights([np.ones(4), np.array([0, np.nan, 0, 0]), np.zeros(4), np.ones(4)])
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 4)))
    norm = L.Normalization()
    with pytest.raises(ValueError, match=r"data: expected a non-empty array \(samples, features\)"):
        norm.adapt(np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"data: expected a non-empty array \(samples, features\)"):
        norm.adapt(np.zeros((2, 2, 2)))
    norm.adapt(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected 2 features"):
        norm.adapt(np.zeros((3, 5)))
    model = fc.Sequential([fc.Input(shape=(3,)), L.Dense(4, dtype="mixed_float16")])
    with pytest.raises(TypeError, match="float16"):
        model.add(L.BatchNormalization())


def test_normalization_weights_have_keras_shapes_both_ways(backend):
    """mean, variance (features,) and a 0-d count, as Keras's: weights move both ways by set_weights."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(4).normal(size=(20, 5))
    ours = fc.Sequential([fc.Input((5,)), L.Normalization()])
    ours.layers[0].adapt(x)
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Normalization()])
    theirs.layers[0].adapt(x)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    theirs.set_weights(ours.get_weights())
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
