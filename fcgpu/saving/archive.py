"""The model-file archive: a JSON config and named, checksummed arrays, in NumPy's ``.npz`` layout.

A file is a ZIP archive of ``.npy`` members (what ``numpy.savez`` writes): ``__config__.npy``
holds a JSON string with the format tag and version and the shape, dtype and SHA-256 of every
other member; each of those holds one array. Nothing in a file is ever unpickled.

``read_archive`` trusts nothing in the file until it has checked it, in this order: the file is a
ZIP archive; its config member is small (``MAX_CONFIG_BYTES``) and is valid JSON naming this
format; every member is named in the config and every config entry has its member; each member's
sizes (the ZIP's declared uncompressed size, the ``.npy`` header's shape and dtype, read without
its data) agree with the config, before any array's data is read; and no member is decompressed
beyond the bytes its config entry accounts for. Every failure, whatever raised it inside ``zipfile``
or NumPy, becomes a ``ModelFileError`` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zipfile
from typing import IO, Any, Mapping

import numpy as np
from numpy.lib import format as npy_format

from .fileio import atomic_write

__all__ = ["FORMAT", "MAX_CONFIG_BYTES", "ModelFileError", "VERSION", "read_archive", "write_archive", "write_npz"]

FORMAT = "fcgpu.model"
VERSION = 1
CONFIG_KEY = "__config__"
MAX_CONFIG_BYTES = 16 * 2**20  # a config lists architecture and array metadata: far smaller than this
MAX_HEADER_BYTES = 10_000  # of one .npy header (NumPy's own default limit)
_MAX_INFLATION = 1100  # deflate expands at most 1032-fold: more than that is a forged size
_CHUNK = 2**20
_KINDS = "biufc"  # numeric dtypes only: no objects (pickles), strings, structures or dates
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelFileError(ValueError):
    """A model file that cannot be read: truncated, corrupted, altered, or not an fcgpu model."""


def write_npz(file: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an .npz archive into an open binary file."""
    np.savez(file, **arrays)


def digest(a: np.ndarray) -> str:
    """SHA-256 of an array's values in C order, as the config records it."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def write_archive(path: str | os.PathLike, config: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``config`` (JSON-ready) and ``arrays`` to ``path`` atomically (see ``fcgpu.saving.fileio``),
    recording each array's shape, dtype and SHA-256 in the config's ``arrays`` entry.

    Only what ``read_archive`` accepts is written: numeric arrays, under names other than the config's.
    """
    for key, a in arrays.items():
        if not isinstance(key, str) or not key or key == CONFIG_KEY:
            raise ValueError(f"arrays: expected names other than {CONFIG_KEY!r}, got {key!r}")
        if not isinstance(a, np.ndarray) or a.dtype.kind not in _KINDS or a.dtype.fields is not None:
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"arrays: {key!r} must be a numeric NumPy array, got {what}")
    config = dict(config)
    config["format"], config["version"] = FORMAT, VERSION
    config["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": digest(a)} for k, a in arrays.items()}
    entries = dict(arrays)
    entries[CONFIG_KEY] = np.array(json.dumps(config))
    with atomic_write(path) as f:
        write_npz(f, entries)


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, arrays) of an archive, each array checked against the shape, dtype and checksum the
    config records; any damage is a ModelFileError naming ``path``, a missing file FileNotFoundError."""
    text = os.fspath(path)
    if not os.path.exists(text):
        raise FileNotFoundError(f"path: no model file at {text!r}")
    try:
        return _Reader(text).read()
    except ModelFileError:
        raise
    except Exception as e:  # whatever zipfile, NumPy or the OS raised on a damaged file
        raise ModelFileError(
            f"path: {text!r} is not a readable fcgpu model file (truncated or corrupted: {type(e).__name__}: {e})"
        ) from None


class _Bounded:
    """A read-only view of a stream that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, stream: IO[bytes], limit: int, what: str) -> None:
        self.stream, self.left, self.what = stream, limit, what

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.left:
            raise ModelFileError(f"{self.what} is shorter than its .npy header says (truncated or altered)")
        data = self.stream.read(n)
        self.left -= len(data)
        return data


