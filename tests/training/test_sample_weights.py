"""Sample and class weights (issue 20, item 4): fit(sample_weight=, class_weight=),
evaluate(sample_weight=), validation_data=(x, y, w) and the *_on_batch methods weigh each row's loss
as Keras 3 does (sum_i w_i l_i / B, 'sum_over_batch_size'), inside the fused loss kernels (a weight
a row, read by the kernel: no extra pass), the weights shuffled and sharded with their rows.
Checked against Keras 3 itself on the same data and initial weights, in float64."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.testing import count_device_ops, stand_in_backend
from fcgpu.bench.launches import launches_per_step

N, WIDTH, CLASSES = 24, 5, 3


def _data(seed=0, binary=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, WIDTH))
    y = rng.integers(0, 2 if binary else CLASSES, N)
    return x, y, rng.uniform(0.0, 2.0, N)


def _pair(last_activation, outputs, loss, keras):
    """(Keras model, fcgpu model) with the same float64 initial weights, compiled alike (SGD 0.125: Keras keeps the learning rate in float32)."""
    keras.backend.set_floatx("float64")
    km = keras.Sequential([keras.Input((WIDTH,)), keras.layers.Dense(4, activation="relu"),
                           keras.layers.Dense(outputs, activation=last_activation)])
    km.compile(loss=loss, optimizer=keras.optimizers.SGD(0.125))
    fm = fc.Sequential([fc.Dense(4, activation="relu", dtype="float64"),
                        fc.Dense(outputs, activation=last_activation, dtype="float64")])
    fm.build((None, WIDTH))
    fm.set_weights([np.asarray(w) for w in km.get_weights()])
    fm.compile(loss=loss, optimizer=fc.optimizers.SGD(0.125))
    return km, fm


@pytest.fixture
def keras():
    keras = pytest.importorskip("keras")
    floatx = keras.backend.floatx()
    yield keras
    keras.backend.set_floatx(floatx)


def _same(km, fm, kh, fh, rtol=1e-6):
    """The same history and weights. Keras 3 on torch with floatx float64 agrees with fcgpu to
    about 1e-8 even without weights (its loss tracker and some steps run in float32), while
    dropping the weights moves the weights by 1e-2 (``test_the_weights_change_the_result``)."""
    for key, values in kh.history.items():
        np.testing.assert_allclose(fh.history[key], values, rtol=rtol, err_msg=key)
    for a, b in zip(km.get_weights(), fm.get_weights()):
        np.testing.assert_allclose(b, np.asarray(a), rtol=1e-6, atol=1e-7)


CASES = {
    "sparse": ("softmax", CLASSES, "sparse_categorical_crossentropy", lambda y: y),
    "categorical": ("softmax", CLASSES, "categorical_crossentropy", lambda y: np.eye(CLASSES)[y]),
    "binary": ("sigmoid", 1, "binary_crossentropy", lambda y: (y % 2).astype(np.float64)[:, None]),
    "mse": (None, CLASSES, "mse", lambda y: np.eye(CLASSES)[y]),
    "mae": (None, CLASSES, "mae", lambda y: np.eye(CLASSES)[y]),
    "huber": (None, CLASSES, "huber", lambda y: np.eye(CLASSES)[y]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fit_and_evaluate_with_sample_weights_match_keras(keras, case):
    activation, outputs, loss, labels = CASES[case]
    x, y, w = _data()
    y = labels(y)
    km, fm = _pair(activation, outputs, loss, keras)
    xv, yv, wv = _data(1)
    yv = labels(yv)
    kh = km.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(xv, yv, wv))
    fh = fm.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(xv, yv, wv))
    _same(km, fm, kh, fh)
    want = km.evaluate(xv, yv, sample_weight=wv, batch_size=5, verbose=0)
    assert fm.evaluate(xv, yv, sample_weight=wv, batch_size=5) == pytest.approx(want, rel=1e-6)
    assert fm.evaluate(xv, yv, batch_size=5) == pytest.approx(km.evaluate(xv, yv, batch_size=5, verbose=0), rel=1e-6)


@pytest.mark.parametrize("case", ["sparse", "categorical", "binary"])
def test_class_weight_matches_keras(keras, case):
    activation, outputs, loss, labels = CASES[case]
    x, y, _ = _data()
    y = labels(y)
    class_weight = {0: 0.5, 1: 3.0} if case == "binary" else {0: 0.25, 2: 4.0}
    km, fm = _pair(activation, outputs, loss, keras)
    kh = km.fit(x, y, class_weight=class_weight, batch_size=8, epochs=2, shuffle=False, verbose=0)
    fh = fm.fit(x, y, class_weight=class_weight, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _same(km, fm, kh, fh)


def test_train_and_test_on_batch_with_sample_weights_match_keras(keras):
    x, y, w = _data()
    km, fm = _pair("softmax", CLASSES, "sparse_categorical_crossentropy", keras)
    for _ in range(3):
        want = km.train_on_batch(x, y, sample_weight=w)
        assert fm.train_on_batch(x, y, sample_weight=w) == pytest.approx(float(want), rel=1e-6)
    want = km.test_on_batch(x, y, sample_weight=w)
    assert fm.test_on_batch(x, y, sample_weight=w) == pytest.approx(float(want), rel=1e-6)
    for a, b in zip(km.get_weights(), fm.get_weights()):
        np.testing.assert_allclose(b, np.asarray(a), rtol=1e-6, atol=1e-7)


def test_the_weights_change_the_result(keras):
    """What the comparisons above could not miss: weighted and unweighted training differ by far
    more than their tolerance, and a weight of 2 everywhere doubles the loss."""
    x, y, w = _data()
    results = []
    for weights in (None, w):
        _, fm = _pair("softmax", CLASSES, "sparse_categorical_crossentropy", keras)
        fm.fit(x, y, sample_weight=weights, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append(fm.get_weights())
    assert max(np.abs(a - b).max() for a, b in zip(*results)) > 1e-3
    assert fm.evaluate(x, y, sample_weight=np.full(N, 2.0)) == pytest.approx(2 * fm.evaluate(x, y), rel=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "stand-in"])
def test_weights_are_shuffled_with_their_rows(backend):
    """fit(shuffle=True) equals fit on the same permutation unshuffled, rows and weights together."""
    be = fc.backends.resolve_backend("numpy")[0] if backend == "numpy" else stand_in_backend()
    x, y, w = _data()
    results = []
    for shuffled in (True, False):
        with fc.use_backend(be):
            fc.set_seed(3)
            model = fc.Sequential([fc.Dense(4, activation="relu", dtype="float64"), fc.Dense(CLASSES, dtype="float64")])
            model.build((None, WIDTH))
            model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(0.1))
            if shuffled:
                model.fit(x, y, sample_weight=w, batch_size=8, epochs=1, verbose=0)
            else:
                order = fc.initializers.get_rng().permutation(N)  # the draw fit makes
                model.fit(x[order], y[order], sample_weight=w[order], batch_size=8, epochs=1, shuffle=False, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse", "binary_crossentropy"])
def test_the_stand_in_kernels_weigh_as_numpy(loss):
    """The fused kernels' per-row weights against the NumPy backend's composition."""
    x, y, w = _data()
    outputs = 1 if loss == "binary_crossentropy" else CLASSES
    yy = {"softmax_cross_entropy": y, "mse": np.eye(CLASSES)[y], "binary_crossentropy": (y % 2)[:, None]}[loss]
    results = []
    for be in (fc.backends.resolve_backend("numpy")[0], stand_in_backend()):
        with fc.use_backend(be):
            fc.set_seed(4)
            model = fc.Sequential([fc.Dense(4, activation="relu"),
                                   fc.Dense(outputs, activation="sigmoid" if outputs == 1 else None)])
            model.build((None, WIDTH))
            model.compile(loss=loss, optimizer=fc.optimizers.SGD(0.1), metrics=["accuracy"])
            h = model.fit(x.astype(np.float32), yy, sample_weight=w, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append((model.get_weights(), h.history))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    for key in results[0][1]:
        np.testing.assert_allclose(results[0][1][key], results[1][1][key], rtol=2e-5, err_msg=key)


def test_a_weighted_step_launches_what_an_unweighted_one_does():
    """The weights are read inside the fused loss kernel: no extra launch a step (12 for
    784-512-10 SGD), and nothing read on the host."""
    base = launches_per_step((784, 512, 10), batch=128, loss="softmax_cross_entropy", optimizer="sgd")
    with fc.use_backend(stand_in_backend()):
        model = fc.Sequential([fc.Dense(64, activation="relu"), fc.Dense(10)])
        model.build((None, 32))
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 32)).astype(np.float32), rng.integers(0, 10, 64)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, sample_weight=rng.uniform(size=64))  # warm-up
    counts = []
    for weights in (None, rng.uniform(size=64)):
        x_dev, y_dev = model.prepare_data(x[:16], y[:16])
        w_dev = None if weights is None else model.backend.from_numpy(weights[:16].astype(np.float32))
        model.accumulate_batch(x_dev, y_dev, sample_weight=w_dev)
        with count_device_ops() as ops:
            model.accumulate_batch(x_dev, y_dev, sample_weight=w_dev)
        counts.append((ops.total, ops.transfers["to_host"]))
    assert counts[0] == counts[1] and counts[0][1] == 0
    assert base.per_step.total == 12


@pytest.mark.parametrize("bad, match", [
    ({"sample_weight": np.ones(N - 1)}, "expected 24 weights"),
    ({"sample_weight": -np.ones(N)}, ">= 0"),
    ({"sample_weight": np.full(N, np.nan)}, "finite"),
    ({"sample_weight": np.ones((N, 2))}, "one weight a sample"),
    ({"class_weight": {0: 1.0, 5: 2.0}}, "keys must be the model's classes"),
    ({"class_weight": {0: -1.0}}, "finite and >= 0"),
    ({"class_weight": {"a": 1.0}}, "keys must be"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(N)}, "not both"),
])
def test_bad_weights_are_refused_before_anything_changes(bad, match):
    x, y, _ = _data()
    model = fc.Sequential([fc.Dense(CLASSES, dtype="float64")])
    model.compile(loss="softmax_cross_entropy", optimizer="sgd")
    model.build((None, WIDTH))
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(x, y, verbose=0, **bad)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="validation_data\\[2\\]"):
        model.fit(x, y, verbose=0, validation_data=(x, y, np.ones(3)))
    with pytest.raises(ValueError, match="expected 24 weights"):
        model.evaluate(x, y, sample_weight=np.ones(2))
