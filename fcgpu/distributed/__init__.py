"""Data-parallel training over MPI ranks (``mpiexec -n N python train.py``), as ChainerMN does it.

``comm = fcgpu.distributed.init()`` joins MPI's world and returns its communicator (``comm.rank``,
``comm.size``, ``comm.local_rank``); launched without mpiexec it returns the world of one and
nothing changes. After it, ``fit``'s batch_size is the global batch: every rank passes the same
data, takes its contiguous share of each global batch, and the gradients are averaged over the
ranks (one in-place all-reduce per flat gradient buffer: MPI on the host, NCCL between GPUs)
before each update, so every rank ends with the parameters one process gets from the same global
batches. evaluate, predict and History give global figures on every rank; ``model.save`` writes
once (rank 0); an uncaught error on any rank ends the whole job.

The parts: ``allreduce`` (``AllReduceOptimizer``: the gradients averaged over the ranks inside
the optimizer's update, ChainerMN's ``create_multi_node_optimizer``), ``data_parallel``
(``start_from_rank0``, ``step_share``), ``communicator`` (the world of one and MPI's), ``sharding``
(whose rows are whose), ``checks`` (every rank got the same data), ``faults`` (abort on an uncaught
error). ``fit``, ``evaluate`` and ``predict`` use them by themselves; a loop of one's own uses them
directly:

    comm = fcgpu.distributed.init()
    model.compile(optimizer=fcgpu.distributed.AllReduceOptimizer(fcgpu.optimizers.Adam(1e-3), comm), loss=...)
    model.build((None, features))
    fcgpu.distributed.start_from_rank0(model)        # every rank starts from rank 0's parameters and state
    for xb, yb in batches:                           # the same global batches on every rank
        lo, hi = fcgpu.distributed.shard_bounds(len(xb), comm.rank, comm.size)
        x, y = model.prepare_data(xb[lo:hi], yb[lo:hi])
        model.accumulate_batch(x, y, share=(hi - lo) / len(xb))   # forward, loss, backward, all-reduce + update

Only this
package imports mpi4py, and only inside ``init``: importing fcgpu never does.
"""
from __future__ import annotations

import warnings

import os
from typing import Any

from .. import backends
from .allreduce import AllReduceOptimizer, all_reducing, create_multi_node_optimizer
from .checks import fingerprint, same_on_every_rank
from .communicator import LocalWorld, MPICommunicator, RootFailed, world, set_world
from .faults import install_abort_hook
from .data_parallel import start_from_rank0, step_share
from .sharding import Batch, epoch_batches, shard_bounds

__all__ = [
    "AllReduceOptimizer",
    "Batch",
    "LocalWorld",
    "MPICommunicator",
    "RootFailed",
    "all_reducing",
    "create_multi_node_optimizer",
    "epoch_batches",
    "fingerprint",
    "init",
    "launched_under_mpi",
    "same_on_every_rank",
    "set_world",
    "launcher_rank",
    "shard_bounds",
    "start_from_rank0",
    "step_share",
    "world",
]

# What MPI launchers put in each rank's environment: (rank variable, size variable or None).
LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE"),  # MPICH's Hydra, Intel MPI
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI
    ("PMIX_RANK", None),  # PMIx launchers (Open MPI 5's prterun, srun --mpi=pmix)
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),  # MVAPICH
)


def launched_under_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun with PMI)."""
    return any(os.environ.get(rank) is not None for rank, _ in LAUNCHER_VARIABLES)


def launcher_rank() -> int | None:
    """This process's rank as its MPI launcher set it (before MPI is initialised), or None."""
    for rank, _ in LAUNCHER_VARIABLES:
        value = os.environ.get(rank)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def _launcher_size() -> int | None:
    for _, size in LAUNCHER_VARIABLES:
        value = os.environ.get(size) if size else None
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def init() -> LocalWorld:
    """Join MPI's world and return its communicator (``rank``, ``size``, ``local_rank``).

    Launched without an MPI launcher this is the world of one (mpi4py is not imported). With more
    than one rank it also installs the hook that aborts the whole job on an uncaught error, and
    gives each rank the GPU of its local rank for the CuPy backend, and silences RuntimeWarnings
    (NumPy's overflow warnings, fit's stop warning) on every rank but 0. Calling it again returns the
    same communicator. Raises ImportError when mpiexec started several ranks but mpi4py is not
    installed (each rank would otherwise train alone and all would write the same files).
    """
    if isinstance(world(), MPICommunicator) or not launched_under_mpi():
        return world()
    try:
        from mpi4py import MPI
    except ImportError as e:
        size = _launcher_size()
        if size == 1:
            return world()
        raise ImportError(
            f"fcgpu.distributed.init: started by an MPI launcher ({size or 'several'} ranks) but mpi4py "
            f"cannot be imported ({e}); install it with pip install 'fcgpu[mpi]'"
        ) from None
    comm = MPICommunicator(MPI)
    if comm.size > 1:
        install_abort_hook(comm)
        backends.assign_device(comm.local_rank)
        if comm.rank != 0:  # every rank computes the same figures: their numerical warnings print once
            warnings.filterwarnings("ignore", category=RuntimeWarning)
    set_world(comm)
    return comm


def describe(comm: Any) -> str:
    """One line: how many ranks, and of which kind."""
    if comm.size == 1:
        return "one process"
    return f"{comm.size} ranks ({comm.kind}, {comm.local_size} on this machine)"