class _Entry:
    """One array's config entry, checked: shape, dtype, checksum and the bytes its data takes."""

    def __init__(self, key: str, meta: Any, bad: str) -> None:
        where = f"{bad}: its config entry for array {key!r}"
        if not isinstance(meta, dict):
            raise ModelFileError(f"{where} is a {type(meta).__name__}, not a dict")
        shape, dtype, sha = meta.get("shape"), meta.get("dtype"), meta.get("sha256")
        if (not isinstance(shape, list) or len(shape) > 32
                or not all(type(d) is int and 0 <= d < 2**63 for d in shape)):
            raise ModelFileError(f"{where} has shape {shape!r}: expected a list of at most 32 non-negative ints")
        if not isinstance(dtype, str) or len(dtype) > 16:
            raise ModelFileError(f"{where} has dtype {dtype!r}: expected a NumPy dtype string such as '<f4'")
        try:
            self.dtype = np.dtype(dtype)
        except Exception:
            raise ModelFileError(f"{where} has dtype {dtype!r}: not a NumPy dtype") from None
        if self.dtype.str != dtype or self.dtype.kind not in _KINDS or self.dtype.fields is not None:
            raise ModelFileError(f"{where} has dtype {dtype!r}: expected a plain numeric dtype (never objects)")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ModelFileError(f"{where} has checksum {sha!r}: expected 64 hex digits")
        self.key, self.shape, self.sha256 = key, tuple(shape), sha
        self.count = math.prod(self.shape)
        self.nbytes = self.count * self.dtype.itemsize
        if self.nbytes >= 2**62:
            raise ModelFileError(f"{where} declares {self.nbytes} bytes of data")


