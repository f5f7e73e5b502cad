"""The runner: starts a worker per backend, measures every case in alternating blocks, and turns the
seconds into result entries with their cost (flops, bytes, GFLOP/s, roofline fraction).

``run_benchmark`` returns the result that ``fcgpu bench --json`` writes; ``machine_info`` and
``resolve_backends`` say what ran where, and why a backend was left out.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict
from typing import Any, Sequence

from . import cost as cost_model
from .config import DEVICE_KINDS, MODEL_ACTIVATION, OPENBLAS_VARS, WORKER_KINDS, BenchConfig, layer_activations
from .timers import summary_stats
from .worker import WorkerClient, worker_env

__all__ = ["cost_entry", "graphs_per_step", "machine_info", "op_cost", "resolve_backends", "run_benchmark", "step_cost"]


def _torch_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def resolve_backends(requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """Worker kinds to start, and why others are left out. 'torch' means torch-cpu and torch-cuda."""
    from .. import backends as fc_backends

    skipped: dict[str, str] = {}
    explicit = requested is not None
    names: list[str] = []
    for name in requested if explicit else ["numpy", "cupy", "torch"]:
        name = name.strip().lower()
        expanded = ["torch-cpu", "torch-cuda"] if name == "torch" else [name]
        for kind in expanded:
            if kind not in WORKER_KINDS:
                raise ValueError(f"backends: expected names from numpy, cupy, torch, torch-cpu, torch-cuda; got {name!r}")
            if kind not in names:
                names.append(kind)
    kinds = []
    for kind in names:
        if kind.startswith("torch"):
            if not _torch_importable():
                skipped[kind] = "torch is not installed (it is an optional outside reference)"
                continue
        else:
            try:  # an fcgpu backend: usable here, or why not
                fc_backends.resolve_backend(kind)
            except fc_backends.BackendUnavailable as e:
                skipped[kind] = str(e)
                continue
        kinds.append(kind)
    return kinds, skipped


def machine_info() -> dict[str, Any]:
    """The host: CPU model, cores, memory, OS, Python, and the load average now."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info["env"] = {k: os.environ.get(k) for k in OPENBLAS_VARS}
    return info


def op_cost(op: str, batch: int, m: int, n: int, activation: str, dtype: str) -> cost_model.Cost:
    """The useful work of operation ``op`` of the Dense case (batch, m, n) with ``activation``."""
    dense = cost_model.dense_cost(batch, m, n, dtype, True, activation)
    if op == "gemm":
        return (cost_model.gemm_cost(batch, m, n, dtype) + cost_model.gemm_cost(m, batch, n, dtype)
                + cost_model.gemm_cost(batch, n, m, dtype))
    if op == "forward":
        return dense.forward
    if op == "backward":
        return dense.backward
    if op == "fwd_bwd":
        return dense.forward_backward
    if op == "step":
        return step_cost([m, n], batch, activation, dtype)
    raise ValueError(op)


def step_cost(widths: Sequence[int], batch: int, activation: str, dtype: str) -> cost_model.Cost:
    """The useful work of a training step: no gradient for the model's input (PyTorch computes none)."""
    acts = layer_activations(widths, activation)
    layers = [cost_model.LayerSpec(m, n, act, True, dtype) for m, n, act in zip(widths[:-1], widths[1:], acts)]
    return cost_model.train_step_cost(layers, batch).total


def graphs_per_step(ops: dict[str, list[float]]) -> dict[str, float]:
    """Milliseconds per training step of each variant of the graphs comparison: PyTorch's ops are a
    step each; fcgpu's 'off_E' / 'on_E' are fits of E epochs of GRAPH_BATCHES batches, and a step is
    the difference of the medians of the two epoch counts over the extra steps."""
    from .workloads import GRAPH_BATCHES, GRAPH_EPOCHS

    med = {op: summary_stats(secs)["median_ms"] for op, secs in ops.items()}
    short, long = GRAPH_EPOCHS
    out: dict[str, float] = {}
    for name in ("off", "on"):
        if f"{name}_{short}" in med and f"{name}_{long}" in med:
            out[f"graphs_{name}"] = (med[f"{name}_{long}"] - med[f"{name}_{short}"]) / ((long - short) * GRAPH_BATCHES)
    for name in ("eager", "reduce_overhead"):
        if name in med:
            out[name] = med[name]
    return out


def _peaks(hello: dict[str, Any], cfg: BenchConfig) -> tuple[float | None, float | None]:
    info = hello.get("info", {})
    gflops = cfg.peak_gflops if cfg.peak_gflops else info.get("peak_gflops")
    gbps = cfg.peak_gbps if cfg.peak_gbps else info.get("peak_gbps")
    return gflops, gbps


def cost_entry(
    kind: str, op: str, secs: list[float], c: cost_model.Cost, peaks: tuple[float | None, float | None]
) -> dict[str, Any]:
    """A result entry: the statistics of ``secs``, the work ``c`` and its GFLOP/s, and on a device
    backend with known ``peaks`` (GFLOP/s, GB/s) the fraction of the roofline reached."""
    e: dict[str, Any] = summary_stats(secs)
    e["gflops"] = c.flops / (e["median_ms"] * 1e-3) / 1e9 if e["median_ms"] > 0 else None
    e["flops"], e["bytes"] = c.flops, c.bytes
    if kind in DEVICE_KINDS and peaks[0] and peaks[1]:
        bound = cost_model.roofline_time(c, peaks[0] * 1e9, peaks[1] * 1e9)
        e["roofline_fraction"] = bound / (e["median_ms"] * 1e-3)
    return e


