"""Host (CPU) time of train_step, evaluate and predict with and without their captured graphs,
measured side by side in one run on fcgpu's host stand-in for CuPy (no GPU).

    OPENBLAS_NUM_THREADS=1 python benchmarks/graph_calls_host_time.py [--rounds 5] [--json out.json]

Per call of train_step (one batch), per batch of evaluate and predict: the main thread's CPU time
(``time.thread_time``) with the stand-in's kernels recorded, not run
(``record_kernel_calls(execute=False)``), so what is timed is fcgpu's Python, the stand-in's
dispatch of each device operation and, step by step, NumPy running the GEMMs that stand in for
cuBLAS. Median over rounds; the two paths alternate within a round. Not a GPU figure.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import fcgpu as fc
from fcgpu.testing import fake_cupy, stand_in_backend

MODELS = [((64, 256, 256, 10), 256), ((784, 512, 10), 128)]
CALLS = 20


def build(widths: tuple[int, ...]) -> fc.Sequential:
    fc.set_seed(0)
    with fc.use_backend(stand_in_backend()):
        model = fc.Sequential([fc.Dense(w, activation="relu") for w in widths[1:-1]]
                              + [fc.Dense(widths[-1], activation="softmax")])
        model.build(widths[0])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(1e-3), metrics=["accuracy"])
    return model


def per_call(widths, batch, graphs: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((CALLS * batch, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], CALLS * batch)
    model = build(widths)
    fc.config.set_graphs(graphs)
    out = {}
    try:
        with fake_cupy.record_kernel_calls(execute=False):
            model.train_step(x[:batch], y[:batch])  # warms up (and captures)
            model.evaluate(x, y, batch_size=batch)
            model.predict(x, batch_size=batch)
            start = time.thread_time()
            for i in range(CALLS):
                model.train_step(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
            out["train_step"] = (time.thread_time() - start) / CALLS
            start = time.thread_time()
            model.evaluate(x, y, batch_size=batch)
            out["evaluate batch"] = (time.thread_time() - start) / CALLS
            start = time.thread_time()
            model.predict(x, batch_size=batch)
            out["predict batch"] = (time.thread_time() - start) / CALLS
    finally:
        fc.config.set_graphs("auto")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {}
    for widths, batch in MODELS:
        name = f"{'-'.join(map(str, widths))} batch {batch}"
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for graphs in (False, True):
                runs[graphs].append(per_call(widths, batch, graphs))
        results[name] = {("graph" if g else "step by step"): {k: statistics.median(r[k] for r in rs)
                                                               for k in rs[0]} for g, rs in runs.items()}
    print("| model | call | step by step (ms) | captured graph (ms) | ratio |")
    print("|---|---|---|---|---|")
    for name, paths in results.items():
        for call, eager in paths["step by step"].items():
            graph = paths["graph"][call]
            print(f"| {name} | {call} | {eager * 1e3:.3f} | {graph * 1e3:.3f} | {eager / graph:.1f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
