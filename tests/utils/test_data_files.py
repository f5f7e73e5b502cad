"""Hostile data files: IDX headers and gzip streams that lie about their size, and splits that do not fit
the model; all refused with a ValueError naming what is wrong, before anything large is read."""
from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from fcgpu.utils import datasets as data
from helpers import idx_bytes


def test_an_idx_header_declaring_a_huge_array_is_refused_unread(tmp_path):
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(16)
    (tmp_path / "huge").write_bytes(raw)
    with pytest.raises(ValueError, match=r"declares shape \(4294967295, 4294967295, 4294967295\)"):
        data.read_idx(tmp_path / "huge")


def test_a_gzip_bomb_is_not_inflated(tmp_path):
    good = idx_bytes(np.zeros((4, 5), np.uint8), 0x08, "u1")
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(good + bytes(64 * 2**20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="holds more than 20 bytes of data"):
            data.read_idx(tmp_path / "bomb.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def split(y_test=None, x_test=None):
    x = np.zeros((4, 3), np.float32)
    y = np.arange(4)
    return (x, y), (x if x_test is None else x_test, y if y_test is None else y_test)


@pytest.mark.parametrize(
    "bad, message",
    [
        (split(y_test=np.array([0, 1, 10, 2])), r"the test labels hold class 10: expected class ids in \[0, 10\)"),
        (split(y_test=np.array([0, -1, 2, 3])), "the test labels hold class -1"),
        (split(y_test=np.arange(3)), "the test labels are int64 of shape \\(3,\\): expected 4 integer class ids"),
        (split(y_test=np.zeros(4)), "the test labels are float64"),
        (split(x_test=np.zeros((4, 5), np.float32)), "the train and test images differ in size"),
        (split(x_test=np.full((4, 3), np.nan, np.float32)), "the test images hold NaN or inf"),
        (split(x_test=np.zeros((0, 3), np.float32)), "the test images are float32 of shape \\(0, 3\\)"),
        ((1, 2), r"expected \(\(x_train, y_train\), \(x_test, y_test\)\)"),
    ],
)
def test_check_split(bad, message):
    with pytest.raises(ValueError, match=f"data: {message}"):
        data.check_split(bad, 10, "data")
    data.check_split(split(), 10, "data")
