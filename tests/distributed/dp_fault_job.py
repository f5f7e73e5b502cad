"""A data-parallel job that goes wrong on purpose: ``mpiexec -n 2 python dp_fault_job.py MODE OUT_DIR``.

Rank 1 fails at the start of the second epoch, after a checkpoint was written at the end of the
first: MODE 'raise' raises an uncaught error, 'kill' kills the process outright (SIGKILL). Rank 0
goes on into the next gradient all-reduce, where it would wait for ever if the job were not ended.
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

import fcgpu as fc


def main(mode: str, out_dir: str) -> None:
    comm = fc.distributed.init()
    fc.set_backend("numpy")
    fc.set_seed(comm.rank)

    def fail(epoch: int, logs: dict) -> None:
        if epoch == 1 and comm.rank == 1:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure on rank 1")

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)), rng.integers(0, 4, 64)
    model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(4)])
    model.compile(loss="softmax_cross_entropy", optimizer="adam")
    checkpoint = fc.callbacks.ModelCheckpoint(os.path.join(out_dir, "epoch{epoch}.fcgpu"), save_best_only=False)
    model.fit(x, y, batch_size=8, epochs=10_000, verbose=0,
              callbacks=[checkpoint, fc.callbacks.LambdaCallback(on_epoch_begin=fail)])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
