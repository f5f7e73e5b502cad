"""Helpers for the data-parallel tests: finding mpiexec and running jobs under it."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mpiexec_path() -> str | None:
    """The mpiexec beside this Python (MPICH's wheel puts it there), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def missing_mpi() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if mpiexec_path() is None:
        return "no mpiexec found (pip install mpich)"
    return None


@dataclass
class Job:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any MPI launcher's variables (pytest itself may run under one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_", "HYD"))}
    env.setdefault("FCGPU_BACKEND", "numpy")
    env.update(extra)
    return env
