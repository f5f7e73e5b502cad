"""Save / load: round trips on every backend, across backends, damaged files, crashes mid-save."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

import fcgpu as fc
import fcgpu.saving.archive as archive
from fcgpu.saving import fileio
import fcgpu.saving as saving


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
def test_saved_on_one_backend_loads_on_the_other(rng, tmp_path, direction, backend_named):
    source, target = (backend_named(n) for n in direction.split("->"))
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
        with pytest.raises(fc.ModelFileError, match="truncated or corrupted"):
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
    with pytest.raises(fc.ModelFileError, match="not a readable fcgpu model file"):
        fc.load_model(path)


def test_altered_weights_with_a_consistent_zip_are_refused(rng, tmp_path):
    model, _, _ = trained_model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/dense/bias"] = arrays["param/dense/bias"] + 1
    np.savez(path, **arrays)
    with pytest.raises(fc.ModelFileError, match="param/dense/bias.*checksum"):
        fc.load_model(path)


def test_files_that_are_not_models(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(fc.ModelFileError, match="__config__"):
        fc.load_model(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(fc.ModelFileError):
        fc.load_model(tmp_path / "text.npz")
    # A pickled object array is never unpickled.
    config = json.dumps({"format": "fcgpu.model", "version": 1})
    np.savez(tmp_path / "pickle.npz", __config__=np.array(config), evil=np.array([object()], dtype=object))
    with pytest.raises(fc.ModelFileError):
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

    monkeypatch.setattr(archive, "write_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(fc.load_model(path).predict(x), before)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_save_needs_a_built_model(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        fc.Sequential([fc.Dense(2)]).save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("where", ["parameter", "optimizer state"])
def test_non_finite_values_are_never_saved(rng, tmp_path, where, backend):
    model, x, _ = trained_model(rng)
    path = tmp_path / "m.fcgpu"
    model.save(path)
    good = path.read_bytes()
    if where == "parameter":
        host = fc.to_numpy(model.layers[1].kernel).copy()  # set_weights refuses NaN: write the array itself
        host[1, 0] = np.inf
        model.layers[1].kernel[...] = backend.from_numpy(host)
        match = r"parameter 'dense_1/kernel' holds 1 NaN or inf value"
    else:
        state = model.optimizer.state["dense/bias"]["exp_avg_sq"]
        state[...] = backend.from_numpy(np.full(state.shape, np.nan, np.float32))
        match = r"optimizer state 'exp_avg_sq' of parameter 'dense/bias' holds 6 NaN or inf values"
    with pytest.raises(ValueError, match=match):
        model.save(path)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["m.fcgpu"]
    fc.load_model(path)


def test_save_writes_through_a_symlink(rng, tmp_path):
    model, x, _ = trained_model(rng)
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.fcgpu"
    link = tmp_path / "latest.fcgpu"
    model.save(target)
    link.symlink_to(target)
    model.train_step(x, np.zeros(10, np.int64))
    model.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(fc.load_model(target).predict(x), model.predict(x))
    assert sorted(os.listdir(tmp_path / "store")) == ["real.fcgpu"]
    dangling = tmp_path / "next.fcgpu"
    dangling.symlink_to(tmp_path / "store" / "new.fcgpu")
    model.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "store" / "new.fcgpu").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_honour_the_umask(rng, tmp_path, umask):
    model, _, _ = trained_model(rng)
    old = os.umask(umask)
    try:
        model.save(tmp_path / "m.fcgpu")
        assert fileio.current_umask() == umask
    finally:
        os.umask(old)
    assert (tmp_path / "m.fcgpu").stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_errors_name_the_users_path(rng, tmp_path, monkeypatch):
    model, _, _ = trained_model(rng)
    path = tmp_path / "m.fcgpu"

    def fail(src, dst):
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError) as info:
        model.save(path)
    assert repr(str(path)) in str(info.value) and ".tmp" not in str(info.value)
    assert info.value.errno == 13 and "Permission denied" in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "where, error, match",
    [
        ("missing/m.fcgpu", FileNotFoundError, "the folder .*missing' of .* does not exist"),
        (".", IsADirectoryError, "is a folder"),
        ("file/m.fcgpu", NotADirectoryError, "is not a folder"),
    ],
)
def test_save_checks_the_path_first(rng, tmp_path, where, error, match):
    model, _, _ = trained_model(rng)
    (tmp_path / "file").write_text("x")
    with pytest.raises(error, match=match):
        model.save(tmp_path / where)


# -- PyTorch nn.Linear state dicts ----------------------------------------------------------------
def test_write_goes_through_a_file_object():
    # The writer takes an open binary file, so the atomic temp-file dance stays in save_model.
    buf = io.BytesIO()
    saving.write_npz(buf, {"a": np.arange(3)})
    buf.seek(0)
    with np.load(buf) as npz:
        np.testing.assert_array_equal(npz["a"], np.arange(3))
