"""Mistakes users make with files, each refused by name before anything is written or changed."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import fcgpu as fc


def small_model():
    model = fc.Sequential([fc.Input((5,)), fc.layers.Dense(2)])
    model.build((None, 5))
    return model


@pytest.mark.parametrize("name", ["w.weights.h5", "m.h5", "m.hdf5", "m.onnx", "m.pt", "m.pth"])
def test_save_refuses_another_formats_name_and_writes_nothing(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ValueError, match="path: .* which save does not write"):
        small_model().save(path)
    assert not path.exists()


def test_a_checkpoint_of_the_whole_model_under_an_h5_name_is_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match="filepath: .*Keras's legacy HDF5"):
        fc.callbacks.ModelCheckpoint(str(tmp_path / "best.h5"))


def test_load_model_checks_its_flags(tmp_path):
    path = tmp_path / "m.fcgpu"
    small_model().save(path)
    with pytest.raises(TypeError, match="compile: expected True or False, got 'yes'"):
        fc.load_model(path, compile="yes")
    with pytest.raises(TypeError, match="custom_objects: expected None or a dict"):
        fc.load_model(path, custom_objects=5)
    with pytest.raises(TypeError, match="custom_objects"):
        fc.load_model(path, custom_objects={"Dense": 3})


def test_export_onnx_names_a_model_that_is_not_one(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(TypeError, match="model: expected an fcgpu model .* got str"):
        fc.interop.export_onnx("model", tmp_path / "x.onnx")
    assert not os.listdir(tmp_path)


def test_a_keras_layer_under_a_mixed_policy_its_input_lacks_is_said(tmp_path):
    """Keras computes such a BatchNormalization in float16; fcgpu in its input's dtype: a warning says so."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    made = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4),
                             keras.layers.BatchNormalization(dtype="mixed_float16")])
    made.save(tmp_path / "bn.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fc.load_model(tmp_path / "bn.keras")
    assert any("'mixed_float16'" in str(w.message) and "batch_normalization" in str(w.message) for w in caught)
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(made.predict(x, verbose=0), np.float32),
                               rtol=5e-3, atol=5e-3)
