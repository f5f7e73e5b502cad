"""Host (CPU) time per training step of fit's two CuPy paths, the step by step and the captured
CUDA graph, measured side by side in one run on fcgpu's host stand-in for CuPy (no GPU).

    python benchmarks/graph_step_host_time.py [--rounds 3] [--json out.json]

Times are the main thread's CPU time (``time.thread_time``: a shared machine's waits are left
out; run with OPENBLAS_NUM_THREADS=1 so that NumPy's GEMMs run, and count, in that thread).
Two figures a path, each the median over rounds of one steady epoch (after a fit that warms up and,
on the graph path, captures) divided by its steps; the paths alternate within a round:

- ``kernels skipped``: the stand-in's ElementwiseKernels are recorded, not run
  (``record_kernel_calls(execute=False)``): what is left is fit's Python, fcgpu's step code and the
  stand-in's dispatch of each operation, plus, on the step-by-step path, NumPy running the GEMMs
  that stand in for cuBLAS (timed apart, ``numpy GEMMs``). This is the closest the stand-in comes to
  "Python and launch overhead"; the stand-in's dispatch is not CuPy's, so it is no GPU figure.
- ``all run``: everything executes on the host, kernels included (the capture GEMM is a naive loop
  here, slower than NumPy's BLAS): what a test of the stand-in costs, not a device time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import fcgpu as fc
from fcgpu.testing import fake_cupy, stand_in_backend

MODELS = [((64, 256, 256, 10), 256, True), ((784, 512, 10), 128, False)]
STEPS = 20


class EpochClock(fc.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.thread_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.thread_time() - self._start)


def build(widths: tuple[int, ...], dropout: bool) -> fc.Sequential:
    fc.set_seed(0)
    with fc.use_backend(stand_in_backend()):
        layers = []
        for w in widths[1:-1]:
            layers.append(fc.Dense(w, activation="relu"))
            if dropout:
                layers.append(fc.Dropout(0.2, seed=1))
        layers.append(fc.Dense(widths[-1], activation="softmax"))
        model = fc.Sequential(layers)
        model.build(widths[0])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(1e-3), metrics=["accuracy"])
    return model


def seconds_per_step(widths, batch, dropout, graphs: bool, run_kernels: bool) -> float:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS * batch, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], STEPS * batch)
    model = build(widths, dropout)
    fc.config.set_graphs(graphs)
    clock = EpochClock()
    try:
        with fake_cupy.record_kernel_calls(execute=run_kernels):
            model.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[clock])  # epoch 1 warms up
    finally:
        fc.config.set_graphs(True)
    return clock.seconds[-1] / STEPS


def gemm_seconds(widths, batch) -> float:
    """NumPy's time for the step-by-step path's GEMMs of one step (forward, dW, dx but the first's)."""
    rng = np.random.default_rng(0)
    mats = [(rng.standard_normal((batch, a)).astype(np.float32), rng.standard_normal((a, b)).astype(np.float32),
             rng.standard_normal((batch, b)).astype(np.float32)) for a, b in zip(widths, widths[1:])]
    def step() -> None:
        for k, (x, w, dz) in enumerate(mats):
            x @ w
            x.T @ dz
            if k:
                dz @ w.T

    step()  # BLAS's first call
    start = time.thread_time()
    for _ in range(10):
        step()
    return (time.thread_time() - start) / 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = []
    for widths, batch, dropout in MODELS:
        row = {"model": "-".join(map(str, widths)), "batch": batch, "dropout": dropout, "optimizer": "Adam"}
        for run_kernels, label in ((False, "kernels skipped"), (True, "all run")):
            times: dict[str, list[float]] = {"step by step": [], "graph": []}
            for _ in range(args.rounds):
                for graphs, name in ((False, "step by step"), (True, "graph")):
                    times[name].append(seconds_per_step(widths, batch, dropout, graphs, run_kernels))
            row[label] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        row["numpy GEMMs"] = gemm_seconds(widths, batch) * 1e3
        results.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
