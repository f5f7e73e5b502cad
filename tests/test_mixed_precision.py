"""Mixed precision: policies, float32 master weights with a half copy written by the update, and
the loss scaler's skip / halve / grow rules, on NumPy and the CuPy stand-in."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import mixed_precision as mp


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    mp.set_global_policy("float32")


def _model(policy: str, width: int = 8) -> fc.Sequential:
    model = fc.Sequential([fc.Dense(16, activation="relu", dtype=policy), fc.Dense(3, activation="softmax", dtype=policy)])
    model.build(width)
    return model


def test_policies_have_keras_dtypes():
    assert mp.global_policy().name == "float32"
    p = mp.Policy("mixed_float16")
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_float16", np.float16, np.float32)
    assert mp.Policy("float64").compute_dtype == np.float64
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        mp.Policy("half")
    mp.set_global_policy("mixed_float16")
    layer = fc.Dense(4)
    assert layer.dtype == np.float32 and layer.compute_dtype == np.float16 and layer.dtype_policy.name == "mixed_float16"
    assert layer.get_config()["dtype"] == "mixed_float16"
    assert fc.Dense.from_config(layer.get_config()).dtype_policy == p


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_master_weights_float32_outputs_half(backend, policy):
    if policy == "mixed_bfloat16":
        pytest.importorskip("ml_dtypes")
    model = _model(policy)
    layer = model.layers[0]
    y = model.predict(np.random.rand(5, 8).astype(np.float32))
    assert layer.kernel.dtype == np.float32 and layer.bias.dtype == np.float32
    assert fc.to_numpy(layer(np.ones((2, 8), np.float32))).dtype == mp.Policy(policy).compute_dtype
    assert np.isfinite(y).all()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_update_writes_the_half_copy(backend, policy):
    if policy == "mixed_bfloat16":
        pytest.importorskip("ml_dtypes")
    model = _model(policy)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    x, y = np.random.rand(32, 8).astype(np.float32), np.random.randint(0, 3, 32)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    compute = mp.Policy(policy).compute_dtype
    for layer in model.layers:
        assert layer.half_copies()
        for name, half in layer.half_copies().items():
            master = layer.kernel if name.endswith("kernel") else layer.bias
            assert fc.to_numpy(half).dtype == compute
            np.testing.assert_array_equal(fc.to_numpy(half), fc.to_numpy(master).astype(compute))


def test_overflow_skips_the_step_and_halves_the_scale(backend):
    model = _model("mixed_float16")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    assert isinstance(model.optimizer, fc.optimizers.LossScaleOptimizer)
    assert model.optimizer.loss_scale == 2.0**15
    before = [w.copy() for w in model.get_weights()]
    x = np.full((4, 8), 6e4, np.float32)  # float16 activations overflow: an inf forward, not a crash
    model.train_step(x, np.zeros(4, np.int64))
    assert model.optimizer.loss_scale == 2.0**14 and model.optimizer.iterations == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_growth_after_dynamic_growth_steps(backend):
    model = _model("mixed_float16")
    opt = fc.optimizers.LossScaleOptimizer(fc.optimizers.SGD(0.01), initial_scale=4.0, dynamic_growth_steps=3)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=opt)
    x, y = np.random.rand(8, 8).astype(np.float32), np.random.randint(0, 3, 8)
    for _ in range(3):
        model.train_step(x, y)
    assert opt.loss_scale == 8.0 and opt.iterations == 3


def test_small_updates_are_kept_as_in_float32(backend):
    """lr * grad below float16's resolution of the weights still moves the float32 master."""
    w = np.ones((4, 2), np.float32)
    layers = {}
    for policy in ("float32", "mixed_float16"):
        layer = fc.Dense(2, use_bias=False, dtype=policy)
        layer.set_weights([w])
        layer.forward(np.full((1, 4), 1.0, np.float32))
        layer.backward(np.full((1, 2), 1.0, np.float32), input_grad=False)
        opt = fc.optimizers.SGD(1e-5)
        for _ in range(10):
            opt.step(layer)
        layers[policy] = layer.get_weights()[0]
    assert (layers["mixed_float16"] < 1.0).all()
    np.testing.assert_allclose(layers["mixed_float16"], layers["float32"], rtol=0, atol=1e-6)


def test_digits_reach_float32_accuracy():
    pytest.importorskip("sklearn")
    from fcgpu.utils.datasets import load_digits

    (x, y), (xt, yt) = load_digits()
    accuracy = {}
    for policy in ("float32", "mixed_float16"):
        fc.set_seed(0)
        model = fc.Sequential([fc.Dense(64, activation="relu", dtype=policy), fc.Dense(10, activation="softmax", dtype=policy)])
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        model.fit(x, y, epochs=10, batch_size=32, verbose=0, shuffle=False)
        accuracy[policy] = model.evaluate(xt, yt, return_dict=True)["accuracy"]
    assert accuracy["mixed_float16"] >= accuracy["float32"] - 0.01


