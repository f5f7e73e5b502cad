"""Hostile and inconsistent model files: every one is refused at load time with a ModelFileError that
names the file, before any array is read beyond what the config accounts for."""
from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import fcgpu as fc
import fcgpu.saving.archive as archive
from fcgpu import saving


@pytest.fixture
def saved(tmp_path, rng):
    model = fc.Sequential([fc.Dense(6, activation="relu"), fc.Dense(3)], name="net")
    model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.Adam(lr=0.01))
    model.train_step(rng.normal(size=(10, 4)).astype(np.float32), rng.integers(0, 3, size=10))
    path = tmp_path / "m.fcgpu"
    model.save(path)
    return path


def npy(array: np.ndarray, header: dict | None = None) -> bytes:
    """The .npy bytes of ``array``; with ``header``, that header dict in place of the true one."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    if header is None:
        return buf.getvalue()
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + array.tobytes()


def zip_of(path, members: dict[str, bytes], method=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)


def members_of(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def central_record(data: bytes, name: str) -> int:
    """Offset of ``name``'s entry in the ZIP's central directory."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46: at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


def config_npy(config: dict) -> bytes:
    return npy(np.array(json.dumps(config)))


def rewrite(path, edit) -> None:
    """Read the archive, let ``edit(config, arrays)`` change it, write it back consistently checksummed."""
    config, arrays = saving.read_archive(path)
    config.pop("arrays")
    edit(config, arrays)
    saving.write_archive(path, config, arrays)


def refused(path, match: str | None = None, **kwargs) -> str:
    with pytest.raises(fc.ModelFileError, match=match) as info:
        fc.load_model(path, **kwargs)
    message = str(info.value)
    assert repr(str(path)) in message and "allow_pickle" not in message
    return message


# -- not model files ------------------------------------------------------------------------------
def test_foreign_files_are_not_fcgpu_model_files(tmp_path):
    (tmp_path / "text").write_text("hello, world\n")
    np.save(tmp_path / "a.npy", np.arange(3))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    zip_of(tmp_path / "random.zip", {"readme.txt": b"hi"})
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    (tmp_path / "folder").mkdir()
    for name in ("text", "a.npy", "pickled.npy", "random.zip", "plain.npz", "folder"):
        assert "is not an fcgpu model file" in refused(tmp_path / name)


def test_object_arrays_are_never_unpickled(saved):
    members = members_of(saved)
    config = json.loads(str(np.load(io.BytesIO(members["__config__.npy"]))[()]))
    config["arrays"]["param/dense/bias"]["dtype"] = "|O"
    members["__config__.npy"] = config_npy(config)
    zip_of(saved, members)
    refused(saved, "never objects")


# -- sizes checked before data is read ----------------------------------------------------------------
def test_a_header_declaring_ten_billion_elements(saved):
    members = members_of(saved)
    bias = np.zeros(6, np.float32)
    members["param/dense/bias.npy"] = npy(bias, {"descr": "<f4", "fortran_order": False, "shape": (10**10,)})
    zip_of(saved, members)
    refused(saved, r"param/dense/bias.*shape \(10000000000,\)")
    # The config agreeing with the header does not help: the member cannot hold the data.
    config = json.loads(str(np.load(io.BytesIO(members["__config__.npy"]))[()]))
    config["arrays"]["param/dense/bias"]["shape"] = [10**10]
    members["__config__.npy"] = config_npy(config)
    zip_of(saved, members)
    refused(saved, "param/dense/bias")


