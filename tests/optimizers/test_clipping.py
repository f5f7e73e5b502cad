"""Keras 3's gradient clipping (clipnorm, global_clipnorm, clipvalue) for every optimizer: against
Keras itself and an independent float64 reference, per flat buffer and per parameter, on the NumPy
backend and the stand-in; the device operations a step costs; configs and saved files; the norm
kernel run by the block emulator (the device's code path)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.cupy.backend import LOSS_BLOCK
from fcgpu.optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
from fcgpu.testing import count_device_ops
from fcgpu.testing import fake_cupy as cp
from support.block_emulator import emulated_backend

CLIPS = {"clipnorm": dict(clipnorm=1.0), "global_clipnorm": dict(global_clipnorm=1.5), "clipvalue": dict(clipvalue=0.5)}


def keras_module():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except Exception as e:  # not installed, or no usable backend
        pytest.skip(f"keras is not usable here: {e}")
    return keras


def clipped_reference(grads, clipnorm=None, global_clipnorm=None, clipvalue=None):
    """keras/src/optimizers/base_optimizer.py, _clip_gradients, written out in float64."""
    if clipnorm:
        return [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in grads]
    if global_clipnorm:
        n = np.sqrt(sum(np.sum(g * g) for g in grads))
        with np.errstate(divide="ignore"):
            scale = global_clipnorm * min(1.0 / n, 1.0 / global_clipnorm) + (n - n)
        return [g * scale for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return list(grads)


def model_of(dtype="float64"):
    model = fc.Sequential([fc.Dense(4, dtype=dtype), fc.Dense(2, dtype=dtype)])
    model.build((None, 3))
    return model


def gradient_steps(model, steps=5, seed=0):
    """Gradients a step for the model's four variables: the kernels' large (clipped by the norms),
    the biases' small (not), every variable with elements beyond the clip value."""
    rng = np.random.default_rng(seed)
    shapes = [w.shape for w in model.get_weights()]
    return [[rng.normal(size=s) * (3.0 if k % 2 == 0 else 0.4) for k, s in enumerate(shapes)] for _ in range(steps)]


def set_gradients(model, grads, path, dtype):
    if path == "model":  # the flat buffers' views, as a training step leaves them
        model(np.ones((2, 3), dtype))
        model.backward(np.ones((2, 2), dtype), input_grad=False)
    backend = model.layers[0].backend
    for (layer, attr), g in zip([(l, a) for l in model.layers for a in ("kernel_grad", "bias_grad")], grads):
        if path == "model":
            getattr(layer, attr)[...] = backend.from_numpy(g.astype(dtype))
        else:
            setattr(layer, attr, backend.from_numpy(g.astype(dtype)))


def train(model, opt, steps, path, dtype="float64"):
    for grads in steps:
        set_gradients(model, grads, path, dtype)
        opt.step(model if path == "model" else model.layers)
    return model.get_weights()


# Optimizers whose update is Keras 3's (SGD's too, at a constant learning rate): learning rates a
# float32 holds exactly, as Keras keeps its learning rate in a float32 variable.
KERAS_PAIRS = {
    "sgd": (lambda kw: SGD(0.125, **kw), lambda k, kw: k.optimizers.SGD(0.125, **kw)),
    "sgd_momentum": (lambda kw: SGD(0.125, momentum=0.5, **kw), lambda k, kw: k.optimizers.SGD(0.125, momentum=0.5, **kw)),
    "rmsprop": (lambda kw: RMSprop(0.0078125, **kw), lambda k, kw: k.optimizers.RMSprop(0.0078125, **kw)),
    "rmsprop_centered": (lambda kw: RMSprop(0.0078125, momentum=0.5, centered=True, **kw),
                         lambda k, kw: k.optimizers.RMSprop(0.0078125, momentum=0.5, centered=True, **kw)),
    "adagrad": (lambda kw: Adagrad(0.125, **kw), lambda k, kw: k.optimizers.Adagrad(0.125, **kw)),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
@pytest.mark.parametrize("path", ["model", "layers"])
@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("pair", sorted(KERAS_PAIRS))
def test_matches_keras_on_the_same_weights_and_gradients(backend, pair, clip, path):
    """Keras 3 itself (torch backend), float64 variables. Its torch backend rounds max(norm, c) and
    min(1/n, 1/c) to float32 (a Python float there is a float32 tensor), hence rtol 1e-6 for the
    norms; clipvalue is exact."""
    keras = keras_module()
    ours, theirs = KERAS_PAIRS[pair]
    model = model_of()
    start = model.get_weights()
    steps = gradient_steps(model)
    variables = [keras.Variable(w, dtype="float64") for w in start]
    kopt = theirs(keras, CLIPS[clip])
    for grads in steps:
        kopt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in grads], variables)
    got = train(model, ours(CLIPS[clip]), steps, path)
    tolerance = dict(rtol=0, atol=1e-15) if clip == "clipvalue" else dict(rtol=1e-6, atol=1e-8)
    for w, v in zip(got, variables):
        np.testing.assert_allclose(w, keras.ops.convert_to_numpy(v), **tolerance)
    twin = model_of()
    twin.set_weights(start)
    unclipped = train(twin, ours({}), steps, path)  # the clipping changed the result: the check above could fail
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(got, unclipped))


