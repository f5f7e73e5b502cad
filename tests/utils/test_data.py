"""Data loaders: the IDX reader on files written here byte by byte, Fashion-MNIST layout, digits split."""
from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest

from fcgpu.utils import datasets as data
from helpers import idx_bytes, make_fashion_dir


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize(
    "array, code, dtype",
    [
        (np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), 0x08, "u1"),
        (np.array([-3, 0, 7], np.int8), 0x09, "i1"),
        (np.array([[1, -70000], [3, 2**30]], np.int32), 0x0C, ">i4"),
        (np.array([0.5, -1.25, 3e38], np.float32), 0x0D, ">f4"),
        (np.array([[1e-300, -2.0]]), 0x0E, ">f8"),
    ],
)
def test_read_idx(tmp_path, array, code, dtype, gzipped):
    raw = idx_bytes(array, code, dtype)
    path = tmp_path / ("a.idx.gz" if gzipped else "a.idx")
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    got = data.read_idx(path)
    assert got.shape == array.shape and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(np.zeros((4, 5), np.uint8), 0x08, "u1")
    cases = {
        "truncated": (good[:-3], "says 20"),
        "header": (good[:6], "header is incomplete"),
        "magic": (b"\x01\x02" + good[2:], "not an IDX file"),
        "type": (b"\x00\x00\x07" + good[3:], "not an IDX file"),
    }
    for name, (raw, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(ValueError, match="path") as info:
            data.read_idx(path)
        assert words in str(info.value), name
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(ValueError, match="cannot read"):
        data.read_idx(tmp_path / "bad.gz")


def test_write_idx_round_trips(tmp_path):
    for array in (np.arange(12, dtype=np.uint8).reshape(3, 4), np.array([1.5, -2.0], np.float32)):
        for name in ("x.idx", "x.idx.gz"):
            data.write_idx(tmp_path / name, array)
            np.testing.assert_array_equal(data.read_idx(tmp_path / name), array)


@pytest.mark.parametrize("gzipped", [True, False])
def test_load_fashion_mnist_from_idx_files(tmp_path, gzipped):
    folder = make_fashion_dir(tmp_path / "fm", gzipped=gzipped)
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(folder)
    assert x_train.shape == (6, 784) and x_test.shape == (4, 784)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    np.testing.assert_array_equal(x_test, 1.0)
    assert y_train.dtype == np.int64 and y_train.tolist() == [0, 1, 2, 3, 4, 5]


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(tmp_path)
    text = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in text and "--data-dir" in text
    assert "train-images-idx3-ubyte" in text


def test_mismatched_fashion_files(tmp_path):
    folder = make_fashion_dir(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8), 8, "u1")))
    with pytest.raises(ValueError, match="do not fit together"):
        data.load_fashion_mnist(folder)


def test_default_folder_is_debians():
    assert data.DEFAULT_FASHION_MNIST_DIR == "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(
    data._find(data.DEFAULT_FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte") is None,
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_when_installed():
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_digits_split_is_stratified_scaled_and_seeded():
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, y_test) = data.load_digits(seed=0)
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64)
    assert x_train.dtype == np.float32 and x_train.min() == 0 and x_train.max() == 1
    total = np.bincount(np.concatenate([y_train, y_test]))
    # Stratified: each class's test share is within one sample of 25 %.
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - total * 0.25) <= 1)
    again = data.load_digits(seed=0)
    np.testing.assert_array_equal(again[1][1], y_test)
    assert not np.array_equal(data.load_digits(seed=1)[1][1], y_test)


def test_digits_without_scikit_learn(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"fcgpu\[data\]"):
        data.load_digits()
