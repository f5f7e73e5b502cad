"""Save / load: round trips on every backend, across backends, damaged files, crashes mid-save; torch interop."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

import fcgpu as fc
import fcgpu.io as fio
from fcgpu.testing import stand_in_backend


def trained_model(rng, optimizer=None):
    model = fc.Sequential([fc.Dense(6, activation="relu"), fc.Dense(3)], name="net")
    model.compile(loss="softmax_cross_entropy", optimizer=optimizer or fc.optimizers.Adam(lr=0.01), metrics=["accuracy"])
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    for _ in range(3):
        model.train_step(x, y)
    return model, x, y


def test_round_trip_on_each_backend(backend, rng, tmp_path):
    model, x, y = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fc.load_model(path)
    assert loaded.name == "net" and [l.name for l in loaded.layers] == ["dense", "dense_1"]
    assert [l.activation.name for l in loaded.layers] == ["relu", "linear"]
    assert all(backend.owns(p) for _, p in loaded.trainable_variables)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Compile settings and optimizer state come back: one more step is the same step.
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.metrics == ["accuracy"] and loaded.optimizer.steps == model.optimizer.steps
    assert loaded.train_step(x, y) == pytest.approx(model.train_step(x, y), rel=1e-6)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loading_uncompiled_and_momentum_sgd(rng, tmp_path):
    model, x, _ = trained_model(rng, fc.optimizers.SGD(lr=0.1, momentum=0.9, nesterov=True))
    model.save(tmp_path / "m")
    bare = fc.load_model(tmp_path / "m", compile=False)
    assert bare.optimizer is None and bare.loss is None
    full = fc.load_model(tmp_path / "m")
    np.testing.assert_array_equal(
        fc.to_numpy(full.optimizer.state["dense/kernel"]["momentum_buffer"]),
        fc.to_numpy(model.optimizer.state["dense/kernel"]["momentum_buffer"]),
    )


@pytest.mark.parametrize("direction", ["numpy->cupy-standin", "cupy-standin->numpy"])
def test_saved_on_one_backend_loads_on_the_other(rng, tmp_path, direction):
    backends = {"numpy": fc.backends.resolve_backend("numpy")[0], "cupy-standin": stand_in_backend()}
    source, target = (backends[n] for n in direction.split("->"))
    path = tmp_path / "model.npz"
    with fc.use_backend(source):
        model, x, _ = trained_model(rng)
        model.save(path)
        expected = model.predict(x)
    with fc.use_backend(target):
        loaded = fc.load_model(path)
    assert all(target.owns(p) for _, p in loaded.trainable_variables)
    assert all(target.owns(v) for s in loaded.optimizer.state.values() for v in s.values())
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_loading_does_not_disturb_the_seeded_stream(rng, tmp_path):
    model, _, _ = trained_model(rng)
    model.save(tmp_path / "m.npz")
    fc.set_seed(11)
    fc.load_model(tmp_path / "m.npz")
    after_load = fc.initializers.get_rng().random()
    fc.set_seed(11)
    assert fc.initializers.get_rng().random() == after_load


def test_truncated_file_gives_a_clear_error(rng, tmp_path):
    model, _, _ = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(fio.ModelFileError, match="truncated or corrupted"):
            fc.load_model(path)


def test_tampered_file_gives_a_clear_error(rng, tmp_path):
    model, _, _ = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    data = bytearray(path.read_bytes())
    # Flip a byte inside the first kernel's values: the zip CRC or the recorded checksum catches it.
    with np.load(path) as npz:
        kernel = npz["param/dense/kernel"]
    at = bytes(data).find(kernel.tobytes())
    assert at > 0
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(fio.ModelFileError, match="not a readable fcgpu model file"):
        fc.load_model(path)


def test_altered_weights_with_a_consistent_zip_are_refused(rng, tmp_path):
    model, _, _ = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/dense/bias"] = arrays["param/dense/bias"] + 1
    np.savez(path, **arrays)
    with pytest.raises(fio.ModelFileError, match="param/dense/bias.*checksum"):
        fc.load_model(path)


def test_files_that_are_not_models(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(fio.ModelFileError, match="__config__"):
        fc.load_model(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(fio.ModelFileError):
        fc.load_model(tmp_path / "text.npz")
    # A pickled object array is never unpickled.
    config = json.dumps({"format": "fcgpu.model", "version": 1})
    np.savez(tmp_path / "pickle.npz", __config__=np.array(config), evil=np.array([object()], dtype=object))
    with pytest.raises(fio.ModelFileError):
        fc.load_model(tmp_path / "pickle.npz")
    with pytest.raises(FileNotFoundError, match="no model file"):
        fc.load_model(tmp_path / "missing.npz")


def test_crash_during_save_leaves_the_previous_file_loadable(rng, tmp_path, monkeypatch):
    model, x, y = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    before = model.predict(x)
    model.train_step(x, y)
    assert not np.allclose(model.predict(x), before)

    def crash(file, arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(fio, "_write_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(fc.load_model(path).predict(x), before)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_save_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        fc.Sequential([fc.Dense(2)]).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# -- PyTorch nn.Linear state dicts ----------------------------------------------------------------
def test_torch_state_dict_export_and_import(backend, rng):
    model = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dense(4, activation="tanh"), fc.Dense(2)])
    model.build(3)
    state = fio.export_torch_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert state["0.weight"].shape == (5, 3) and state["4.weight"].shape == (2, 4)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    # nn.Linear computes x @ weight.T + bias.
    h = np.maximum(x @ state["0.weight"].T + state["0.bias"], 0)
    h = np.tanh(h @ state["2.weight"].T + state["2.bias"])
    np.testing.assert_allclose(model.predict(x), h @ state["4.weight"].T + state["4.bias"], rtol=1e-5, atol=1e-6)
    other = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dense(4, activation="tanh"), fc.Dense(2)])
    fio.import_torch_state_dict(other, state)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_torch_import_checks_shapes_before_changing_anything():
    model = fc.Sequential([fc.Dense(3), fc.Dense(2)])
    model.build(4)
    before = model.get_weights()
    bad = {"a.weight": np.zeros((3, 4)), "a.bias": np.zeros(3), "b.weight": np.zeros((2, 5)), "b.bias": np.zeros(2)}
    with pytest.raises(ValueError, match=r"b\.weight.*3 inputs"):
        fio.import_torch_state_dict(model, bad)
    with pytest.raises(ValueError, match="2 linear layers"):
        fio.import_torch_state_dict(fc.Sequential([fc.Dense(3)]), bad)
    with pytest.raises(ValueError, match="neither"):
        fio.import_torch_state_dict(model, {"a.running_mean": np.zeros(3)})
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_torch_round_trip_when_installed(rng):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    model = fc.Sequential([fc.Dense(5, activation="relu", dtype="float64"), fc.Dense(2, dtype="float64")])
    fio.import_torch_state_dict(model, net.state_dict())
    x = rng.normal(size=(4, 3))
    with torch.no_grad():
        expected = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    net2.load_state_dict({k: torch.from_numpy(v) for k, v in fio.export_torch_state_dict(model).items()})
    with torch.no_grad():
        np.testing.assert_allclose(net2(torch.tensor(x)).numpy(), expected, rtol=1e-12)


def test_write_goes_through_a_file_object():
    # The writer takes an open binary file, so the atomic temp-file dance stays in save_model.
    buf = io.BytesIO()
    fio._write_npz(buf, {"a": np.arange(3)})
    buf.seek(0)
    with np.load(buf) as npz:
        np.testing.assert_array_equal(npz["a"], np.arange(3))
