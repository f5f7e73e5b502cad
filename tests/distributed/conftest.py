"""Fixtures for the data-parallel tests: ``mpirun`` runs a job under mpiexec (skipped, with the
reason, where mpi4py or mpiexec is missing)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dp_helpers import Job, clean_env, missing_mpi, mpiexec_path


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