def _log(cfg: BenchConfig, msg: str) -> None:
    if cfg.verbose:
        print(msg, file=sys.stderr, flush=True)


def run_benchmark(cfg: BenchConfig) -> dict[str, Any]:
    """Measure every case on every backend; the result is what the JSON file holds."""
    kinds, skipped = resolve_backends(cfg.backends)
    env = worker_env(cfg.unset_openblas_env)
    started = time.time()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    clients: dict[str, WorkerClient] = {}
    try:
        for kind in kinds:
            _log(cfg, f"starting the {kind} worker ...")
            client = WorkerClient(kind, env)
            if client.hello.get("ok"):
                clients[kind] = client
            else:
                skipped[kind] = client.hello.get("reason", "unknown")
                client.close()
        result: dict[str, Any] = {
            "fcgpu_bench": 1,
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("json_path", "plot_path", "verbose")},
            "machine": machine_info(),
            "backends": {k: {"info": c.hello.get("info", {}), "env": c.hello.get("env", {})} for k, c in clients.items()},
            "skipped": skipped,
            "cases": [],
            "models": [],
        }
        if cfg.graphs:
            result["graphs"], result["graphs_skipped"] = [], {}
        order = list(clients)
        block = dict(
            warmup=cfg.warmup, budget=cfg.budget, min_samples=cfg.min_samples, max_samples=cfg.max_samples,
            dtype=cfg.dtype,
        )

        def measure(req: dict[str, Any], label: str, kinds: list[str] | None = None,
                    failures: dict[str, str] | None = None) -> dict[str, dict[str, list[float]]]:
            which = order if kinds is None else kinds
            samples: dict[str, dict[str, list[float]]] = {k: {} for k in which}
            failed: set[str] = set()
            for r in range(cfg.rounds):
                shift = r % len(which) if which else 0
                for kind in which[shift:] + which[:shift]:
                    if kind in failed:
                        continue
                    reply = clients[kind].request({**req, **block})
                    if not reply.get("ok"):
                        _log(cfg, f"  {kind} failed on {label}: {reply.get('reason')}")
                        failed.add(kind)
                        if failures is not None:
                            failures[kind] = f"failed: {reply.get('reason')}"
                        continue
                    for op, secs in reply["times"].items():
                        samples[kind].setdefault(op, []).extend(secs)
                    time.sleep(cfg.settle)
            return {k: v for k, v in samples.items() if v and k not in failed}

        for batch, m, n in cfg.sizes:
            for act in cfg.activations:
                label = f"{batch}x{m}x{n} {act}"
                _log(cfg, f"measuring {label} ...")
                req = {"cmd": "case", "batch": batch, "in": m, "out": n, "activation": act, "ops": list(cfg.ops)}
                per_backend = measure(req, label)
                for kind, ops in per_backend.items():
                    peaks = _peaks(clients[kind].hello, cfg)
                    entry = {"batch": batch, "in": m, "out": n, "activation": act, "backend": kind, "ops": {}}
                    for op, secs in ops.items():
                        entry["ops"][op] = cost_entry(kind, op, secs, op_cost(op, batch, m, n, act, cfg.dtype), peaks)
                    if "gemm" in entry["ops"] and "fwd_bwd" in entry["ops"]:
                        entry["fwd_bwd_over_gemm"] = entry["ops"]["fwd_bwd"]["median_ms"] / entry["ops"]["gemm"]["median_ms"]
                    result["cases"].append(entry)
        if cfg.model and "step" in cfg.ops:
            widths = list(cfg.model)
            label = "-".join(map(str, widths)) + f" batch {cfg.model_batch}"
            _log(cfg, f"measuring the training step of {label} ...")
            req = {"cmd": "model", "widths": widths, "batch": cfg.model_batch}
            c = step_cost(widths, cfg.model_batch, MODEL_ACTIVATION, cfg.dtype)
            for kind, ops in measure(req, label).items():
                result["models"].append({
                    "widths": widths, "batch": cfg.model_batch, "backend": kind,
                    "ops": {"step": cost_entry(kind, "step", ops["step"], c, _peaks(clients[kind].hello, cfg))},
                })
        if cfg.graphs and cfg.model:
            widths = list(cfg.model)
            kinds_here = [k for k in order if k in DEVICE_KINDS]
            for kind in DEVICE_KINDS:
                if kind not in kinds_here:
                    result["graphs_skipped"][kind] = skipped.get(kind, "not among --backends")
            if kinds_here:
                _log(cfg, f"measuring the training step of {'-'.join(map(str, widths))} with and without graphs ...")
                req = {"cmd": "graphs", "widths": widths, "batch": cfg.model_batch}
                per_kind = measure(req, "graphs", kinds_here, result["graphs_skipped"])
                for kind, ops in per_kind.items():
                    result["graphs"].append({"widths": widths, "batch": cfg.model_batch, "backend": kind,
                                             "per_step_ms": graphs_per_step(ops)})
        result["seconds"] = round(time.time() - started, 1)
        result["machine"]["load_average_start"] = load_start
        result["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        return result
    finally:
        for client in clients.values():
            client.close()