@pytest.mark.parametrize("path", ["model", "layers"])
@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("make", [lambda kw: Adam(0.01, **kw), lambda kw: AdamW(0.01, **kw),
                                  lambda kw: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01, **kw)])
def test_every_optimizer_updates_from_the_clipped_gradients(backend, make, clip, path):
    """Clipping then the unclipped update on the float64 reference's clipped gradients: the same
    weights to rounding, for the updates Keras does not share (PyTorch's Adam, AdamW, Nesterov)."""
    model, twin = model_of(), model_of()
    twin.set_weights(model.get_weights())
    steps = gradient_steps(model)
    got = train(model, make(CLIPS[clip]), steps, path)
    want = train(twin, make({}), [clipped_reference(g, **CLIPS[clip]) for g in steps], path)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    unclipped = train(model_of(), make({}), steps, path)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(got, unclipped))


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_float32_buffers_on_the_stand_in_are_the_numpy_backends(backend_named, clip):
    results = []
    for name in ("numpy", "cupy-standin"):
        with fc.use_backend(backend_named(name)):
            model = model_of("float32")
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        results.append(train(model, Adam(0.01, **CLIPS[clip]), gradient_steps(model), "model", "float32"))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("clip, expected", [(None, 1), ("clipvalue", 1), ("clipnorm", 2), ("global_clipnorm", 2)])
@pytest.mark.parametrize("make", [lambda kw: Adam(**kw), lambda kw: RMSprop(momentum=0.9, centered=True, **kw),
                                  lambda kw: SGD(**kw), lambda kw: Adagrad(**kw)])
def test_device_operations_a_step(backend_named, make, clip, expected):
    """One fused update a flat buffer; the norms add one launch a buffer, clipvalue none; no host read."""
    with fc.use_backend(backend_named("cupy-standin")):
        model = model_of("float32")
    opt = make(CLIPS[clip] if clip else {})
    set_gradients(model, gradient_steps(model, 1)[0], "model", "float32")
    opt.step(model)  # binds, lays the state out
    with count_device_ops() as ops:
        opt.step(model)
    assert ops.total == expected and ops.by_kind["kernel"] == expected, ops.summary()
    assert not ops.transfers, ops.summary()
    if clip in ("clipnorm", "global_clipnorm"):
        assert ops.names["fcgpu_clip_norms"] == 1


def test_the_norm_kernel_on_the_block_emulator_matches_numpy():
    """The device code path of fc_clip_norms_grid (block sums, the grid's last block), emulated."""
    rng = np.random.default_rng(3)
    g = np.zeros(3000, np.float32)
    spans = [(0, 7), (128, 1128), (1152, 2952)]  # gaps between, as the flat buffers align their slices
    for a, b in spans:
        g[a:b] = rng.normal(size=b - a) * 2
    segs = np.asarray(spans, np.int64).reshape(-1)
    np_backend = fc.backends.resolve_backend("numpy")[0]
    for per_variable in (True, False):
        want = np.zeros(3)
        np_backend.clip_factors([g], [segs], want, 3.0, per_variable, unscale=0.5)
        be = emulated_backend()
        got = cp.zeros(3, np.float64)
        be.clip_factors([cp.asarray(g)], [cp.asarray(segs)], got, 3.0, per_variable, unscale=0.5)
        n = 3 if per_variable else 1
        np.testing.assert_allclose(got.get()[:n], want[:n], rtol=1e-12)
        assert (be.launches[0].name, be.launches[0].size, be.launches[0].block_size) == (
            "fcgpu_clip_norms", 3 * LOSS_BLOCK, LOSS_BLOCK)
    norms = [np.sqrt(np.sum(g[a:b].astype(np.float64) ** 2)) * 0.5 for a, b in spans]
    np.testing.assert_allclose(want[:1], [3.0 * min(1 / np.sqrt(sum(n * n for n in norms)), 1 / 3.0)], rtol=1e-12)


def test_non_finite_gradients_give_nan_as_keras_does(backend):
    """A global norm that is inf or NaN makes every clipped gradient NaN (clip_by_global_norm)."""
    model = model_of()
    steps = gradient_steps(model, 1)
    steps[0][1][0] = np.inf
    got = train(model, SGD(0.125, global_clipnorm=1.0), steps, "model")
    assert all(np.isnan(w).all() for w in got)


def test_no_clipping_at_zero_and_at_most_one_argument():
    assert SGD(clipnorm=0.0).get_config()["clipnorm"] == 0.0
    model, twin = model_of(), model_of()
    twin.set_weights(model.get_weights())
    steps = gradient_steps(model, 2)
    for a, b in zip(train(model, SGD(0.1, clipnorm=0.0), steps, "model"), train(twin, SGD(0.1), steps, "model")):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Only one of"):
        Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="Only one of"):
        RMSprop(clipvalue=1.0, clipnorm=1.0)
    with pytest.raises(ValueError, match="clipvalue"):
        Adagrad(clipvalue=-1.0)
    with pytest.raises(TypeError, match="global_clipnorm"):
        SGD(global_clipnorm="1")
    with pytest.raises(TypeError):
        SGD(clip_norm=1.0)


