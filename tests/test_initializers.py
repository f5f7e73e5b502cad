"""Keras 3's initializers by name and as classes: their distributions, seeds, configs and files."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import initializers

SHAPE = (400, 300)
FAN_IN, FAN_OUT = SHAPE


@pytest.mark.parametrize(
    "cls, name, std",
    [
        (initializers.RandomNormal, "random_normal", 0.05),
        (initializers.RandomUniform, "random_uniform", 0.1 / math.sqrt(12)),
        (initializers.TruncatedNormal, "truncated_normal", 0.05 * 0.87962566103423978),
        (initializers.GlorotUniform, "glorot_uniform", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        (initializers.GlorotNormal, "glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        (initializers.HeUniform, "he_uniform", math.sqrt(2 / FAN_IN)),
        (initializers.HeNormal, "he_normal", math.sqrt(2 / FAN_IN)),
        (initializers.LecunUniform, "lecun_uniform", math.sqrt(1 / FAN_IN)),
        (initializers.LecunNormal, "lecun_normal", math.sqrt(1 / FAN_IN)),
    ],
)
def test_each_initializer_has_keras_s_spread_by_name_and_by_class(cls, name, std):
    values = cls()(SHAPE)
    assert values.shape == SHAPE and abs(values.mean()) < 0.05 * std + 1e-3
    assert values.std() == pytest.approx(std, rel=0.03)
    assert initializers.get_initializer(name, "k").__class__ is cls
    assert initializers.get_initializer(cls.__name__, "k").__class__ is cls


def test_orthogonal_constant_and_seeds():
    q = initializers.Orthogonal(gain=2.0, seed=1)((30, 20))
    np.testing.assert_allclose(q.T @ q, 4.0 * np.eye(20), atol=1e-10)
    assert (initializers.Constant(0.5)((3,)) == 0.5).all() and (initializers.Ones()((2,)) == 1).all()
    a, b = initializers.HeNormal(seed=7)((5, 4)), initializers.HeNormal(seed=7)((5, 4))
    np.testing.assert_array_equal(a, b)  # a seeded instance draws from its own generator
    fc.set_seed(3)
    c = initializers.HeNormal()((5, 4))
    fc.set_seed(3)
    np.testing.assert_array_equal(c, initializers.HeNormal()((5, 4)))  # unseeded: set_seed's generator
    with pytest.raises(ValueError, match="kernel_initializer: expected one of"):
        fc.Dense(3, kernel_initializer="no_such")
    with pytest.raises(ValueError, match="seed"):
        initializers.HeNormal(seed=-1)


def test_a_dense_layer_with_an_initializer_instance_saves_and_loads(tmp_path):
    model = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(3, kernel_initializer=initializers.RandomNormal(stddev=0.2, seed=5),
                                                         bias_initializer=initializers.Constant(0.1))])
    np.testing.assert_array_equal(model.get_weights()[1], np.full(3, 0.1, np.float32))
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.layers[0].get_config()["kernel_initializer"] == {
        "class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.2, "seed": 5}}
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_reads_an_initializer_instance_from_a_keras_file(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    model = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(3, kernel_initializer=initializers.HeNormal(seed=2))])
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.layers[0].kernel_initializer).__name__ == "HeNormal"
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), model.predict(x), rtol=1e-6)
