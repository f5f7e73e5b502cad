"""Communicators: the world of one process (``LocalWorld``) and MPI's world (``MPICommunicator``).

Both offer what data-parallel training needs of a communicator, on host (NumPy) buffers: rank and
size (and the rank and size within the machine, which pick each rank's GPU), in-place sums and
broadcasts, object broadcasts and gathers, gathering rows, a barrier, running a step on rank 0
only, and ending the whole job. In a world of one every collective is the identity, so code
written for N ranks runs unchanged in one process. Device buffers travel through the backends
(``Backend.allreduce_sum`` / ``Backend.broadcast``): over MPI on the host, over NCCL on GPUs,
whose communicator the CuPy backend keeps in ``attachments``.

Only this package imports mpi4py, and only once ``fcgpu.distributed.init`` asks for MPI.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

__all__ = ["LocalWorld", "MPICommunicator", "RootFailed", "World", "set_world", "world"]

T = TypeVar("T")


class RootFailed(RuntimeError):
    """Raised on the other ranks when a step that only rank 0 runs (such as saving) failed there."""


class LocalWorld:
    """The world of one process: rank 0 of 1, and every collective returns its input."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    kind = "local"

    def __init__(self) -> None:
        self.attachments: dict[Any, Any] = {}  # per-backend state, e.g. the CuPy backend's NCCL communicator

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"<fcgpu {self.kind} communicator: rank {self.rank} of {self.size}, local rank {self.local_rank}>"

    # -- host collectives (identities here) -----------------------------------------
    def barrier(self) -> None:
        """Wait until every rank got here."""

    def allreduce_host(self, buffer: np.ndarray) -> np.ndarray:
        """``buffer`` (a contiguous host array) replaced, in place, by its sum over the ranks."""
        return buffer

    def sum_host(self, values: np.ndarray) -> np.ndarray:
        """A new host array: ``values`` summed over the ranks (``values`` itself is left as it is)."""
        return np.array(values, dtype=np.float64, copy=True)

    def broadcast_host(self, buffer: np.ndarray, root: int = 0) -> np.ndarray:
        """``buffer`` (a contiguous host array) overwritten, in place, by rank ``root``'s."""
        return buffer

    def bcast_object(self, obj: T, root: int = 0) -> T:
        """Rank ``root``'s ``obj`` (picklable) on every rank."""
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        """[every rank's ``obj``] in rank order, on every rank."""
        return [obj]

    def allgather_rows(self, local: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` (R, ...) filled with every rank's ``local`` rows, stacked in rank order (each
        rank's share given by ``fcgpu.distributed.shard_bounds``)."""
        out[...] = local
        return out

    # -- steps on one rank ------------------------------------------------------------
    def run_on_root(self, step: Callable[[], T], what: str) -> T | None:
        """Run ``step`` on rank 0 while the other ranks wait; an error there is raised on every rank
        (on the others as ``RootFailed`` with rank 0's message), so no rank is left waiting."""
        return step()

    @contextlib.contextmanager
    def quiet_unless_root(self) -> Iterator[None]:
        """A block whose standard output is discarded on every rank but 0 (what it prints, it
        prints once)."""
        yield

    def agree(self, problem: str | None) -> None:
        """Raise ValueError on every rank when any rank found a ``problem`` (a message, or None),
        naming the first such rank: a check that fails on one rank fails on all, so no rank is
        left waiting in a collective the others skipped."""
        if problem is not None:
            raise ValueError(problem)

    def abort(self, code: int = 1) -> None:
        """End the whole job now (every rank), with exit status ``code``."""
        sys.stderr.flush()
        os._exit(code)


class MPICommunicator(LocalWorld):
    """MPI's world through mpi4py: one process per rank, launched by ``mpiexec -n N``."""

    kind = "mpi"

    def __init__(self, mpi_module: Any, comm: Any | None = None) -> None:
        super().__init__()
        self.MPI = mpi_module
        self._devnull: Any = None
        self.mpi = comm if comm is not None else mpi_module.COMM_WORLD
        self.rank = self.mpi.Get_rank()
        self.size = self.mpi.Get_size()
        node = self.mpi.Split_type(mpi_module.COMM_TYPE_SHARED, key=self.rank)
        try:
            self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        finally:
            node.Free()

    def barrier(self) -> None:
        self.mpi.Barrier()

    def allreduce_host(self, buffer: np.ndarray) -> np.ndarray:
        _require_contiguous(buffer, "allreduce_host")
        self.mpi.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def sum_host(self, values: np.ndarray) -> np.ndarray:
        send = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(send)
        self.mpi.Allreduce(send, out, op=self.MPI.SUM)
        return out

    def broadcast_host(self, buffer: np.ndarray, root: int = 0) -> np.ndarray:
        _require_contiguous(buffer, "broadcast_host")
        self.mpi.Bcast(buffer, root=root)
        return buffer

    def bcast_object(self, obj: T, root: int = 0) -> T:
        return self.mpi.bcast(obj, root=root)

    def allgather_object(self, obj: Any) -> list[Any]:
        return self.mpi.allgather(obj)

    def allgather_rows(self, local: np.ndarray, out: np.ndarray) -> np.ndarray:
        from .sharding import shard_bounds

        _require_contiguous(out, "allgather_rows")
        width = int(np.prod(out.shape[1:], dtype=np.int64))
        bounds = [shard_bounds(out.shape[0], r, self.size) for r in range(self.size)]
        counts = [(hi - lo) * width for lo, hi in bounds]
        displs = [lo * width for lo, _ in bounds]
        self.mpi.Allgatherv(np.ascontiguousarray(local, dtype=out.dtype), [out, (counts, displs)])
        return out

    def run_on_root(self, step: Callable[[], T], what: str) -> T | None:
        result, error = None, None
        if self.rank == 0:
            try:
                result = step()
            except BaseException as e:  # told to the others first, then raised here as it was
                error = e
        message = self.bcast_object(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        if message is not None:
            raise RootFailed(f"{what} failed on rank 0: {message}")
        return result

    @contextlib.contextmanager
    def quiet_unless_root(self) -> Iterator[None]:
        if self.rank == 0:
            yield
            return
        if self._devnull is None:
            self._devnull = open(os.devnull, "w")  # kept: callbacks may be called every batch
        with contextlib.redirect_stdout(self._devnull):
            yield

    def agree(self, problem: str | None) -> None:
        problems = self.allgather_object(problem)
        for rank, text in enumerate(problems):
            if text is not None:
                raise ValueError(text if rank == self.rank else f"on rank {rank} of {self.size}: {text}")

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        self.mpi.Abort(code)


def _require_contiguous(buffer: np.ndarray, what: str) -> None:
    if type(buffer) is not np.ndarray or not buffer.flags.c_contiguous:
        raise TypeError(f"{what}: expected a C-contiguous NumPy array, got {type(buffer).__name__}")


class World:
    """Where the current world is kept: ``World.current`` (what ``world()`` returns), read as an
    attribute by the training step, which checks it every step."""

    current: LocalWorld = LocalWorld()


def world() -> LocalWorld:
    """The communicator ``fcgpu.distributed.init`` joined, or the world of one before (or without) it."""
    return World.current


def set_world(comm: LocalWorld) -> LocalWorld:
    """Make ``comm`` the world that training uses (``init`` does); returns the previous one."""
    previous, World.current = World.current, comm
    return previous
