"""Release 0.2 (commit 3702553) against the current tree: one interleaved run on the CPU (NumPy backend).

What it measures, in each version, through the public API that both versions have:

* ``step_784``: one training step, ``model.train_step(x, y)`` repeated on the same batch (0.2 has
  no ``train_on_batch``; both have ``train_step``, the per-call path a user calls: the batch is
  checked and handed to the backend on every call). Model 784-512-10, relu then logits,
  ``losses.SoftmaxCrossEntropy()``, ``optimizers.SGD(learning_rate=0.01)``, batch 128, float32.
* ``step_64``: the same with 64-64-10 and batch 32, where Python's overhead dominates.
* ``fit_784`` and ``fit_64``: the step inside ``fit`` (the loop a training job runs): one
  ``fit(x, y, batch_size, epochs=1, verbose=0, shuffle=False)`` over 40 batches, its time divided
  by 40 (the per-call set-up of fit, callbacks and history included, spread over the 40 steps).
* ``dense``: one ``Dense(512, activation='relu')`` built for 784 inputs, ``layer.forward(x)`` then
  ``layer.backward(dy)`` (x 128x784, dy 128x512), call by call alternating with its three bare
  GEMMs in NumPy with preallocated outputs (``x @ W``, ``x.T @ dy``, ``dy @ W.T`` through
  ``np.matmul(out=)``). Its figure is fwd+bwd / GEMMs, each block's medians, so that the load of
  the moment divides out.

How: the old commit is extracted with ``git archive`` into a temporary directory; two worker
processes run this file with ``--worker``, one with PYTHONPATH on the old tree, one on this tree
(each checks ``fcgpu.__file__``), both with the same BLAS/OpenMP thread settings (``--threads``,
default 1: on two shared cores a two-thread GEMM waits for the slower core, and the spread grows). The parent drives
them through pipes: in each of R rounds every measurement gets one block in each version, the two
versions alternating block by block, which one goes first alternating between rounds. A block
warms up, then times calls (``time.perf_counter``, garbage collector off) for at least
``--block-seconds`` and 5 calls, and reports the median per call. Reported: the median over rounds
and p25/p75, and current / 0.2 for each figure (below 1: the current code is faster), both as the
ratio of the medians and as the median of each round's ratio (its two blocks ran side by side).

    python benchmarks/compare_releases.py [--rounds 7] [--json PATH]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OLD_COMMIT = "3702553"
HERE = Path(__file__).resolve().parents[1]
MEASUREMENTS = ("step_784", "step_64", "fit_784", "fit_64", "dense")
FIT_BATCHES = 40
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# -- the worker: one version of fcgpu ------------------------------------------------------
def worker(tree: str) -> None:
    import numpy as np

    import fcgpu as fc

    where = Path(fc.__file__).resolve()
    if Path(tree).resolve() not in where.parents:
        raise SystemExit(f"fcgpu imported from {where}, not from {tree}")
    fc.set_backend("numpy")
    rng = np.random.default_rng(0)

    def model_step(widths: tuple[int, ...], batch: int):
        model = fc.Sequential([fc.Dense(widths[1], activation="relu"), fc.Dense(widths[2])])
        model.compile(loss=fc.losses.SoftmaxCrossEntropy(), optimizer=fc.optimizers.SGD(learning_rate=0.01))
        x = rng.standard_normal((batch, widths[0])).astype(np.float32)
        y = np.eye(widths[2], dtype=np.float32)[rng.integers(0, widths[2], batch)]
        return lambda: model.train_step(x, y)

    def model_fit(widths: tuple[int, ...], batch: int):
        model = fc.Sequential([fc.Dense(widths[1], activation="relu"), fc.Dense(widths[2])])
        model.compile(loss=fc.losses.SoftmaxCrossEntropy(), optimizer=fc.optimizers.SGD(learning_rate=0.01))
        x = rng.standard_normal((batch * FIT_BATCHES, widths[0])).astype(np.float32)
        y = np.eye(widths[2], dtype=np.float32)[rng.integers(0, widths[2], batch * FIT_BATCHES)]

        def run() -> None:
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)

        run.steps = FIT_BATCHES  # the block reports per training step
        return run

    layer = fc.Dense(512, activation="relu")
    layer.build(784)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    dy = rng.standard_normal((128, 512)).astype(np.float32)
    w = layer.kernel
    y_out, dw_out, dx_out = np.empty((128, 512), np.float32), np.empty((784, 512), np.float32), np.empty((128, 784), np.float32)

    def gemms() -> None:
        np.matmul(x, w, out=y_out)
        np.matmul(x.T, dy, out=dw_out)
        np.matmul(dy, w.T, out=dx_out)

    def fwd_bwd() -> None:
        layer.forward(x)
        layer.backward(dy)

    ops = {"step_784": {"step": model_step((784, 512, 10), 128)}, "step_64": {"step": model_step((64, 64, 10), 32)},
           "fit_784": {"step": model_fit((784, 512, 10), 128)}, "fit_64": {"step": model_fit((64, 64, 10), 32)},
           "dense": {"fwd_bwd": fwd_bwd, "gemms": gemms}}
    for group in ops.values():  # builds the models, fills the buffers
        for _ in range(3):
            for op in group.values():
                op()
    info = {"file": str(where), "version": fc.__version__, "numpy": np.__version__,
            "threads": {k: os.environ.get(k) for k in THREAD_VARS}}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                        for p in threadpool_info()]
    except ImportError:
        pass
    send(sys.stdout, {"ready": info})
    for line in sys.stdin:
        request = json.loads(line)
        send(sys.stdout, block(ops[request["measurement"]], request["seconds"]))


def block(group: dict, seconds: float) -> dict:
    """The group's calls interleaved call by call: per op the per-call seconds of this block."""
    for op in group.values():
        op()  # warm-up
    times = {name: [] for name in group}
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or min(len(t) for t in times.values()) < 5:
            for name, op in group.items():
                t0 = time.perf_counter()
                op()
                times[name].append((time.perf_counter() - t0) / getattr(op, "steps", 1))
    finally:
        gc.enable()
    return times


