"""Helpers for the data-parallel tests: finding mpiexec and the ``mpirun`` fixture that runs jobs
under it (skipped, with the reason, where mpi4py or mpiexec is missing). Test modules import the
fixture from here: a conftest.py in this folder would shadow the tests' own ``conftest`` module."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def mpirun():
    """run(ranks, *command, timeout=, env=) -> Job: ``mpiexec -n ranks command`` (a Python script
    path runs under this Python)."""
    reason = missing_mpi()
    if reason:
        pytest.skip(reason)
    mpiexec = mpiexec_path()

    def run(ranks: int, *command: str, timeout: float = 240, env: dict[str, str] | None = None) -> Job:
        argv = [mpiexec, "-n", str(ranks)]
        argv += [sys.executable, *command] if command[0].endswith(".py") else list(command)
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env or clean_env(),
                              stdin=subprocess.DEVNULL)
        return Job(done.returncode, done.stdout, done.stderr, time.monotonic() - start)

    return run