@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_config_and_saved_files_keep_the_clipping(clip, rng, tmp_path):
    opt = Adam(0.01, **CLIPS[clip])
    config = opt.get_config()
    assert {k: config[k] for k in CLIPS[clip]} == CLIPS[clip]
    assert not set(config) & (set(CLIPS) - set(CLIPS[clip]))
    again = fc.optimizers.get(config)
    assert type(again) is Adam and again.get_config() == config
    model = fc.Sequential([fc.Dense(5, activation="tanh"), fc.Dense(3)])
    model.compile(loss="softmax_cross_entropy", optimizer=RMSprop(0.01, **CLIPS[clip]))
    x, y = rng.normal(size=(24, 4)).astype(np.float32) * 20, rng.integers(0, 3, 24)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert getattr(loaded.optimizer, clip) == CLIPS[clip][clip]
    for m in (model, loaded):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_setting_a_clip_argument_after_binding_takes_effect():
    model, twin = model_of(), model_of()
    twin.set_weights(model.get_weights())
    steps = gradient_steps(model, 3)
    opt = SGD(0.125)
    train(model, opt, steps[:1], "model")
    opt.clipvalue = 0.5
    got = train(model, opt, steps[1:], "model")
    want = train(twin, SGD(0.125), [steps[0]] + [clipped_reference(g, clipvalue=0.5) for g in steps[1:]], "model")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside Keras
@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_keras_files_keep_the_clipping_both_ways(clip, rng, tmp_path):
    keras = keras_module()
    model = fc.Sequential([fc.Input((4,)), fc.Dense(3)])
    model.compile(loss="mse", optimizer=fc.optimizers.RMSprop(0.01, **CLIPS[clip]))
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 3)).astype(np.float32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert getattr(theirs.optimizer, clip) == CLIPS[clip][clip]
    assert all(getattr(theirs.optimizer, other) is None for other in set(CLIPS) - {clip})
    theirs.save(tmp_path / "k.keras")
    ours = fc.load_model(tmp_path / "k.keras")
    assert getattr(ours.optimizer, clip) == CLIPS[clip][clip]


@pytest.fixture
def _float32_policy_after():
    yield
    fc.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_loss_scaling_clips_the_unscaled_gradients_on_the_device(_float32_policy_after, clip):
    """mixed_float16 on the stand-in, with skipped (overflowing) steps: the device-decided path
    (the _clip_guarded_mixed kernels, norms unscaled by the scaler's state) ends where the host
    path ends (per parameter, unscaled on the host), and clipping changed the trajectory."""
    from fcgpu.testing import stand_in_backend

    rng = np.random.default_rng(5)
    batches = []
    for k in range(8):
        x = rng.standard_normal((8, 8)).astype(np.float32) * 4
        if k == 2:
            x[0, :] = 6e4  # an inf forward: a skipped step
        batches.append((x, rng.integers(0, 3, 8)))

    def run(host_path, kwargs):
        with fc.use_backend(stand_in_backend()):
            fc.set_seed(1)
            model = fc.Sequential([fc.Dense(16, activation="relu", dtype="mixed_float16"),
                                   fc.Dense(3, activation="softmax", dtype="mixed_float16")])
            model.build(8)
        opt = fc.optimizers.LossScaleOptimizer(Adam(0.01, **kwargs), dynamic_growth_steps=3)
        model.compile(loss="sparse_categorical_crossentropy", optimizer=opt)
        if host_path:
            model.optimizer.inner.flat_step_ready = lambda flat: False
        for x, y in batches:
            model.train_step(x, y)
        assert model.optimizer.iterations == 7  # one skipped
        return model.get_weights()

    device, host = run(False, CLIPS[clip]), run(True, CLIPS[clip])
    for a, b in zip(device, host):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    unclipped = run(False, {})
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(device, unclipped))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_launches_per_step_in_fit(optimizer):
    """The whole step inside fit (784-512-10, float32): no clipping costs what it did; a norm adds
    one launch (one flat buffer), clipvalue none; no transfer either way."""
    from fcgpu.bench.launches import launches_per_step

    make = {"adam": Adam, "sgd": SGD}[optimizer]
    totals = {}
    for clip in (None, "clipvalue", "clipnorm", "global_clipnorm"):
        report = launches_per_step((784, 512, 10), batch=128, loss="softmax_cross_entropy",
                                   optimizer=make(**(CLIPS[clip] if clip else {})), steps=4)
        assert sum(report.per_step.transfers.values()) == 0
        totals[clip] = report.per_step.total
    assert totals["clipvalue"] == totals[None]
    assert totals["clipnorm"] == totals["global_clipnorm"] == totals[None] + 1
