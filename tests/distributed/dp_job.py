"""One data-parallel job for the tests: ``mpiexec -n N python dp_job.py OUT_DIR numpy|standin``.

Every rank runs each scenario of ``dp_scenarios`` and writes its results to
OUT_DIR/<scenario>.rank<r>.pkl, with what the tests check besides: how many times each rank wrote a
model file, how many gradient all-reduces ran and on which buffer, the device each rank used, and
the error every rank got from mismatched data.
"""
from __future__ import annotations

import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import fcgpu as fc  # noqa: E402
import fcgpu.models.base  # noqa: E402
from dp_scenarios import SCENARIOS, SEED  # noqa: E402


def main(out_dir: str, backend_name: str) -> None:
    comm = fc.distributed.init()
    extra: dict = {"rank": comm.rank, "size": comm.size, "local_rank": comm.local_rank}
    if backend_name == "standin":
        from fcgpu.testing import count_device_ops, fake_cupy, stand_in_backend

        backend = stand_in_backend()
        backend.use_device(comm.local_rank)  # what init arranges for the real CuPy backend
        fc.set_backend(backend)
        extra["device"] = fake_cupy.cuda.runtime.getDevice()
    else:
        fc.set_backend("numpy")

    saves = []
    real_save = fcgpu.models.base.save_model
    fcgpu.models.base.save_model = lambda model, path: (saves.append(os.fspath(path)), real_save(model, path))[1]

    reduced = []  # (size, whether the buffer is the model's flat gradient buffer itself)
    host_allreduce = comm.allreduce_host

    def counting_allreduce(buffer):
        reduced.append(buffer.size)
        return host_allreduce(buffer)

    comm.allreduce_host = counting_allreduce
    for name, scenario in SCENARIOS.items():
        saves.clear()
        reduced.clear()
        if backend_name == "standin":
            with count_device_ops() as ops:
                result = scenario(comm.rank, out_dir)
            result["nccl_allreduces"] = ops.names.get("ncclAllReduce", 0)
        else:
            result = scenario(comm.rank, out_dir)
        result.update(extra, saves=list(saves), host_allreduces=list(reduced))
        with open(os.path.join(out_dir, f"{name}.rank{comm.rank}.pkl"), "wb") as f:
            pickle.dump(result, f)

    # A model saved directly: written once, and loadable.
    fc.set_seed(SEED + comm.rank)
    model = fc.Sequential([fc.Dense(3, dtype="float64")])
    model.build((None, 4))
    model.compile(loss="mse", optimizer="sgd")
    x = np.ones((4, 4))
    model.fit(x, np.zeros((4, 3)), batch_size=2, epochs=1, verbose=0)
    saves.clear()
    model.save(os.path.join(out_dir, "direct.fcgpu"))
    direct = {"saves": list(saves), "weights": model.get_weights()}

    # Mismatched data: every rank gets the same error, none hangs.
    try:
        model.fit(x + comm.rank, np.zeros((4, 3)), batch_size=2, epochs=1, verbose=0)
        direct["mismatch"] = None
    except ValueError as e:
        direct["mismatch"] = str(e)
    # An optimizer set up differently on one rank: every rank gets the same error, none hangs.
    other = fc.Sequential([fc.Dense(3, dtype="float64")])
    other.compile(loss="mse", optimizer=fc.optimizers.SGD(learning_rate=0.1 * (1 + comm.rank)))
    try:
        other.fit(x, np.zeros((4, 3)), batch_size=2, epochs=1, verbose=0)
        direct["optimizer_mismatch"] = None
    except ValueError as e:
        direct["optimizer_mismatch"] = str(e)
    # train_step with another batch on one rank.
    try:
        model.train_step(x + comm.rank, np.zeros((4, 3)))
        direct["train_step_mismatch"] = None
    except ValueError as e:
        direct["train_step_mismatch"] = str(e)
    # A diverging fit: its stop warning (and NumPy's overflow warnings) are shown by rank 0 only.
    import warnings

    diverging = fc.Sequential([fc.Dense(3, dtype="float16")])
    diverging.compile(loss="mse", optimizer=fc.optimizers.SGD(1e4))
    with warnings.catch_warnings(record=True) as caught:
        diverging.fit(np.full((4, 4), 100.0), np.full((4, 3), 1000.0), batch_size=2, epochs=3, verbose=0)
    direct["runtime_warnings"] = sum(issubclass(w.category, RuntimeWarning) for w in caught)
    # A save that fails on rank 0 fails on every rank.
    try:
        model.save(os.path.join(out_dir, "no-such-folder", "m.fcgpu"))
        direct["failed_save"] = None
    except Exception as e:  # noqa: BLE001 - the type is what the test checks
        direct["failed_save"] = f"{type(e).__name__}: {e}"
    with open(os.path.join(out_dir, f"direct.rank{comm.rank}.pkl"), "wb") as f:
        pickle.dump(direct, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
