"""TensorBoard event files, written and read without TensorFlow or protobuf.

An event file is a sequence of TFRecords: a little-endian uint64 length, the masked CRC-32C of
those 8 bytes, the payload, and the masked CRC-32C of the payload. Each payload is a serialized
``tensorflow.Event`` protobuf: ``wall_time`` (field 1, double), ``step`` (2, int64),
``file_version`` (3, string; the first event holds "brain.Event:2") and ``summary`` (5), whose
repeated ``value`` (1) holds a ``tag`` (1, string) and a ``simple_value`` (2, float), the form
TensorBoard reads as a scalar. The file name holds "tfevents", which TensorBoard looks for.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, Iterator

__all__ = ["crc32c", "EventFileWriter", "read_events", "read_records"]


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecords use; crc32c(b"123456789") == 0xE3069283."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf encodes a negative one
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, kind: int, payload: bytes) -> bytes:
    return _varint(number << 3 | kind) + payload


def _string(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _event(wall_time: float, step: int, file_version: str | None = None, scalars: dict[str, float] | None = None) -> bytes:
    out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(int(step)))
    if file_version is not None:
        out += _string(3, file_version.encode())
    if scalars:
        values = b"".join(
            _string(1, _string(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(v)))) for tag, v in scalars.items()
        )
        out += _string(5, values)
    return out


def _record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", _masked(crc32c(length))) + payload + struct.pack("<I", _masked(crc32c(payload)))


class EventFileWriter:
    """Appends scalar events to a new event file in ``folder`` (created on the first write)."""

    _count = 0

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        self.path: str | None = None
        self._file: Any = None

    def _open(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        EventFileWriter._count += 1
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{EventFileWriter._count}.v2"
        self.path = os.path.join(self.folder, name)
        self._file = open(self.path, "ab")
        self._file.write(_record(_event(time.time(), 0, file_version="brain.Event:2")))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One event at ``step`` holding each tag's value."""
        if not values:
            return
        if self._file is None:
            self._open()
        self._file.write(_record(_event(time.time(), step, scalars=values)))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The payloads of a TFRecord file, each length and payload checked against its CRC-32C."""
    with open(path, "rb") as f:
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError(f"{os.fspath(path)}: truncated record header")
            length, crc = struct.unpack("<QI", head)
            if _masked(crc32c(head[:8])) != crc:
                raise ValueError(f"{os.fspath(path)}: a record length fails its CRC-32C")
            payload, tail = f.read(length), f.read(4)
            if len(payload) < length or len(tail) < 4 or _masked(crc32c(payload)) != struct.unpack("<I", tail)[0]:
                raise ValueError(f"{os.fspath(path)}: a record is truncated or fails its CRC-32C")
            yield payload


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = _read_varint(data, i)
        elif kind == 1:
            value, i = data[i : i + 8], i + 8
        elif kind == 5:
            value, i = data[i : i + 4], i + 4
        elif kind == 2:
            size, i = _read_varint(data, i)
            value, i = data[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")
        yield number, value


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Each event of a file as {'wall_time', 'step', 'file_version' (or None), 'scalars': {tag: value}}."""
    events = []
    for payload in read_records(path):
        event: dict[str, Any] = {"wall_time": 0.0, "step": 0, "file_version": None, "scalars": {}}
        for number, value in _fields(payload):
            if number == 1:
                event["wall_time"] = struct.unpack("<d", value)[0]
            elif number == 2:
                event["step"] = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 3:
                event["file_version"] = value.decode()
            elif number == 5:
                for n, item in _fields(value):
                    if n == 1:
                        parts = dict(_fields(item))
                        if 1 in parts and 2 in parts:
                            event["scalars"][parts[1].decode()] = struct.unpack("<f", parts[2])[0]
        events.append(event)
    return events
