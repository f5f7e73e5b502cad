"""A host stand-in for ``cupy.cuda.nccl`` (served as ``fcgpu.testing.fake_cupy.cuda.nccl``, imported
as CuPy's is), so the CuPy backend's data-parallel code runs without a GPU: CuPy 14's surface for
what fcgpu uses (``get_unique_id()``, 128 bytes; ``NcclCommunicator(ndev, commId, rank)`` with
``allReduce``, ``broadcast``, ``bcast``, ``rank_id``, ``size``, ``device_id``, ``destroy``, taking
device addresses, counts, NCCL's constants and a stream address; the constants, same values).

The collectives run over MPI (mpi4py) on the host memory behind the stand-in's device arrays (the
addresses turned back into NumPy views: an address, count or type wrong here is wrong on a GPU).
Making a communicator is collective as ``ncclCommInitRank`` is: every rank must pass the same
unique id, ``ndev`` = MPI's world size and its own rank, else it raises. Each collective counts as
one device operation ('kernel', e.g. 'ncclAllReduce'). Not reproduced: NCCL's algorithms and
summation order, asynchronous completion, several communicators in one process, group calls.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from .fake_cupy import capture
from .fake_cupy.counting import counted
from .fake_cupy.device import current_device

__all__ = ["NcclCommunicator", "NcclError", "available", "get_unique_id", "get_version", "get_build_version"]

available = True

NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4
NCCL_INT8 = NCCL_CHAR = 0
NCCL_UINT8 = 1
NCCL_INT32 = NCCL_INT = 2
NCCL_UINT32 = 3
NCCL_INT64 = 4
NCCL_UINT64 = 5
NCCL_FLOAT16 = NCCL_HALF = 6
NCCL_FLOAT32 = NCCL_FLOAT = 7
NCCL_FLOAT64 = NCCL_DOUBLE = 8
NCCL_BFLOAT16 = 9

_UNIQUE_ID_BYTES = 128
_VERSION = 22805  # reported as NCCL 2.28.5

_DTYPES = {
    NCCL_INT8: np.int8,
    NCCL_UINT8: np.uint8,
    NCCL_INT32: np.int32,
    NCCL_UINT32: np.uint32,
    NCCL_INT64: np.int64,
    NCCL_UINT64: np.uint64,
    NCCL_FLOAT16: np.float16,
    NCCL_FLOAT32: np.float32,
    NCCL_FLOAT64: np.float64,
}


class NcclError(RuntimeError):
    """``cupy.cuda.nccl.NcclError``: a failed NCCL call, named as NCCL names it."""


def get_unique_id() -> bytes:
    """A fresh communicator id (``ncclGetUniqueId``), to be broadcast to every rank."""
    return os.urandom(_UNIQUE_ID_BYTES)


def get_version() -> int:
    return _VERSION


def get_build_version() -> int:
    return _VERSION


def _host_view(address: int, count: int, datatype: int) -> np.ndarray:
    """The host memory at ``address`` as ``count`` elements of NCCL type ``datatype``."""
    if datatype == NCCL_BFLOAT16:
        import ml_dtypes

        dtype = np.dtype(ml_dtypes.bfloat16)
    elif datatype in _DTYPES:
        dtype = np.dtype(_DTYPES[datatype])
    else:
        raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: unknown datatype {datatype}")
    if count < 0 or (count and not address):
        raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: address {address:#x}, count {count}")
    raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(address) if count else bytearray()
    return np.frombuffer(raw, dtype=dtype, count=count)


class NcclCommunicator:
    """``cupy.cuda.nccl.NcclCommunicator`` for one device per process, over MPI's world."""

    def __init__(self, ndev: int, commId: bytes, rank: int) -> None:  # noqa: N803 - CuPy's names
        if not isinstance(commId, bytes) or len(commId) != _UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId) if isinstance(commId, bytes) else '?'} != {_UNIQUE_ID_BYTES}.")
        from mpi4py import MPI

        self._MPI = MPI
        world = MPI.COMM_WORLD
        seen = world.allgather((commId, int(ndev), int(rank)))
        if any(s[0] != seen[0][0] for s in seen):
            raise NcclError("NCCL_ERROR_INVALID_USAGE: the ranks passed different unique ids (broadcast rank 0's)")
        if int(ndev) != world.Get_size() or sorted(s[2] for s in seen) != list(range(world.Get_size())):
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: ndev {ndev} and ranks {[s[2] for s in seen]} do not match "
                f"the {world.Get_size()} processes"
            )
        self._comm = world.Split(0, int(rank))
        self._rank, self._size = int(rank), int(ndev)
        self._device = current_device()

    def _live(self) -> Any:
        if self._comm is None:
            raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: the communicator was destroyed")
        return self._comm

    def _op(self, op: int) -> Any:
        MPI = self._MPI
        ops = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN}
        if op not in ops:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: unsupported reduction {op}")
        return ops[op]

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int) -> None:  # noqa: N802
        """Captured (run at each replay) on the stream that is capturing, as NCCL's kernels are."""
        comm, mpi_op = self._live(), self._op(op)
        recv = _host_view(recvbuf, count, datatype)
        send = self._MPI.IN_PLACE if sendbuf == recvbuf else _host_view(sendbuf, count, datatype)

        def run() -> None:
            if recv.dtype.name == "bfloat16":  # MPI has no bfloat16: summed in float32, rounded once
                wide = recv.astype(np.float32) if send is self._MPI.IN_PLACE else send.astype(np.float32)
                comm.Allreduce(self._MPI.IN_PLACE, wide, op=mpi_op)
                recv[...] = wide.astype(recv.dtype)
            else:
                comm.Allreduce(send, recv, op=mpi_op)
        if capture.active() is not None and stream == capture.active()[0].ptr:
            return capture.record("ncclAllReduce", run)
        with counted("kernel", "ncclAllReduce"):  # (refused while another stream captures)
            run()

    def broadcast(self, sendbuff: int, recvbuff: int, count: int, datatype: int, root: int, stream: int) -> None:
        comm = self._live()
        recv = _host_view(recvbuff, count, datatype)
        if self._rank == root and sendbuff != recvbuff:
            recv[...] = _host_view(sendbuff, count, datatype)
        with counted("kernel", "ncclBroadcast"):
            comm.Bcast(recv.view(np.uint8), root=root)

    def bcast(self, buff: int, count: int, datatype: int, root: int, stream: int) -> None:
        self.broadcast(buff, buff, count, datatype, root, stream)

    def rank_id(self) -> int:
        self._live()
        return self._rank

    def size(self) -> int:
        self._live()
        return self._size

    def device_id(self) -> int:
        self._live()
        return self._device

    def destroy(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None

    def abort(self) -> None:
        self.destroy()
