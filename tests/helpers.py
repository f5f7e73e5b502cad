"""Test helpers shared by several test modules (test modules never import each other)."""
from __future__ import annotations

import gzip
import struct

import numpy as np


def idx_bytes(array: np.ndarray, type_code: int, big_endian_dtype: str) -> bytes:
    header = b"\x00\x00" + bytes([type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


def make_fashion_dir(path, n_train=6, n_test=4, gzipped=True):
    rng = np.random.default_rng(0)
    path.mkdir(exist_ok=True)
    sets = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8), 8, "u1"),
        "train-labels-idx1-ubyte": idx_bytes(np.arange(n_train, dtype=np.uint8) % 10, 8, "u1"),
        "t10k-images-idx3-ubyte": idx_bytes(np.full((n_test, 28, 28), 255, np.uint8), 8, "u1"),
        "t10k-labels-idx1-ubyte": idx_bytes(np.arange(n_test, dtype=np.uint8), 8, "u1"),
    }
    for name, raw in sets.items():
        if gzipped:
            (path / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (path / name).write_bytes(raw)
    return path


def summary_text(model) -> str:
    """What ``model.summary()`` prints, as one string."""
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def host(a):
    """A host copy of an array of any backend."""
    import fcgpu as fc

    return np.array(fc.to_numpy(a), copy=True)
