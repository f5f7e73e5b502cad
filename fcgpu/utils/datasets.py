"""Data sets for the training job: scikit-learn's digits and Fashion-MNIST from IDX files.

Each loader returns ``(x_train, y_train), (x_test, y_test)``: x float32 (N, features) scaled to
[0, 1], y int64 class ids (N,).
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Any

import numpy as np

__all__ = [
    "check_split",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
]

# Where Debian's (and Ubuntu's) dataset-fashion-mnist package puts the four IDX files.
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load_digits(seed: int = 0, test_size: float = 0.25) -> Split:
    """scikit-learn's 1797 8x8 handwritten digits: x (N, 64) in [0, 1], ten classes.

    Split ``test_size`` (75/25 by default) stratified by class, shuffled with ``seed``.
    Needs scikit-learn (``pip install fcgpu[data]``), which ships the data set itself.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError(
            f"the digits data set comes with scikit-learn, which is not installed ({e}); "
            f"install it with: pip install 'fcgpu[data]'"
        ) from None
    data = sk_load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    return (x_train, y_train), (x_test, y_test)


# IDX: a big-endian header (two zero bytes, a type code, the number of dimensions), the
# dimensions as big-endian uint32, then the data in C order.
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_BYTES = 2**34  # 16 GiB: far above any IDX data set; a header declaring more is forged or corrupted


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in an IDX file (as used by MNIST and Fashion-MNIST), gzipped or not.

    The header is read and checked first; then exactly the bytes it declares, never more (a
    gzip bomb or a forged size is refused before it is inflated).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES or head[3] < 1:
                raise ValueError(f"path: {path!r} is not an IDX file (bad magic number {head.hex()})")
            dims = f.read(4 * head[3])
            if len(dims) < 4 * head[3]:
                raise ValueError(f"path: {path!r} is truncated (its header is incomplete)")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            expected = math.prod(shape) * dtype.itemsize
            if expected > MAX_IDX_BYTES:
                raise ValueError(f"path: {path!r} declares shape {shape}, {expected} bytes of data (corrupted?)")
            raw = f.read(expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"path: cannot read {path!r}: {e}") from None
    if len(raw) != expected:
        got = f"{len(raw)}" if len(raw) <= expected else f"more than {expected}"
        raise ValueError(
            f"path: {path!r} holds {got} bytes of data, but its header {shape} says {expected} "
            f"(truncated or corrupted)"
        )
    return np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def check_split(split: Split, classes: int, what: str) -> None:
    """Raise ValueError unless ``split`` is ``(x_train, y_train), (x_test, y_test)`` as a loader returns:
    x 2-D floating with the same number of features in both parts, finite; y 1-D integer class ids
    in [0, classes), one per row of x; at least one sample in each part."""
    try:
        parts = {"train": split[0], "test": split[1]}
        pairs = {name: (np.asarray(x), np.asarray(y)) for name, (x, y) in parts.items()}
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{what}: expected ((x_train, y_train), (x_test, y_test))") from None
    features = {x.shape[1:] for x, _ in pairs.values()}
    for name, (x, y) in pairs.items():
        if x.ndim != 2 or x.dtype.kind != "f" or len(x) < 1:
            raise ValueError(f"{what}: the {name} images are {x.dtype} of shape {x.shape}: expected float (N >= 1, features)")
        if len(features) != 1:
            raise ValueError(f"{what}: the train and test images differ in size: {sorted(features)}")
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise ValueError(
                f"{what}: the {name} labels are {y.dtype} of shape {y.shape}: expected {len(x)} integer class ids, "
                f"one per image"
            )
        if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ValueError(f"{what}: the {name} labels hold class {bad}: expected class ids in [0, {classes})")
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: the {name} images hold NaN or inf")


def _find(data_dir: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        candidate = os.path.join(data_dir, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Split:
    """Zalando's Fashion-MNIST, 60,000 training and 10,000 test 28x28 images: x (N, 784) in [0, 1].

    Reads the four IDX files (``train-images-idx3-ubyte[.gz]``, ...) from ``data_dir``, by default
    where Debian's ``dataset-fashion-mnist`` package installs them.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else DEFAULT_FASHION_MNIST_DIR
    paths = {key: _find(data_dir, stem) for key, stem in _FASHION_FILES.items()}
    missing = [_FASHION_FILES[k] + "[.gz]" for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"data_dir: Fashion-MNIST not found in {data_dir!r} (missing {', '.join(missing)}). Get it with "
            f"'apt-get install dataset-fashion-mnist' (Debian/Ubuntu, installs to {DEFAULT_FASHION_MNIST_DIR}), "
            f"or download the four IDX files from the zalandoresearch/fashion-mnist repository and pass their "
            f"folder as data_dir (--data-dir on the command line)"
        )
    arrays = {key: read_idx(p) for key, p in paths.items()}
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"data_dir: the {split} files in {data_dir!r} do not fit together: images {images.shape}, "
                f"labels {labels.shape}"
            )
        if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"data_dir: the {split} files in {data_dir!r} hold {images.dtype} images and {labels.dtype} labels: "
                f"expected uint8 pixels and integer labels"
            )
        x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255)
        out.append((x, labels.astype(np.int64)))
    split_out: Split = (out[0], out[1])
    check_split(split_out, len(FASHION_MNIST_CLASSES), f"data_dir: the Fashion-MNIST files in {data_dir!r}")
    return split_out


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64) as an IDX file; gzipped if ``compress``
    (default: when the name ends in .gz)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k for k, v in _IDX_TYPES.items()}
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    code = codes.get(big.dtype)
    if code is None:
        raise TypeError(f"array: IDX cannot hold dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(big).tobytes()
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)
