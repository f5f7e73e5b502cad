"""A compiled model saved before its first step: the ``.keras`` file holds the optimizer's variables
as Keras's built optimizer holds them (iteration 0, the learning rate, zero slots), so that Keras
loads it without "Skipping variable loading for optimizer", and fcgpu loads such files (its own
and Keras's) without a warning, its optimizer fresh."""
from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import fcgpu as fc  # noqa: E402

OPTIMIZERS = {
    "sgd": (lambda: "sgd", lambda: "sgd"),
    "adam": (lambda: "adam", lambda: "adam"),
    "sgd_momentum": (lambda: fc.optimizers.SGD(0.05, momentum=0.9), lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "rmsprop": (lambda: fc.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
                lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True)),
}


def optimizer_vars(path):
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
        group = f["optimizer/vars"]
        return [np.asarray(group[str(i)]) for i in range(len(group))]


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_keras_loads_a_compiled_untrained_model_without_a_warning(tmp_path, optimizer):
    ours = fc.Sequential([fc.Input((5,)), fc.layers.Dense(2)])
    ours.compile(OPTIMIZERS[optimizer][0](), "mse")
    ours.save(tmp_path / "o.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = keras.models.load_model(tmp_path / "o.keras")
    assert [str(w.message) for w in caught if "optimizer" in str(w.message)] == []
    assert int(theirs.optimizer.iterations) == 0
    # what Keras writes for its built, unstepped optimizer: the same variables, in the same order
    ref = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    ref.compile(OPTIMIZERS[optimizer][1](), "mse")
    ref.optimizer.build(ref.trainable_variables)
    ref.save(tmp_path / "k.keras")
    ours_vars, keras_vars = optimizer_vars(tmp_path / "o.keras"), optimizer_vars(tmp_path / "k.keras")
    assert [(a.shape, a.dtype) for a in ours_vars] == [(b.shape, b.dtype) for b in keras_vars]
    for a, b in zip(ours_vars, keras_vars):
        np.testing.assert_array_equal(a, b)
    # and fcgpu loads both files silently, its optimizer fresh
    for path in (tmp_path / "o.keras", tmp_path / "k.keras"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = fc.load_model(path)
        assert again.optimizer.iterations == 0


def test_fcgpu_loads_keras_own_untrained_file_without_a_warning(tmp_path):
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    theirs.compile("adam", "mse")  # its optimizer unbuilt: the file holds iteration and learning rate only
    theirs.save(tmp_path / "k.keras")
    assert len(optimizer_vars(tmp_path / "k.keras")) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = fc.load_model(tmp_path / "k.keras")
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    ours.fit(x, np.zeros((8, 2)), verbose=0)
    assert ours.optimizer.iterations == 1