def send(stream, obj) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


# -- the parent ----------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return quantile(values, 0.5)


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def start_worker(tree: Path, threads: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree), **{k: threads for k in THREAD_VARS})
    return subprocess.Popen([sys.executable, __file__, "--worker", str(tree)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True, cwd=tempfile.gettempdir())


def ask(proc: subprocess.Popen, request: dict | None = None) -> dict:
    if request is not None:
        send(proc.stdin, request)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a worker ended early (exit {proc.wait()})")
    return json.loads(line)


def figures(blocks: dict) -> dict[str, list[float]]:
    """Per measurement the per-round figures: milliseconds per call, and the dense ratio."""
    out: dict[str, list[float]] = {}
    for name, rounds in blocks.items():
        for op in rounds[0]:
            out[f"{name}.{op}" if name == "dense" else name] = [median(r[op]) * 1e3 for r in rounds]
        if name == "dense":
            out["dense.fwd_bwd/gemms"] = [median(r["fwd_bwd"]) / median(r["gemms"]) for r in rounds]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block-seconds", type=float, default=1.0, help="timed seconds per block (its ops interleaved)")
    parser.add_argument("--threads", default="1", help="BLAS/OpenMP threads, the same for both workers")
    parser.add_argument("--old", default=OLD_COMMIT, help="the commit to compare against")
    parser.add_argument("--json", help="write settings, samples and results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fcgpu-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(HERE), "archive", args.old], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"0.2": Path(tmp), "current": HERE}
        procs = {label: start_worker(tree, args.threads) for label, tree in trees.items()}
        info = {label: ask(proc)["ready"] for label, proc in procs.items()}
        blocks = {label: {m: [] for m in MEASUREMENTS} for label in trees}
        for r in range(args.rounds):
            labels = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for m in MEASUREMENTS if r % 2 == 0 else MEASUREMENTS[::-1]:
                for label in labels:
                    blocks[label][m].append(ask(procs[label], {"measurement": m, "seconds": args.block_seconds}))
                    time.sleep(0.2)  # the other worker's BLAS threads go idle
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    load_after = os.getloadavg()
    per_round = {label: figures(b) for label, b in blocks.items()}
    summary = {}
    for key in per_round["0.2"]:
        row = {label: {"median": median(v[key]), "p25": quantile(v[key], 0.25), "p75": quantile(v[key], 0.75)}
               for label, v in per_round.items()}
        row["current/0.2"] = row["current"]["median"] / row["0.2"]["median"]
        paired = [c / o for c, o in zip(per_round["current"][key], per_round["0.2"][key])]  # neighbours in time
        row["paired"] = {"median": median(paired), "p25": quantile(paired, 0.25), "p75": quantile(paired, 0.75)}
        summary[key] = row
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    print(f"{'figure':<20} {'0.2 median [p25, p75]':>28} {'current median [p25, p75]':>28} {'current/0.2':>11}"
          f" {'per-round current/0.2':>24}")
    for key, row in summary.items():
        cells = [f"{row[l]['median']:.4g} [{row[l]['p25']:.4g}, {row[l]['p75']:.4g}]" for l in ("0.2", "current", "paired")]
        print(f"{key:<20} {cells[0]:>28} {cells[1]:>28} {row['current/0.2']:>11.3f} {cells[2]:>24}")
    print("(milliseconds per call; dense.fwd_bwd/gemms is a ratio; current/0.2 is the medians' ratio, the last column"
          " the median [p25, p75] of each round's ratio)")
    if args.json:
        result = {"old_commit": args.old, "current_commit": git_head(), "rounds": args.rounds,
                  "block_seconds": args.block_seconds, "threads": args.threads, "python": platform.python_version(),
                  "machine": platform.machine(), "cpus": os.cpu_count(), "load_before": load_before,
                  "load_after": load_after, "workers": info, "summary": summary, "per_round": per_round,
                  "samples_s": blocks}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


def git_head() -> str:
    out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--", "fcgpu"], capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()
