"""Damaged and hostile Keras files: every one is a ModelFileError and changes nothing (a model's
weights are the same after a failed load_weights), and nothing in a file runs or escapes."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import fcgpu as fc  # noqa: E402
from fcgpu.interop import keras_archive  # noqa: E402
from fcgpu.interop.keras_config import model_to_keras  # noqa: E402
from fcgpu.interop.keras_weights import weights_h5_bytes  # noqa: E402


def model(activation="relu"):
    fc.set_seed(0)
    m = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(3, activation=activation), fc.Dropout(0.5), fc.Dense(2)])
    m.compile(loss="mse", optimizer="adam")
    return m


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.keras"
    model().save(path)
    return path


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def h5_with(edit):
    """A weights file of ``model()`` edited by ``edit(h5py.File)``, as bytes."""
    buffer = io.BytesIO(members_of_model()["model.weights.h5"])
    with h5py.File(buffer, "a") as f:
        edit(f)
    return buffer.getvalue()


def members_of_model():
    """The members fcgpu writes for ``model()``, built in memory."""
    m = model()
    return {"config.json": json.dumps(model_to_keras(m.get_config(), None)), "model.weights.h5": weights_h5_bytes(m)}


def refused(path, match=None):
    with pytest.raises(fc.ModelFileError, match=match):
        fc.load_model(path)


# -- the zip ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_a_truncated_archive_is_refused(good, tmp_path, cut):
    data = good.read_bytes()
    bad = tmp_path / "cut.keras"
    bad.write_bytes(data[: int(len(data) * cut)])
    refused(bad)


def test_bytes_that_are_not_a_zip_are_refused(tmp_path):
    (tmp_path / "x.keras").write_bytes(b"not a zip at all" * 100)
    refused(tmp_path / "x.keras")
    (tmp_path / "empty.keras").write_bytes(b"")
    refused(tmp_path / "empty.keras")


@pytest.mark.parametrize("missing", ["config.json", "model.weights.h5"])
def test_a_missing_member_is_named(good, tmp_path, missing):
    entries = members(good)
    del entries[missing]
    refused(write_zip(tmp_path / "x.keras", entries), missing)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "assets/../../x", "C:/x", "a\\..\\..\\b"])
def test_member_paths_escaping_the_archive_are_refused(good, tmp_path, name):
    entries = members(good)
    entries[name] = b"x"
    refused(write_zip(tmp_path / "x.keras", entries), "outside the archive")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_a_zip_bomb_is_refused_before_it_is_inflated(good, tmp_path):
    entries = members(good)
    entries["config.json"] = b" " * (keras_archive.MAX_JSON_BYTES + 1)  # deflates to a few KB
    refused(write_zip(tmp_path / "x.keras", entries, zipfile.ZIP_DEFLATED), "more than")


def test_a_forged_member_size_is_refused(good, tmp_path):
    data = bytearray(good.read_bytes())
    # the central directory's uncompressed size of config.json, raised far above what is stored
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("config.json")
    central = data.rfind(b"PK\x01\x02", 0, data.find(b"PK\x05\x06"))
    while not data[central + 46: central + 46 + len(b"config.json")] == b"config.json":
        central = data.rfind(b"PK\x01\x02", 0, central)
    data[central + 24: central + 28] = (info.file_size * 2).to_bytes(4, "little")
    (tmp_path / "x.keras").write_bytes(bytes(data))
    refused(tmp_path / "x.keras", "declares|truncated or corrupted")


def test_a_config_that_is_not_json_or_too_deep_is_refused(good, tmp_path):
    entries = members(good)
    entries["config.json"] = b"{not json"
    refused(write_zip(tmp_path / "a.keras", entries), "not valid JSON")
    entries["config.json"] = b"[" * 100_000 + b"]" * 100_000
    refused(write_zip(tmp_path / "b.keras", entries))


def test_a_config_cannot_make_fcgpu_allocate_more_than_the_file_holds(good, tmp_path):
    entries = members(good)
    config = json.loads(entries["config.json"])
    config["config"]["layers"][1]["config"]["units"] = 10**9
    entries["config.json"] = json.dumps(config)
    refused(write_zip(tmp_path / "x.keras", entries), "bytes of weights")


def test_weights_that_do_not_match_the_config_are_refused(good, tmp_path):
    entries = members(good)
    config = json.loads(entries["config.json"])
    config["config"]["layers"][1]["config"]["units"] = 5  # the file holds a (4, 3) kernel
    config["config"]["layers"][3]["build_config"]["input_shape"] = [None, 5]
    entries["config.json"] = json.dumps(config)
    refused(write_zip(tmp_path / "x.keras", entries), "shape")


def test_lambda_and_custom_functions_are_refused_without_running_them(good, tmp_path):
    entries = members(good)
    config = json.loads(entries["config.json"])
    config["config"]["layers"].insert(2, {
        "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
        "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "b3M="}}}})
    entries["config.json"] = json.dumps(config)
    refused(write_zip(tmp_path / "a.keras", entries), "Lambda")
    config = json.loads(members(good)["config.json"])
    config["config"]["layers"][1]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
    entries["config.json"] = json.dumps(config)
    refused(write_zip(tmp_path / "b.keras", entries), "custom function")


# -- the HDF5 weights -----------------------------------------------------------------------------
def load_weights_refused(target, data, tmp_path, match=None):
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(data)
    before = target.get_weights()
    with pytest.raises(fc.ModelFileError, match=match):
        target.load_weights(path)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing changed


def test_wrong_shapes_missing_and_extra_layers_change_nothing(tmp_path):
    target = model()

    def wrong_shape(f):
        del f["layers/dense_1/vars/0"]
        f["layers/dense_1/vars"].create_dataset("0", data=np.zeros((3, 5), np.float32))

    load_weights_refused(target, h5_with(wrong_shape), tmp_path, "shape")
    load_weights_refused(target, h5_with(lambda f: f.__delitem__("layers/dense_1")), tmp_path, "lacks.*dense_1")
    load_weights_refused(target, h5_with(lambda f: f.create_group("layers/conv2d/vars")), tmp_path, "conv2d")
    load_weights_refused(target, h5_with(lambda f: f.__delitem__("layers/dense/vars/1")), tmp_path, "arrays")

    def extra_var(f):
        f["layers/dense/vars"].create_dataset("2", data=np.zeros(3, np.float32))

    load_weights_refused(target, h5_with(extra_var), tmp_path, "arrays")


def test_links_strings_and_shape_bombs_are_refused(tmp_path):
    target = model()

    def soft_link(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.SoftLink("/layers/dense_1/vars/0")

    load_weights_refused(target, h5_with(soft_link), tmp_path, "SoftLink")

    def external_link(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars/1"] = h5py.ExternalLink("/etc/passwd", "/x")

    load_weights_refused(target, h5_with(external_link), tmp_path, "ExternalLink")

    def strings(f):
        del f["layers/dense/vars/1"]
        f["layers/dense/vars"].create_dataset("1", data=np.array([b"abc", b"def", b"ghi"]))

    load_weights_refused(target, h5_with(strings), tmp_path, "not a weight")

    def bomb(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(4, 10**9), dtype=np.float32, chunks=(4, 1024),
                                              compression="gzip")

    load_weights_refused(target, h5_with(bomb), tmp_path, "shape bomb")


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.7, 0.95])
def test_a_truncated_weights_file_changes_nothing(tmp_path, cut):
    data = h5_with(lambda f: None)
    load_weights_refused(model(), data[: int(len(data) * cut)], tmp_path)


def test_a_good_weights_file_is_never_replaced_by_a_bad_one(tmp_path):
    path = tmp_path / "w.weights.h5"
    m = model()
    m.save_weights(path)
    good = path.read_bytes()
    m.layers[0].kernel[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        m.save_weights(path)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["w.weights.h5"]


# -- the graph of a functional model ----------------------------------------------------------------
def graph_model():
    fc.set_seed(0)
    a, b = fc.Input((4,), name="a"), fc.Input((2,), name="b")
    h = fc.layers.Concatenate(name="cat")([fc.Dense(3, name="da")(a), fc.Dense(3, name="db")(b)])
    return fc.Model([a, b], fc.Dense(2, name="out")(fc.layers.BatchNormalization(name="bn")(h)), name="g")


def graph_file(tmp_path, edit):
    """A functional model's .keras file with its config edited by ``edit(config)``."""
    m = graph_model()
    config = model_to_keras(m.get_config(), None)
    edit(config)
    return write_zip(tmp_path / "g.keras", {"config.json": json.dumps(config), "model.weights.h5": weights_h5_bytes(m)})


