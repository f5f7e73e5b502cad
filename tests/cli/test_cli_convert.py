"""`fcgpu convert IN OUT`: a model between .fcgpu, .keras, .weights.h5, .pt and .onnx, as a user runs it."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("h5py")

import fcgpu as fc  # noqa: E402
from fcgpu.cli import main  # noqa: E402

X = np.random.default_rng(5).standard_normal((7, 4)).astype(np.float32)


@pytest.fixture
def saved(tmp_path):
    fc.set_seed(1)
    model = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(6, activation="relu"), fc.Dropout(0.1),
                           fc.Dense(5, activation="tanh"), fc.Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.save(tmp_path / "m.fcgpu")
    return model, tmp_path


def convert(*args):
    return main(["convert", *map(str, args)])


def test_fcgpu_to_keras_and_back(saved, capsys):
    model, d = saved
    assert convert(d / "m.fcgpu", d / "m.keras") == 0
    assert "m.keras" in capsys.readouterr().out
    assert convert(d / "m.keras", d / "back.fcgpu") == 0
    np.testing.assert_array_equal(fc.load_model(d / "back.fcgpu").predict(X), model.predict(X))
    keras = pytest.importorskip("keras")
    np.testing.assert_allclose(keras.models.load_model(d / "m.keras").predict(X, verbose=0), model.predict(X),
                               rtol=1e-5, atol=1e-6)


def test_weights_files_take_their_architecture_from_model(saved, capsys):
    model, d = saved
    assert convert(d / "m.fcgpu", d / "w.weights.h5") == 0
    assert convert(d / "w.weights.h5", d / "again.keras") == 2
    assert "--model" in capsys.readouterr().err
    assert convert(d / "w.weights.h5", d / "again.keras", "--model", d / "m.fcgpu") == 0
    np.testing.assert_array_equal(fc.load_model(d / "again.keras").predict(X), model.predict(X))


def test_pytorch_state_dicts_both_ways(saved):
    torch = pytest.importorskip("torch")
    model, d = saved
    assert convert(d / "m.fcgpu", d / "m.pt") == 0
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(6, 5),
                              torch.nn.Tanh(), torch.nn.Linear(5, 3), torch.nn.Softmax(dim=-1)).eval()
    state = torch.load(d / "m.pt", weights_only=True)
    net.load_state_dict(state)  # keys '0.weight', '3.weight', '5.weight': the module indices above
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(X)).numpy(), model.predict(X), rtol=1e-5, atol=1e-6)
    assert convert(d / "m.pt", d / "from_pt.fcgpu", "--model", d / "m.fcgpu") == 0
    np.testing.assert_array_equal(fc.load_model(d / "from_pt.fcgpu").predict(X), model.predict(X))


def test_a_pickle_with_code_is_refused(saved, capsys):
    torch = pytest.importorskip("torch")
    _, d = saved
    torch.save({"0.weight": torch.zeros(6, 4), "hook": print}, d / "evil.pt")  # pickles a function reference
    assert convert(d / "evil.pt", d / "out.fcgpu", "--model", d / "m.fcgpu") == 2
    err = capsys.readouterr().err
    assert "not a state dict of tensors" in err and len(err.strip().splitlines()) == 1
    assert not (d / "out.fcgpu").exists()


def test_onnx_output(saved):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, d = saved
    assert convert(d / "m.fcgpu", d / "m.onnx", "--opset", "18") == 0
    session = ort.InferenceSession(str(d / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["m.fcgpu", "m.txt"], "none of the endings"),
    (["m.onnx", "m.fcgpu"], "written, not read"),
    (["missing.keras", "out.fcgpu"], "no model file"),
    (["m.fcgpu", "no/such/folder/out.keras"], "does not exist"),
    (["m.fcgpu", "out.keras", "--model", "m.fcgpu"], "--model"),
    (["m.fcgpu", "out.keras", "--opset", "17"], "--opset"),
])
def test_bad_input_is_one_line_and_status_2(saved, capsys, monkeypatch, args, message):
    _, d = saved
    monkeypatch.chdir(d)
    assert convert(*args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("fcgpu convert: error:") and len(err.strip().splitlines()) == 1
    assert not (d / "out.keras").exists() and not (d / "out.fcgpu").exists()


def test_a_damaged_input_writes_nothing(saved, capsys):
    _, d = saved
    (d / "bad.keras").write_bytes(b"PK\x03\x04 truncated")
    assert convert(d / "bad.keras", d / "out.onnx") == 2
    assert "bad.keras" in capsys.readouterr().err and not (d / "out.onnx").exists()


def test_a_functional_model_of_the_new_layers_converts_between_every_format(tmp_path, capsys):
    fc.set_seed(2)
    x = fc.Input((4,), name="x")
    h = fc.layers.BatchNormalization()(fc.Dense(5, activation="relu")(x))
    h = fc.layers.Concatenate()([fc.layers.PReLU()(h), fc.layers.LayerNormalization()(fc.Dense(3)(x))])
    model = fc.Model(x, fc.Dense(2)(fc.layers.LeakyReLU(0.1)(h)), name="graph")
    model.compile(loss="mse", optimizer="adam")
    model.fit(X, X[:, :2], epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "g.fcgpu")
    assert convert(tmp_path / "g.fcgpu", tmp_path / "g.keras") == 0
    assert "graph" in capsys.readouterr().out
    assert convert(tmp_path / "g.keras", tmp_path / "back.fcgpu") == 0
    np.testing.assert_allclose(fc.load_model(tmp_path / "back.fcgpu").predict(X), model.predict(X), rtol=1e-6, atol=1e-7)
    assert convert(tmp_path / "g.fcgpu", tmp_path / "w.weights.h5") == 0
    assert convert(tmp_path / "w.weights.h5", tmp_path / "again.keras", "--model", tmp_path / "g.keras") == 0
    np.testing.assert_allclose(fc.load_model(tmp_path / "again.keras").predict(X), model.predict(X), rtol=1e-6, atol=1e-7)
    keras = pytest.importorskip("keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "g.keras").predict(X, verbose=0), model.predict(X),
                               rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    assert convert(tmp_path / "g.keras", tmp_path / "g.onnx") == 0
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X), rtol=2e-5, atol=2e-6)