@pytest.mark.parametrize("backend_name", ["numpy", "cupy-standin"])
def test_bfloat16_digits_reach_float32_accuracy(backend_named, backend_name):
    """mixed_bfloat16 trains with float32 master weights, bfloat16 outputs and no loss scaler, to
    within 0.02 of float32's accuracy (NumPy computes bfloat16 in float32, rounding once)."""
    pytest.importorskip("sklearn")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from fcgpu.utils.datasets import load_digits

    (x, y), (xt, yt) = load_digits()
    accuracy = {}
    with fc.use_backend(backend_named(backend_name)):
        for policy in ("float32", "mixed_bfloat16"):
            fc.set_seed(0)
            model = fc.Sequential(
                [fc.Dense(64, activation="relu", dtype=policy), fc.Dense(10, activation="softmax", dtype=policy)]
            )
            model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
            model.fit(x, y, epochs=10, batch_size=32, verbose=0, shuffle=False)
            accuracy[policy] = model.evaluate(xt, yt, return_dict=True)["accuracy"]
        assert not isinstance(model.optimizer, fc.optimizers.LossScaleOptimizer)
        for layer in model.layers:
            assert layer.kernel.dtype == np.float32 and layer.bias.dtype == np.float32
        out = fc.to_numpy(model.layers[0](xt[:4]))
        assert out.dtype == np.dtype(ml_dtypes.bfloat16)
        probabilities = model.predict(xt[:4])
        assert np.isfinite(np.asarray(probabilities, np.float32)).all()
    assert accuracy["mixed_bfloat16"] >= accuracy["float32"] - 0.02


def test_bfloat16_without_ml_dtypes_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes raises ImportError
    with pytest.raises(ImportError, match="pip install ml_dtypes"):
        fc.Dense(4, dtype="mixed_bfloat16")
    fc.Dense(4, dtype="mixed_float16")  # the float16 policies never need it


def test_save_load_round_trip(tmp_path):
    model = _model("mixed_float16")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    path = tmp_path / "m.fcgpu"
    model.save(path)
    loaded = fc.load_model(path)
    assert loaded.layers[0].dtype_policy.name == "mixed_float16"
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.rand(3, 8).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))


def test_bfloat16_compiles_without_loss_scaling():
    model = _model("mixed_bfloat16")
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    assert not isinstance(model.optimizer, fc.optimizers.LossScaleOptimizer)


def test_tf32_switch():
    assert isinstance(mp.tf32_enabled(), bool)
    with pytest.raises(TypeError):
        mp.set_tf32("yes")


def test_tf32_cannot_change_once_cupy_has_read_it(monkeypatch):
    from fcgpu import mixed_precision as mp

    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.delenv("FCGPU_TF32", raising=False)
    monkeypatch.setattr(mp._tf32, "locked", False)
    fc.set_tf32(True)
    assert mp.tf32_enabled()
    fc.set_tf32(False)
    mp.note_gemm()  # what the CuPy backend does when it starts on the real CuPy
    with pytest.raises(RuntimeError, match="set_tf32: GEMMs already ran"):
        fc.set_tf32(True)
    fc.set_tf32(False)  # no change: fine


@pytest.mark.parametrize("half_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("which", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop_centered_momentum", "adagrad"])
def test_mixed_update_kernels_match_the_numpy_backend(backend_named, rng, which, half_name):
    """The fused updates for mixed precision (float32 master, unscaled gradient, half copy written in
    the same pass) on the CuPy backend's kernels against the NumPy backend, edge gradients included."""
    from fcgpu.mixed_precision import Policy

    half = Policy(f"mixed_{half_name}").compute_dtype
    numpy_backend, standin = backend_named("numpy"), backend_named("cupy-standin")
    p0 = rng.normal(size=257).astype(np.float32)
    g0 = (rng.normal(size=257) * 2.0**15).astype(np.float32)
    g0[:3] = [0.0, -0.0, 6.5e4]
    states = {k: np.abs(rng.normal(size=257)).astype(np.float32) for k in ("a", "b", "c")}
    results = []
    for b in (numpy_backend, standin):
        p, g = b.from_numpy(p0.copy()), b.from_numpy(g0.copy())
        s = {k: b.from_numpy(v.copy()) for k, v in states.items()}
        h = b.from_numpy(np.zeros(257, half))
        kw = dict(half=h, unscale=2.0**-15)
        if which == "sgd":
            b.sgd_update(p, g, None, 0.01, 0.0, 1e-4, False, **kw)
        elif which == "sgd_momentum":
            b.sgd_update(p, g, s["a"], 0.01, 0.9, 1e-4, True, **kw)
        elif which in ("adam", "adamw"):
            b.adam_update(p, g, s["a"], s["b"], 1e-3, 0.9, 0.999, 1e-8, 0.01, 3, which == "adamw", **kw)
        elif which == "rmsprop_centered_momentum":
            b.rmsprop_update(p, g, s["a"], s["b"], s["c"], 1e-3, 0.9, 0.5, 1e-7, 0.0, **kw)
        else:
            b.adagrad_update(p, g, s["a"], 1e-2, 1e-7, 0.0, **kw)
        results.append([fc.to_numpy(a).astype(np.float64) for a in (p, h, *s.values())])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # the half copy is the master rounded once
    np.testing.assert_array_equal(results[1][1], results[1][0].astype(half).astype(np.float64))


def test_a_regularizer_is_not_shrunk_by_the_loss_scale(backend):
    """Under mixed_float16 the penalty's gradient is scaled with the loss's, so the unscaled update
    is the float32 one: one step of an L2-regularized layer moves as without loss scaling."""
    results = []
    for policy in ("float32", "mixed_float16"):
        fc.set_seed(3)
        model = fc.Sequential([fc.Dense(2, dtype=policy, kernel_regularizer=fc.regularizers.L2(0.5), use_bias=False)])
        model.build((None, 3))
        model.set_weights([np.full((3, 2), 0.5, np.float32)])
        model.compile(loss="mse", optimizer=fc.optimizers.SGD(lr=0.1))
        model.train_step(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32))  # only the penalty acts
        results.append(model.get_weights()[0])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-3)
    np.testing.assert_allclose(results[0], 0.5 - 0.1 * 2 * 0.5 * 0.5, rtol=1e-6)