def entry(config, name):
    return next(e for e in config["config"]["layers"] if e["name"] == name)


def history(e, k=0):
    args = e["inbound_nodes"][0]["args"][0]
    return (args[k] if isinstance(args, list) else args)["config"]["keras_history"]


def test_the_untouched_graph_file_loads(tmp_path):
    loaded = fc.load_model(graph_file(tmp_path, lambda c: None))
    x = [np.ones((3, 4), np.float32), np.ones((3, 2), np.float32)]
    np.testing.assert_array_equal(loaded.predict(x), graph_model().predict(x))


@pytest.mark.parametrize("edit, match", [
    (lambda c: history(entry(c, "cat"), 1).__setitem__(0, "nowhere"), "'nowhere', which is no layer of the graph"),
    (lambda c: history(entry(c, "da")).__setitem__(0, "out"), "cycle"),
    (lambda c: history(entry(c, "da")).__setitem__(0, "da"), "cycle"),
    (lambda c: entry(c, "bn")["inbound_nodes"].append(entry(c, "bn")["inbound_nodes"][0]), "called 2 times"),
    (lambda c: history(entry(c, "bn")).__setitem__(1, 1), "reads call 1"),
    (lambda c: c["config"].__setitem__("output_layers", ["ghost", 0, 0]), "'ghost', which is no layer"),
    (lambda c: c["config"].__setitem__("output_layers", [["out", 0, 0], ["out", 0, 0]]), "'out' is given twice"),
    (lambda c: c["config"].__setitem__("output_layers", [["out", 0, 0], ["bn", 0, 2]]), r"output_layers\[1\]: .*'bn'"),
    (lambda c: c["config"].__setitem__("input_layers", [["a", 0, 0], ["cat", 0, 0]]), "not inputs"),
    (lambda c: entry(c, "db").__setitem__("name", "da"), "distinct names"),
    (lambda c: entry(c, "bn")["inbound_nodes"][0].__setitem__("args", "da"), "not one tensor"),
    (lambda c: entry(c, "bn")["inbound_nodes"][0].__setitem__("kwargs", {"mask": [1]}), "arguments fcgpu does not take"),
    (lambda c: entry(c, "bn").__setitem__("inbound_nodes", []), "never called"),
    (lambda c: entry(c, "cat").__setitem__("class_name", "Lambda"), "fcgpu has no Lambda layer"),
    (lambda c: entry(c, "out")["config"].__setitem__("units", 10**9), "needs .* bytes of weights"),
])
def test_a_hostile_graph_config_is_refused_before_anything_is_built(tmp_path, edit, match):
    refused(graph_file(tmp_path, edit), match)