def test_a_deflate_bomb_is_refused_without_inflating_it(saved):
    members = members_of(saved)
    bomb = members["param/dense/bias.npy"][:128] + bytes(64 * 2**20)  # a valid header, then 64 MB of zeros
    members["param/dense/bias.npy"] = bomb
    zip_of(saved, members, zipfile.ZIP_DEFLATED)
    assert saved.stat().st_size < 2**20
    tracemalloc.start()
    try:
        refused(saved, "declares .* bytes, more than")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_a_bomb_behind_a_forged_small_size_is_never_inflated(saved):
    members = members_of(saved)
    honest = members["param/dense/bias.npy"]
    members["param/dense/bias.npy"] = honest + bytes(64 * 2**20)
    zip_of(saved, members, zipfile.ZIP_DEFLATED)
    # Forge the bias's uncompressed size (local header and central directory) to its honest size.
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("param/dense/bias.npy")
    struct.pack_into("<I", data, info.header_offset + 22, len(honest))
    struct.pack_into("<I", data, central_record(data, "param/dense/bias.npy") + 24, len(honest))
    saved.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        refused(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_an_oversized_config_is_refused(saved, monkeypatch):
    monkeypatch.setattr(archive, "MAX_CONFIG_BYTES", 256)
    refused(saved, "__config__.*declares .* bytes")


@pytest.mark.parametrize(
    "config_text, match",
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"format": "fcgpu.model", "version": true, "arrays": {}}', "format version True"),
        ('{"format": "fcgpu.model", "version": 2, "arrays": {}}', "format version 2"),
        ('{"format": "other"}', "not an fcgpu model file"),
        ('{"format": "fcgpu.model", "version": 1, "arrays": []}', "'arrays' table"),
    ],
)
def test_bad_configs(tmp_path, config_text, match):
    zip_of(tmp_path / "m", {"__config__.npy": npy(np.array(config_text))})
    refused(tmp_path / "m", match)