class _Reader:
    """One reading of one file: everything checked before it is trusted (see the module's docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.size = 0  # of the file, in bytes: no entry can hold more
        self.bad = f"path: {path!r} is not a readable fcgpu model file"
        self.foreign = f"path: {path!r} is not an fcgpu model file"

    def read(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if os.path.isdir(self.path):
            raise ModelFileError(f"{self.foreign}: it is a folder")
        self.size = os.path.getsize(self.path)
        with open(self.path, "rb") as raw:
            head = raw.read(8)
            if not head:
                raise ModelFileError(f"{self.bad}: the file is empty (truncated or corrupted)")
            if head.startswith(b"\x93NUMPY"):
                raise ModelFileError(f"{self.foreign}: it holds a single NumPy array (.npy), not a model archive")
            raw.seek(0)
            try:
                archive = zipfile.ZipFile(raw)
            except zipfile.BadZipFile as e:
                if head.startswith(b"PK"):
                    raise ModelFileError(f"{self.bad} (truncated or corrupted: {e})") from None
                raise ModelFileError(f"{self.foreign}: it is not a ZIP archive (a model file is an .npz archive)") from None
            with archive:
                return self._read_members(archive)

    def _read_members(self, archive: zipfile.ZipFile) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{self.bad}: it holds two entries of the same name (altered?)")
        if f"{CONFIG_KEY}.npy" not in names:
            raise ModelFileError(f"{self.foreign}: it has no '{CONFIG_KEY}' entry (not saved by fcgpu?)")
        members = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ModelFileError(f"{self.bad}: it holds {info.filename!r}, which is not an array (.npy)")
            members[info.filename[: -len(".npy")]] = info
        config = self._read_config(archive, members.pop(CONFIG_KEY))
        entries = {key: _Entry(key, meta, self.bad) for key, meta in config["arrays"].items()}
        if set(entries) != set(members):
            missing, extra = sorted(set(entries) - set(members)), sorted(set(members) - set(entries))
            raise ModelFileError(
                f"{self.bad}: its arrays do not match its config (missing {missing}, not in the config {extra})"
            )
        # Every member's sizes and header against its entry, before any array's data is read.
        offsets = {key: self._check_member(archive, info, entries[key]) for key, info in members.items()}
        arrays = {key: self._read_array(archive, members[key], entries[key], offsets[key]) for key in members}
        return config, arrays

    def _open(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> tuple[IO[bytes], _Bounded]:
        """The member's stream, and a view of it that gives at most its declared size, after checking that
        size against ``limit`` (what the config accounts for) and against what the file can hold."""
        what = f"{self.bad}: entry {info.filename!r}"
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{what} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{what} uses ZIP compression method {info.compress_type}: expected stored or deflated")
        if info.file_size > limit:
            raise ModelFileError(f"{what} declares {info.file_size} bytes, more than the {limit} its config accounts for")
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.compress_size > self.size or (stored and info.compress_size != info.file_size) or (
            info.file_size > max(info.compress_size, 1) * _MAX_INFLATION
        ):
            raise ModelFileError(f"{what} declares sizes that the file cannot hold (truncated or altered)")
        stream = archive.open(info)
        return stream, _Bounded(stream, info.file_size, what)

    def _header(self, reader: _Bounded, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """(shape, fortran_order, dtype) from a .npy header, reading nothing of the data."""
        version = npy_format.read_magic(reader)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(reader, max_header_size=MAX_HEADER_BYTES)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(reader, max_header_size=MAX_HEADER_BYTES)
        raise ModelFileError(f"{what} has .npy format version {version}: expected 1.0 or 2.0")

    def _read_config(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, Any]:
        """The config, checked to be a JSON dict naming this format and version, with an 'arrays' table."""
        what = f"{self.bad}: its '{CONFIG_KEY}' entry"
        stream, reader = self._open(archive, info, MAX_CONFIG_BYTES)
        with stream:
            shape, _, dtype = self._header(reader, what)
            if shape != () or dtype.kind != "U" or reader.left != dtype.itemsize:
                raise ModelFileError(f"{what} is not one JSON string (shape {shape}, dtype {dtype})")
            text = str(np.frombuffer(reader.read(reader.left), dtype)[0])
            if stream.read(1):
                raise ModelFileError(f"{what} holds more data than its recorded size")
        try:
            config = json.loads(text)
        except Exception as e:  # ValueError, RecursionError on deep nesting
            raise ModelFileError(f"{what} is not valid JSON ({type(e).__name__}: {e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ModelFileError(f"{self.foreign}: its config does not name the format {FORMAT!r}")
        version = config.get("version")
        if type(version) is not int or version != VERSION:
            raise ModelFileError(f"{self.bad}: format version {version!r}, this fcgpu reads version {VERSION}")
        if not isinstance(config.get("arrays"), dict):
            raise ModelFileError(f"{self.bad}: its config has no 'arrays' table (a dict of shapes, dtypes, checksums)")
        return config

    def _check_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: _Entry) -> int:
        """The offset of the member's data, after checking its sizes and header against ``entry``."""
        what = f"{self.bad}: array {entry.key!r}"
        stream, reader = self._open(archive, info, entry.nbytes + MAX_HEADER_BYTES + 16)
        with stream:
            shape, _, dtype = self._header(reader, what)
            offset = info.file_size - reader.left
        if tuple(shape) != entry.shape or dtype.str != entry.dtype.str:
            raise ModelFileError(
                f"{what} is stored with shape {tuple(shape)} and dtype {dtype.str!r}, but its config records "
                f"shape {entry.shape} and dtype {entry.dtype.str!r} (altered?)"
            )
        if reader.left != entry.nbytes:
            raise ModelFileError(
                f"{what} holds {reader.left} bytes of data, but shape {entry.shape} of {entry.dtype} takes "
                f"{entry.nbytes} (truncated or altered)"
            )
        return offset

    def _read_array(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: _Entry, offset: int) -> np.ndarray:
        """The member's array, read in chunks into its own buffer and checked against its checksum."""
        what = f"{self.bad}: array {entry.key!r}"
        stream, reader = self._open(archive, info, offset + entry.nbytes)
        with stream:
            _, fortran, _ = self._header(reader, what)
            flat = np.empty(entry.count, entry.dtype)
            out = flat.view(np.uint8)
            sha = hashlib.sha256()
            done = 0
            while done < entry.nbytes:
                chunk = reader.read(min(_CHUNK, entry.nbytes - done))
                if not chunk:
                    raise ModelFileError(f"{what} ends early (truncated)")
                out[done: done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                if not fortran:
                    sha.update(chunk)
                done += len(chunk)
            if stream.read(1):  # also makes zipfile check the member's CRC
                raise ModelFileError(f"{what} holds more data than its recorded size")
        array = flat.reshape(entry.shape[::-1]).T if fortran else flat.reshape(entry.shape)
        found = digest(array) if fortran else sha.hexdigest()
        if found != entry.sha256:
            raise ModelFileError(f"{what} does not match its recorded shape, dtype or checksum (altered?)")
        return array