def test_models_nested_without_end_are_refused(tmp_path):
    def edit(config):
        nested = {k: v for k, v in entry(config, "out").items() if k not in ("name", "inbound_nodes")}
        for _ in range(40):
            nested = {"class_name": "Sequential", "config": {"name": "s", "layers": [nested]}}
        config["config"]["layers"][-1] = {**nested, "name": "out", "inbound_nodes": entry(config, "out")["inbound_nodes"]}

    refused(graph_file(tmp_path, edit), "nested more than")


def test_wrong_graph_weights_change_nothing(tmp_path):
    m = graph_model()
    before = m.get_weights()
    good_bytes = weights_h5_bytes(m)

    def edited(edit):
        buffer = io.BytesIO(good_bytes)
        with h5py.File(buffer, "a") as f:
            edit(f)
        return buffer.getvalue()

    def reshape(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = np.zeros((4, 4), np.float32)

    cases = [
        (edited(reshape), "shape"),
        (edited(lambda f: f["layers"].pop("input_layer_1")), "lacks"),
        (edited(lambda f: f["layers"].create_group("dense_9/vars")), "the model lacks"),
        (edited(lambda f: f["layers/batch_normalization/vars"].pop("3")), "holds 3 arrays"),
    ]
    for data, match in cases:
        (tmp_path / "w.weights.h5").write_bytes(data)
        with pytest.raises(fc.ModelFileError, match=match):
            m.load_weights(tmp_path / "w.weights.h5")
        for a, b in zip(before, m.get_weights()):
            np.testing.assert_array_equal(a, b)