def test_duplicate_and_unlisted_members(saved, tmp_path):
    members = members_of(saved)
    with zipfile.ZipFile(tmp_path / "dup", "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("param/dense/bias.npy", members["param/dense/bias.npy"])
    refused(tmp_path / "dup", "two entries of the same name")
    zip_of(tmp_path / "extra", {**members, "param/dense/evil.npy": npy(np.zeros(2))})
    refused(tmp_path / "extra", r"not in the config \['param/dense/evil'\]")
    del members["param/dense/bias.npy"]
    zip_of(tmp_path / "missing", members)
    refused(tmp_path / "missing", r"missing \['param/dense/bias'\]")


def test_every_damaged_byte_is_a_model_file_error(saved):
    """Flipping any byte of the archive's structure (headers, names, sizes, CRCs, .npy headers, the
    config) or cutting the file anywhere: it loads unchanged, or fails as a ModelFileError."""
    good = saved.read_bytes()
    expected = fc.load_model(saved).get_weights()
    rng = np.random.default_rng(5)
    positions = sorted(set(range(0, 160)) | set(range(len(good) - 400, len(good)))
                       | set(rng.integers(0, len(good), 150).tolist()))
    for at in positions:
        for value in (good[at] ^ 0xFF, 0x63):
            data = bytearray(good)
            data[at] = value
            saved.write_bytes(bytes(data))
            try:
                loaded = fc.load_model(saved)
            except fc.ModelFileError:
                continue
            for got, want in zip(loaded.get_weights(), expected, strict=True):  # unchanged, then
                np.testing.assert_array_equal(got, want)
    for cut in range(0, len(good), 97):
        saved.write_bytes(good[:cut])
        with pytest.raises(fc.ModelFileError):
            fc.load_model(saved)


@pytest.mark.parametrize(
    "header, match",
    [
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), '''", "truncated or corrupted"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (6L,), }", "checksum"),
        (b"{'descr': 'O', 'fortran_order': False, 'shape': (6,), }", "dtype"),
        (b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", "dtype"),
        (b"{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", r"shape \(-6,\)"),
        (b"not a dict at all", "truncated or corrupted"),
    ],
)
@pytest.mark.filterwarnings("ignore:Reading `.npy` or `.npz` file required additional header parsing")
def test_hostile_npy_headers(saved, header, match):
    members = members_of(saved)
    body = header + b" " * (118 - len(header) - 1) + b"\n" if len(header) < 117 else header + b"\n"
    members["param/dense/bias.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + bytes(24)
    zip_of(saved, members)
    refused(saved, match)


def test_encrypted_and_unknown_compression_members(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("param/dense/bias.npy")
    central = central_record(data, "param/dense/bias.npy")
    for offset, value in ((8, 0x01), (10, 99)):  # flag bits: encrypted; compression method 99
        forged = bytearray(data)
        forged[central + offset] = value
        forged[info.header_offset + offset - 2] = value
        saved.write_bytes(bytes(forged))
        refused(saved, "encrypted|compression method")


# -- consistency between the arrays and the model ----------------------------------------------------
@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c, a: a.update({"opt/dense/kernel/exp_avg": np.zeros((2, 2), np.float32)}),
         r"'exp_avg' of 'dense/kernel' has shape \(2, 2\)"),
        (lambda c, a: a.update({"opt/dense/bias/exp_avg": np.zeros(6)}), "dtype float64"),
        (lambda c, a: a.pop("opt/dense/bias/exp_avg"), r"missing \['opt/dense/bias/exp_avg'\]"),
        (lambda c, a: a.update({"opt/dense/bias/extra": np.zeros(6, np.float32)}), "not listed"),
        (lambda c, a: c["compile"]["optimizer_steps"].update({"dense/kernel": -1}), "step counts"),
        (lambda c, a: c["compile"]["optimizer_steps"].update({"dense/kernel": 2**64}), "step counts"),
        (lambda c, a: c["compile"]["optimizer_steps"].update({"dense/kernel": True}), "step counts"),
        (lambda c, a: c["compile"]["optimizer_steps"].update({"ghost/kernel": 3}), r"\['ghost/kernel'\]"),
        (lambda c, a: c["compile"]["optimizer_state"].update({"ghost/kernel": []}), r"\['ghost/kernel'\]"),
        (lambda c, a: c["compile"]["optimizer_state"].update({"dense/kernel": "exp_avg"}), "lists of distinct"),
        (lambda c, a: a.pop("param/dense/bias"), r"missing \['param/dense/bias'\]"),
        (lambda c, a: a.update({"param/dense/bogus": np.zeros(2, np.float32)}), r"unexpected \['param/dense/bogus'\]"),
        (lambda c, a: a.update({"param/dense/kernel": np.zeros((5, 6), np.float32)}), "kernel|shape"),
        (lambda c, a: c["model"].update({"class_name": "Pickle"}), "unknown class_name 'Pickle'"),
        (lambda c, a: c.update({"compile": 7}), "compile settings are a int"),
    ],
)
def test_inconsistent_files_fail_at_load_time(saved, edit, match):
    rewrite(saved, edit)
    refused(saved, match)
    refused(saved, match, compile=False)


def test_wrong_slot_names_fail_at_load_time(saved):
    def rename(config, arrays):
        config["compile"]["optimizer_state"]["dense/bias"] = ["exp_avg", "momentum"]
        arrays["opt/dense/bias/momentum"] = arrays.pop("opt/dense/bias/exp_avg_sq")

    rewrite(saved, rename)
    refused(saved, "slots")


def test_a_consistent_rewrite_still_loads(saved):
    rewrite(saved, lambda c, a: None)
    model = fc.load_model(saved)
    assert model.optimizer.steps == {"dense/kernel": 1, "dense/bias": 1, "dense_1/kernel": 1, "dense_1/bias": 1}


def test_fortran_order_arrays_load(saved):
    def transpose(config, arrays):
        arrays["param/dense/kernel"] = np.asfortranarray(arrays["param/dense/kernel"])

    expected = fc.load_model(saved).get_weights()
    rewrite(saved, transpose)
    for a, b in zip(fc.load_model(saved).get_weights(), expected):
        np.testing.assert_array_equal(a, b)


def test_format_one_files_of_this_release_keep_loading(saved):
    # What 0.1 wrote: numpy.savez of the arrays and the config string, stored (not deflated).
    with np.load(saved) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(saved, **arrays)
    assert fc.load_model(saved).count_params() == 6 * 4 + 6 + 6 * 3 + 3
    np.savez_compressed(saved, **arrays)
    assert fc.load_model(saved).count_params() == 51  # deflated members are read too
