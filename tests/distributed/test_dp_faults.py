"""A failing rank ends the whole data-parallel job, quickly, and leaves no partial checkpoint."""
from __future__ import annotations

import pytest

import fcgpu as fc

from dp_helpers import HERE, mpirun  # noqa: F401 - mpirun is a fixture

LIMIT = 60  # seconds: the job must be over well within this, never hang


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(mpirun, tmp_path, mode):
    done = mpirun(2, str(HERE / "dp_fault_job.py"), mode, str(tmp_path), timeout=LIMIT + 60)
    assert done.returncode != 0
    assert done.seconds < LIMIT
    if mode == "raise":  # the traceback of the rank that failed, then MPI_Abort
        assert "[rank 1] RuntimeError: injected failure on rank 1" in done.stderr
        assert "aborting every rank of the job" in done.stderr
    # Only whole checkpoints are left (epoch 1's, written before the failure), and they load.
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["epoch1.fcgpu"], files
    with fc.use_backend("numpy"):
        assert fc.load_model(tmp_path / "epoch1.fcgpu").count_params() == 8 * 8 + 8 + 8 * 4 + 4
