"""The data-parallel parts that need no MPI: sharding, the world of one, the checks, the abort hook,
init without a launcher (no mpi4py imported) and the stand-in's devices."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import distributed
from fcgpu.testing import fake_cupy

from dp_helpers import clean_env


@pytest.mark.parametrize("n, batch, size", [(103, 16, 2), (53, 10, 3), (9, 1, 2), (5, 8, 4), (64, 8, 1)])
def test_each_global_batch_is_split_into_contiguous_shares(n, batch, size):
    order = np.random.default_rng(0).permutation(n)
    sliced = [distributed.epoch_batches(n, batch, r, size)[0] for r in range(size)]
    gathered = [distributed.epoch_batches(n, batch, r, size, gathered=True) for r in range(size)]
    for k, start in enumerate(range(0, n, batch)):
        rows = min(batch, n - start)
        shares = [s[k] for s in sliced]
        assert all(b.rows == rows for b in shares)
        assert [b.start for b in shares] == [start + r * rows // size for r in range(size)]
        assert shares[0].start == start and shares[-1].stop == start + rows
        assert all(a.stop == b.start for a, b in zip(shares, shares[1:]))  # contiguous, in rank order
        assert max(b.stop - b.start for b in shares) - min(b.stop - b.start for b in shares) <= 1
        for r, (batches, positions) in enumerate(gathered):  # the same rows, gathered once per epoch
            mine = order[positions] if positions is not None else order
            b = batches[k]
            assert np.array_equal(mine[b.start : b.stop], order[shares[r].start : shares[r].stop])


def test_the_world_of_one_changes_nothing():
    comm = distributed.world()
    assert (comm.rank, comm.size, comm.local_rank, comm.is_root) == (0, 1, 0, True)
    a = np.arange(4.0)
    assert comm.allreduce_host(a) is a and comm.broadcast_host(a) is a and np.array_equal(a, np.arange(4.0))
    assert comm.bcast_object({"x": 1}) == {"x": 1} and comm.allgather_object(3) == [3]
    assert comm.run_on_root(lambda: 7, "step") == 7
    with pytest.raises(ValueError, match="a problem"):
        comm.agree("a problem")
    assert distributed.shard_bounds(10, 0, 1) == (0, 10)


class _Gathering:
    """A communicator stand-in whose allgather_object returns preset values."""

    def __init__(self, values):
        self.values, self.size, self.rank = values, len(values), 0

    def allgather_object(self, obj):
        return self.values


def test_a_rank_with_other_data_is_named():
    x = np.arange(6.0).reshape(3, 2)
    same = distributed.fingerprint(x)
    assert distributed.fingerprint(x.copy()) == same and distributed.fingerprint(x + 1) != same
    comm = _Gathering([(32, same), (32, same), (32, distributed.fingerprint(x + 1))])  # by name: batch, x
    with pytest.raises(ValueError, match=r"fit: every rank must pass the same x .* but rank 2 of 3 differs from rank 0"):
        distributed.same_on_every_rank(comm, "fit", x=same, batch=32)
    distributed.same_on_every_rank(_Gathering([(32, same)] * 3), "fit", x=same, batch=32)


def test_the_abort_hook_prints_the_rank_and_ends_the_job(capfd):
    class Comm:
        rank, size, aborted = 1, 2, None

        def abort(self, code):
            Comm.aborted = code

    previous = distributed.install_abort_hook(Comm())
    try:
        try:
            raise KeyError("lost")
        except KeyError as e:
            sys.excepthook(type(e), e, e.__traceback__)
    finally:
        sys.excepthook = previous
    err = capfd.readouterr().err
    assert "[rank 1] KeyError: 'lost'" in err and "uncaught KeyError on rank 1 of 2; aborting" in err
    assert Comm.aborted == 1


def _python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(**env), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_mpiexec_init_is_a_world_of_one_and_mpi4py_is_never_imported():
    """Not by fcgpu, nor by its testing package (the NCCL stand-in imports it when a communicator is made)."""
    out = _python(
        "import sys, numpy as np, fcgpu as fc, fcgpu.testing; m = fc.Sequential([fc.Dense(2)]);"
        "m.compile(loss='mse', optimizer='sgd'); m.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0);"
        "before = 'mpi4py' in sys.modules; c = fc.distributed.init();"
        "print(before, 'mpi4py' in sys.modules, c.size, c.rank, c is fc.distributed.init())"
    )
    assert out == "False False 1 0 True"


def test_a_launcher_without_mpi4py_is_refused_with_the_fix():
    code = (
        "import sys; sys.modules['mpi4py'] = None; import fcgpu as fc\n"
        "try:\n    fc.distributed.init()\nexcept ImportError as e:\n    print(e)\n"
    )
    assert "pip install 'fcgpu[mpi]'" in _python(code, PMI_RANK="0", PMI_SIZE="2")
    assert _python("import sys; sys.modules['mpi4py'] = None; import fcgpu as fc; print(fc.distributed.init().size)",
                   PMI_RANK="0", PMI_SIZE="1") == "1"


def test_the_stand_in_has_as_many_devices_as_asked(monkeypatch):
    rt = fake_cupy.cuda.runtime
    with pytest.raises(RuntimeError, match="cudaErrorInvalidDevice"):
        fake_cupy.cuda.Device(1)
    monkeypatch.setenv("FCGPU_FAKE_CUPY_DEVICES", "2")
    try:
        assert rt.getDeviceCount() == 2
        with fake_cupy.cuda.Device(1):
            assert rt.getDevice() == 1
        assert rt.getDevice() == 0
        fake_cupy.cuda.Device(1).use()
        assert rt.getDevice() == 1 and fake_cupy.cuda.get_current_stream().ptr == 0
    finally:
        fake_cupy.cuda.Device(0).use()
    from fcgpu.testing.fake_cupy.cuda import nccl

    assert nccl.NCCL_FLOAT32 == 7 and len(nccl.get_unique_id()) == 128
