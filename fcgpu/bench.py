"""Backend throughput comparison behind ``fcgpu bench`` and ``benchmarks/compare_backends.py``.

For each size (B, M, N) and activation, every backend measures, in the same run:

* ``gemm``: the three bare GEMMs of a Dense forward+backward (x @ W, x.T @ dz, dz @ W.T) in the
  backend's own array library, written into preallocated outputs: the floor a layer can reach;
* ``forward``, ``backward`` and ``fwd_bwd`` of one Dense layer;
* ``step``: a full training step of a one-layer model (forward, softmax cross-entropy, backward,
  SGD update), and the same for a small MLP (784-512-10 at batch 128 by default).

Each backend runs in its own worker process, so one library's idle BLAS/OpenMP threads never spin
on the cores another is measuring with, and a worker can start with a changed environment (the
OpenBLAS variables must be gone before NumPy loads). Backends are measured in alternating blocks
(the order rotates every round), with a short pause between blocks so the previous worker's
threads go to sleep; within a block the operations are interleaved call by call, so drift in the
machine's speed hits the floor and the layer alike. Host backends are timed with
``time.perf_counter`` around each call; GPU backends with device events
(``cupyx.profiler.benchmark``, ``torch.cuda.Event``), never a host clock around queued work.

Throughput comes from :mod:`fcgpu.cost`; on a GPU the fraction of the roofline uses the device's
peak FP32 rate and memory bandwidth (from its attributes, or ``--peak-gflops/--peak-gbps``).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from . import cost as cost_model

__all__ = [
    "BenchConfig",
    "DEFAULT_SIZES",
    "QUICK_SIZES",
    "add_arguments",
    "format_table",
    "main",
    "parse_size",
    "run_benchmark",
    "write_plot",
]

DEFAULT_SIZES: tuple[tuple[int, int, int], ...] = (
    (32, 64, 64),
    (1, 784, 512),
    (128, 784, 512),
    (256, 1024, 1024),
    (1024, 4096, 4096),
)
QUICK_SIZES: tuple[tuple[int, int, int], ...] = DEFAULT_SIZES[:3]
ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid")
OPS: tuple[str, ...] = ("gemm", "forward", "backward", "fwd_bwd", "step")
WORKER_KINDS: tuple[str, ...] = ("numpy", "cupy", "torch-cpu", "torch-cuda")
OPENBLAS_VARS: tuple[str, ...] = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DEVICE_KINDS = ("cupy", "torch-cuda")

# Learning rate of the benchmark's SGD: small, so repeated steps on one batch stay finite.
_LR = 1e-3


# ==================================================================== configuration
@dataclass
class BenchConfig:
    """What to measure and how; the defaults are those of ``fcgpu bench``."""

    backends: list[str] | None = None  # names from WORKER_KINDS, or 'torch' for both torch kinds; None: all usable
    sizes: list[tuple[int, int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))
    activations: list[str] = field(default_factory=lambda: list(ACTIVATIONS))
    ops: list[str] = field(default_factory=lambda: list(OPS))
    rounds: int = 3  # blocks per backend and case; the order of backends rotates every round
    budget: float = 0.3  # seconds of each operation per block
    min_samples: int = 3  # per operation and block
    max_samples: int = 2000
    warmup: int = 3
    settle: float = 0.2  # seconds between blocks, for the previous worker's threads to go idle
    model: list[int] | None = field(default_factory=lambda: [784, 512, 10])
    model_batch: int = 128
    dtype: str = "float32"
    unset_openblas_env: bool = False
    peak_gflops: float | None = None
    peak_gbps: float | None = None
    json_path: str | None = None
    plot_path: str | None = None
    verbose: bool = True


def parse_size(text: str) -> tuple[int, int, int]:
    """'128x784x512' or '128,784,512' -> (128, 784, 512): batch, in features, units."""
    parts = text.replace("x", ",").replace("X", ",").split(",")
    try:
        size = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 128x784x512 (batch x in x units), got {text!r}")
    return size  # type: ignore[return-value]


# ==================================================================== worker side
def _summary_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and minimum in milliseconds."""
    xs = sorted(seconds)
    n = len(xs)

    def q(p: float) -> float:
        if n == 1:
            return xs[0]
        k = p * (n - 1)
        lo = math.floor(k)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    return {"median_ms": q(0.5) * 1e3, "p25_ms": q(0.25) * 1e3, "p75_ms": q(0.75) * 1e3, "min_ms": xs[0] * 1e3, "n": n}


Op = tuple[Callable[[], Any] | None, Callable[[], Any]]  # (untimed preparation, timed call)


class _HostTimer:
    """perf_counter around each call, operations interleaved call by call, garbage collector off."""

    name = "host perf_counter per call"

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        last: dict[str, float] = {}
        start = time.perf_counter()
        for _ in range(max(1, repeats)):
            for name, (prep, run) in ops.items():
                if prep is not None:
                    prep()
                t0 = time.perf_counter()
                run()
                last[name] = time.perf_counter() - t0
            if time.perf_counter() - start > budget:  # large sizes: one round warms caches and threads
                break
        return last

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in ops}
        items = list(ops.items())
        clock = time.perf_counter
        gc.collect()
        enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(samples):
                for name, (prep, run) in items:
                    if prep is not None:
                        prep()
                    t0 = clock()
                    run()
                    times[name].append(clock() - t0)
        finally:
            if enabled:
                gc.enable()
        return times


class _DeviceTimer:
    """Device time of each call, from the backend's own device clock (CUDA events on CuPy)."""

    name = "backend device clock (CUDA events)"

    def __init__(self, time_calls: Callable[[Callable[[], Any], int], list[float]]) -> None:
        self._time_calls = time_calls

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        return {name: self._time_calls(run, max(1, repeats))[-1] for name, (_, run) in ops.items()}

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        return {name: self._time_calls(run, samples) for name, (_, run) in ops.items()}


class _TorchCudaTimer:
    """Device time of each call between two ``torch.cuda.Event`` records."""

    name = "torch.cuda.Event per call (device events)"

    def __init__(self, torch: Any) -> None:
        self._torch = torch

    def _times(self, prep: Callable[[], Any] | None, run: Callable[[], Any], n: int) -> list[float]:
        cuda = self._torch.cuda
        out = []
        for _ in range(n):
            if prep is not None:
                prep()
            start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        return out

    def warm(self, ops: dict[str, Op], repeats: int, budget: float = math.inf) -> dict[str, float]:
        return {name: self._times(prep, run, max(1, repeats))[-1] for name, (prep, run) in ops.items()}

    def measure(self, ops: dict[str, Op], samples: int) -> dict[str, list[float]]:
        return {name: self._times(prep, run, samples) for name, (prep, run) in ops.items()}


def _host_data(batch: int, m: int, n: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((batch, m), dtype=np.float64),
        "dy": rng.standard_normal((batch, n), dtype=np.float64) / batch,
        "labels": rng.integers(0, n, size=batch).astype(np.int64),
    }


class _FcgpuWorker:
    """Cases on an fcgpu backend ('numpy' or 'cupy')."""

    def __init__(self, kind: str) -> None:
        import numpy as np

        import fcgpu as fc

        self.fc, self.np, self.kind = fc, np, kind
        self.backend = fc.set_backend(kind)
        time_calls = self.backend.device_timer()
        self.timer: Any = _DeviceTimer(time_calls) if time_calls is not None else _HostTimer()

    def info(self) -> dict[str, Any]:
        fc, np = self.fc, self.np
        info: dict[str, Any] = {"fcgpu": fc.__version__, "numpy": np.__version__, "timer": self.timer.name}
        info.update({k: v for k, v in self.backend.info().items() if k != "backend"})
        info["blas"] = _blas_info()
        return info

    def _model(self, widths: Sequence[int], activation: str, dtype: str) -> Any:
        fc = self.fc
        layers = [
            fc.Dense(w, activation=activation if i < len(widths) - 2 or len(widths) == 2 else None, dtype=dtype)
            for i, w in enumerate(widths[1:])
        ]
        model = fc.Sequential(layers)
        model.compile(loss=fc.losses.SoftmaxCrossEntropy(), optimizer=fc.optimizers.SGD(lr=_LR))
        model.build((None, widths[0]))
        return model

    def _step(self, model: Any, x: Any, labels_host: Any) -> Callable[[], Any]:
        backend = self.backend
        labels = backend.from_numpy(labels_host)
        batch_step = getattr(model, "_batch_step", None)
        if batch_step is not None:
            # The per-batch step of fit(): inputs already on the device, no per-call host checks;
            # the loss is read as a Python float, as PyTorch's step reads loss.item().
            return lambda: float(batch_step(x, labels, backend)[0])
        x_host = backend.to_numpy(x)
        return lambda: model.train_step(x_host, labels_host)

    def case(self, batch: int, m: int, n: int, activation: str, dtype: str, ops: Sequence[str]) -> dict[str, Op]:
        fc, backend = self.fc, self.backend
        xp = backend.xp
        data = _host_data(batch, m, n)
        x = backend.from_numpy(data["x"].astype(dtype))
        dy = backend.from_numpy(data["dy"].astype(dtype))
        layer = fc.Dense(n, activation=activation, dtype=dtype)
        layer.build(m)
        w = layer.kernel
        y, dw, dx = backend.empty((batch, n), dtype), backend.empty((m, n), dtype), backend.empty((batch, m), dtype)

        def gemm() -> None:
            xp.matmul(x, w, out=y)
            xp.matmul(x.T, dy, out=dw)
            xp.matmul(dy, w.T, out=dx)

        def fwd_bwd() -> None:
            layer.forward(x)
            layer.backward(dy)

        layer.forward(x)  # backward alone needs a forward's cache
        table: dict[str, Op] = {
            "gemm": (None, gemm),
            "forward": (None, lambda: layer.forward(x)),
            "backward": (None, lambda: layer.backward(dy)),
            "fwd_bwd": (None, fwd_bwd),
        }
        if "step" in ops:
            model = self._model([m, n], activation, dtype)
            table["step"] = (None, self._step(model, x, data["labels"]))
        return {k: v for k, v in table.items() if k in ops}

    def model_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        backend = self.backend
        data = _host_data(batch, widths[0], widths[-1])
        x = backend.from_numpy(data["x"].astype(dtype))
        model = self._model(widths, "relu", dtype)
        return {"step": (None, self._step(model, x, data["labels"]))}


class _TorchWorker:
    """The same cases in PyTorch (an outside reference; never a dependency of fcgpu)."""

    def __init__(self, kind: str) -> None:
        import torch

        self.torch, self.kind = torch, kind
        self.device = torch.device("cuda" if kind == "torch-cuda" else "cpu")
        if kind == "torch-cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch has no usable CUDA device here")
        self.timer: Any = _TorchCudaTimer(torch) if kind == "torch-cuda" else _HostTimer()

    def info(self) -> dict[str, Any]:
        torch = self.torch
        config = torch.__config__.show()
        blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                    None)
        info: dict[str, Any] = {
            "torch": torch.__version__,
            "timer": self.timer.name,
            "threads": torch.get_num_threads(),
            "torch_blas": blas,  # linked into torch, so threadpoolctl may not list it
            "blas": _blas_info(),
        }
        if self.kind == "torch-cuda":
            info["device"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
            try:  # the roofline peaks, where fcgpu's CuPy backend can read them
                from . import backends

                info.update({k: v for k, v in backends.resolve_backend("cupy")[0].info().items() if k.startswith("peak")})
            except Exception:
                pass
        return info

    def _tensor(self, a: Any, dtype: str, grad: bool = False) -> Any:
        t = self.torch.from_numpy(a.astype(dtype)).to(self.device)
        return t.requires_grad_(grad)

    def _act(self, activation: str | None) -> Callable[[Any], Any]:
        torch = self.torch
        return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, None: lambda z: z}[activation]

    def _net(self, widths: Sequence[int], activation: str, dtype: str) -> Any:
        nn = self.torch.nn
        mods: list[Any] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            mods.append(nn.Linear(a, b))
            last = i == len(widths) - 2
            if not last or len(widths) == 2:
                mods.append({"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh()}[activation])
        return nn.Sequential(*mods).to(device=self.device, dtype=getattr(self.torch, dtype))

    def _step(self, net: Any, x: Any, labels: Any) -> Callable[[], Any]:
        torch = self.torch
        opt = torch.optim.SGD(net.parameters(), lr=_LR)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), labels)
            loss.backward()
            opt.step()
            return loss.item()  # fcgpu's step returns the loss as a Python float too

        return step

    def case(self, batch: int, m: int, n: int, activation: str, dtype: str, ops: Sequence[str]) -> dict[str, Op]:
        torch = self.torch
        data = _host_data(batch, m, n)
        x = self._tensor(data["x"], dtype, grad=True)
        x_plain = x.detach()
        dy = self._tensor(data["dy"], dtype)
        labels = torch.from_numpy(data["labels"]).to(self.device)
        lin = torch.nn.Linear(m, n).to(device=self.device, dtype=getattr(torch, dtype))
        act = self._act(activation)
        w = lin.weight.detach().t().contiguous()  # (M, N) as fcgpu stores it
        y = torch.empty((batch, n), device=self.device, dtype=w.dtype)
        dw = torch.empty((m, n), device=self.device, dtype=w.dtype)
        dx = torch.empty((batch, m), device=self.device, dtype=w.dtype)

        def gemm() -> None:
            torch.mm(x_plain, w, out=y)
            torch.mm(x_plain.t(), dy, out=dw)
            torch.mm(dy, w.t(), out=dx)

        def clear_grads() -> None:
            x.grad = lin.weight.grad = lin.bias.grad = None

        graph: dict[str, Any] = {}

        def new_graph() -> None:
            clear_grads()
            graph["y"] = act(lin(x))

        def fwd_bwd() -> None:
            act(lin(x)).backward(dy)

        table: dict[str, Op] = {
            "gemm": (None, gemm),
            "forward": (None, lambda: act(lin(x))),
            # The graph is rebuilt outside the timed call, so this is the backward pass alone.
            "backward": (new_graph, lambda: graph["y"].backward(dy)),
            "fwd_bwd": (clear_grads, fwd_bwd),
        }
        if "step" in ops:
            net = self._net([m, n], activation, dtype)
            table["step"] = (None, self._step(net, x_plain, labels))
        return {k: v for k, v in table.items() if k in ops}

    def model_case(self, widths: Sequence[int], batch: int, dtype: str) -> dict[str, Op]:
        torch = self.torch
        data = _host_data(batch, widths[0], widths[-1])
        x = self._tensor(data["x"], dtype)
        labels = torch.from_numpy(data["labels"]).to(self.device)
        return {"step": (None, self._step(self._net(widths, "relu", dtype), x, labels))}


def _blas_info() -> list[dict[str, Any]]:
    """BLAS and OpenMP libraries loaded in this process, from threadpoolctl (empty if it is missing)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{k: lib.get(k) for k in keep if lib.get(k) is not None} for lib in threadpool_info()]


def _make_worker(kind: str) -> Any:
    if kind in ("numpy", "cupy"):
        return _FcgpuWorker(kind)
    if kind in ("torch-cpu", "torch-cuda"):
        return _TorchWorker(kind)
    raise ValueError(f"unknown worker kind {kind!r}")


def _calibrate(warm: dict[str, float], budget: float, lo: int, hi: int) -> int:
    slowest = max(warm.values()) if warm else 0.0
    if slowest <= 0:
        return hi
    return int(min(hi, max(lo, math.ceil(budget / slowest))))


def worker_main(kind: str) -> int:
    """Serve measurement requests (JSON lines on stdin, answers on the original stdout)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else a library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        worker = _make_worker(kind)
        send({"ok": True, "info": worker.info(), "env": {k: os.environ.get(k) for k in OPENBLAS_VARS}})
    except Exception as e:
        send({"ok": False, "reason": f"{type(e).__name__}: {e}"})
        return 0
    cache: dict[str, Any] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            key = json.dumps({k: v for k, v in req.items() if k not in ("samples", "budget", "warmup", "min_samples",
                                                                            "max_samples")}, sort_keys=True)
            if cache.get("key") != key:
                cache.clear()
                gc.collect()
                if req["cmd"] == "case":
                    ops = worker.case(req["batch"], req["in"], req["out"], req["activation"], req["dtype"], req["ops"])
                else:
                    ops = worker.model_case(req["widths"], req["batch"], req["dtype"])
                cache.update(key=key, ops=ops)
            ops = cache["ops"]
            warm = worker.timer.warm(ops, req["warmup"], req["budget"])
            samples = _calibrate(warm, req["budget"], req["min_samples"], req["max_samples"])
            send({"ok": True, "times": worker.timer.measure(ops, samples)})
        except Exception as e:
            import traceback

            traceback.print_exc()
            send({"ok": False, "reason": f"{type(e).__name__}: {e}"})
    return 0


# ==================================================================== orchestrator side
class _Client:
    """One worker process and its request/answer pipe."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fcgpu.bench", "--worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"ok": False, "reason": f"the worker exited with status {code}"}
        return json.loads(line)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "reason": "the worker is gone"}
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def worker_env(unset_openblas: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: ``base`` (default: this process's), with the OpenBLAS core-type
    variables removed if asked, and this fcgpu first on the import path."""
    env = dict(os.environ if base is None else base)
    if unset_openblas:
        for k in OPENBLAS_VARS:
            env.pop(k, None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _torch_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def resolve_backends(requested: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """Worker kinds to start, and why others are left out. 'torch' means torch-cpu and torch-cuda."""
    from . import backends as fc_backends

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


def _op_cost(op: str, batch: int, m: int, n: int, activation: str, dtype: str) -> cost_model.Cost:
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
        return _step_cost([m, n], batch, activation, dtype)
    raise ValueError(op)


def _step_cost(widths: Sequence[int], batch: int, activation: str, dtype: str) -> cost_model.Cost:
    """The useful work of a training step: no gradient for the model's input (PyTorch computes none)."""

    class _L:  # the attributes cost.model_cost reads from a Dense
        def __init__(self, m: int, n: int, act: str) -> None:
            self.in_features, self.units, self.use_bias, self.name = m, n, True, "dense"
            self.activation = type("A", (), {"name": act})()
            self.dtype = dtype

    acts = [activation if i < len(widths) - 2 or len(widths) == 2 else "linear" for i in range(len(widths) - 1)]
    layers = [_L(a, b, act) for a, b, act in zip(widths[:-1], widths[1:], acts)]
    return cost_model.train_step_cost(layers, batch).total


def _peaks(hello: dict[str, Any], cfg: BenchConfig) -> tuple[float | None, float | None]:
    info = hello.get("info", {})
    gflops = cfg.peak_gflops if cfg.peak_gflops else info.get("peak_gflops")
    gbps = cfg.peak_gbps if cfg.peak_gbps else info.get("peak_gbps")
    return gflops, gbps


def _entry(kind: str, op: str, secs: list[float], c: cost_model.Cost, peaks: tuple[float | None, float | None]) -> dict[str, Any]:
    e: dict[str, Any] = _summary_stats(secs)
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
    clients: dict[str, _Client] = {}
    try:
        for kind in kinds:
            _log(cfg, f"starting the {kind} worker ...")
            client = _Client(kind, env)
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
        order = list(clients)
        block = dict(
            warmup=cfg.warmup, budget=cfg.budget, min_samples=cfg.min_samples, max_samples=cfg.max_samples,
            dtype=cfg.dtype,
        )

        def measure(req: dict[str, Any], label: str) -> dict[str, dict[str, list[float]]]:
            samples: dict[str, dict[str, list[float]]] = {k: {} for k in order}
            failed: set[str] = set()
            for r in range(cfg.rounds):
                shift = r % len(order) if order else 0
                for kind in order[shift:] + order[:shift]:
                    if kind in failed:
                        continue
                    reply = clients[kind].request({**req, **block})
                    if not reply.get("ok"):
                        _log(cfg, f"  {kind} failed on {label}: {reply.get('reason')}")
                        failed.add(kind)
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
                        entry["ops"][op] = _entry(kind, op, secs, _op_cost(op, batch, m, n, act, cfg.dtype), peaks)
                    if "gemm" in entry["ops"] and "fwd_bwd" in entry["ops"]:
                        entry["fwd_bwd_over_gemm"] = entry["ops"]["fwd_bwd"]["median_ms"] / entry["ops"]["gemm"]["median_ms"]
                    result["cases"].append(entry)
        if cfg.model and "step" in cfg.ops:
            widths = list(cfg.model)
            label = "-".join(map(str, widths)) + f" batch {cfg.model_batch}"
            _log(cfg, f"measuring the training step of {label} ...")
            req = {"cmd": "model", "widths": widths, "batch": cfg.model_batch}
            c = _step_cost(widths, cfg.model_batch, "relu", cfg.dtype)
            for kind, ops in measure(req, label).items():
                result["models"].append({
                    "widths": widths, "batch": cfg.model_batch, "backend": kind,
                    "ops": {"step": _entry(kind, "step", ops["step"], c, _peaks(clients[kind].hello, cfg))},
                })
        result["seconds"] = round(time.time() - started, 1)
        result["machine"]["load_average_start"] = load_start
        result["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        return result
    finally:
        for client in clients.values():
            client.close()


# ==================================================================== output
def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(result: dict[str, Any]) -> str:
    """The stdout table: medians in ms, fwd+bwd throughput, ratio to the same backend's bare GEMMs."""
    ref = {(c["batch"], c["in"], c["out"], c["activation"]): c for c in result["cases"] if c["backend"] == "torch-cpu"}
    head = (f"{'size B x M x N':>16} {'act':>7} {'backend':>10} {'gemm x3':>9} {'forward':>9} {'backward':>9} "
            f"{'fwd+bwd':>9} {'step':>9} {'GFLOP/s':>8} {'fb/gemm':>7} {'fb/torch':>8} {'roofline':>8}")
    lines = ["times in ms (median); GFLOP/s and roofline of fwd+bwd; fb/gemm = fwd+bwd over the same "
             "backend's three bare GEMMs; fb/torch = over torch-cpu's fwd+bwd", head, "-" * len(head)]
    for c in result["cases"]:
        ops = c["ops"]

        def med(op: str) -> float | None:
            return ops[op]["median_ms"] if op in ops else None

        fb = ops.get("fwd_bwd", {})
        r = ref.get((c["batch"], c["in"], c["out"], c["activation"]))
        vs = fb["median_ms"] / r["ops"]["fwd_bwd"]["median_ms"] if fb and r and "fwd_bwd" in r["ops"] else None
        roof = fb.get("roofline_fraction")
        lines.append(
            f"{str(c['batch']) + 'x' + str(c['in']) + 'x' + str(c['out']):>16} {c['activation']:>7} {c['backend']:>10} "
            f"{_fmt(med('gemm'), '9.4f')} {_fmt(med('forward'), '9.4f')} {_fmt(med('backward'), '9.4f')} "
            f"{_fmt(med('fwd_bwd'), '9.4f')} {_fmt(med('step'), '9.4f')} {_fmt(fb.get('gflops'), '8.1f')} "
            f"{_fmt(c.get('fwd_bwd_over_gemm'), '7.3f')} {_fmt(vs, '8.3f')} "
            f"{'-' if roof is None else format(roof * 100, '7.1f') + '%'}"
        )
    for mdl in result.get("models", []):
        s = mdl["ops"]["step"]
        lines.append(
            f"training step {'-'.join(map(str, mdl['widths']))} batch {mdl['batch']} softmax-CE SGD "
            f"{mdl['backend']:>10}: {s['median_ms']:.4f} ms (p25 {s['p25_ms']:.4f}, p75 {s['p75_ms']:.4f}), "
            f"{_fmt(s.get('gflops'), '.1f')} GFLOP/s"
        )
    for kind, why in result.get("skipped", {}).items():
        lines.append(f"not measured: {kind}: {why}")
    for kind, b in result.get("backends", {}).items():
        info = b["info"]
        if info.get("torch_blas"):
            blas = [f"torch's {info['torch_blas']}, {info.get('threads')} threads"]
        else:
            blas = [f"{x.get('internal_api')} {x.get('version')} {x.get('architecture') or ''} x{x.get('num_threads')}"
                    for x in info.get("blas", []) if x.get("user_api") == "blas"]
        lines.append(f"{kind}: timer {b['info'].get('timer')}; BLAS {', '.join(blas) or 'unknown'}; "
                     f"OPENBLAS_CORETYPE={b['env'].get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={b['env'].get('OPENBLAS_L2_SIZE')}")
    m = result.get("machine", {})
    lines.append(f"machine: {m.get('cpu')}, {m.get('usable_cores', m.get('logical_cores'))} cores; "
                 f"load average {m.get('load_average_start')} -> {m.get('load_average_end')}")
    return "\n".join(lines)


def write_plot(result: dict[str, Any], path: str) -> None:
    """A PNG of fwd+bwd throughput per size per backend, with each backend's bare-GEMM floor marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acts = list(dict.fromkeys(c["activation"] for c in result["cases"]))
    kinds = list(dict.fromkeys(c["backend"] for c in result["cases"]))
    sizes = list(dict.fromkeys((c["batch"], c["in"], c["out"]) for c in result["cases"]))
    fig, axes = plt.subplots(1, max(1, len(acts)), figsize=(6 * max(1, len(acts)), 4.5), squeeze=False)
    width = 0.8 / max(1, len(kinds))
    for ax, act in zip(axes[0], acts):
        for j, kind in enumerate(kinds):
            xs, ys, floors = [], [], []
            for i, s in enumerate(sizes):
                for c in result["cases"]:
                    if (c["batch"], c["in"], c["out"]) == s and c["activation"] == act and c["backend"] == kind:
                        if "fwd_bwd" in c["ops"]:
                            xs.append(i + (j - (len(kinds) - 1) / 2) * width)
                            ys.append(c["ops"]["fwd_bwd"]["gflops"])
                            floors.append(c["ops"].get("gemm", {}).get("gflops"))
            ax.bar(xs, ys, width=width, label=kind)
            fx = [x for x, f in zip(xs, floors) if f]
            ax.scatter(fx, [f for f in floors if f], marker="_", s=300, color="black", zorder=3,
                       label="bare GEMMs (floor)" if j == 0 else None)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"{b}x{m}x{n}" for b, m, n in sizes], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s (forward + backward)")
        ax.set_title(f"Dense + {act}: forward+backward throughput")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = result.get("machine", {})
    fig.suptitle(f"fcgpu bench on {m.get('cpu')} ({m.get('usable_cores', m.get('logical_cores'))} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ==================================================================== command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcgpu bench`` (shared with benchmarks/compare_backends.py)."""
    parser.add_argument("--backends", default=None,
                        help="comma-separated: numpy, cupy, torch (= torch-cpu and torch-cuda), torch-cpu, torch-cuda; "
                             "default: all usable here")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="BxMxN",
                        help="batch x in x units, e.g. --sizes 32x64x64 128x784x512 (default: the full grid, "
                             "whose last size takes minutes on a small CPU)")
    parser.add_argument("--activations", default=",".join(ACTIVATIONS), help="comma-separated (default relu,sigmoid)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write the results and the machine as JSON")
    parser.add_argument("--plot", dest="plot_path", metavar="FILE", help="write a PNG plot (needs matplotlib)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating blocks per backend and case (default 3)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of each operation per block (default 0.3); sets the number of repeats")
    parser.add_argument("--repeats", type=int, default=None, dest="min_samples",
                        help="at least this many timed calls of each operation per block (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls of each operation per block")
    parser.add_argument("--quick", action="store_true",
                        help="the three smallest sizes, 2 rounds and a short budget: a minute or less")
    parser.add_argument("--model", default="784-512-10",
                        help="widths of the MLP whose training step is measured, or 'none' (default 784-512-10)")
    parser.add_argument("--model-batch", type=int, default=128)
    parser.add_argument("--unset-openblas-env", action="store_true",
                        help="start the measuring processes without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE "
                             "(they must be unset before NumPy loads); the BLAS kernel that ran is reported")
    parser.add_argument("--peak-gflops", type=float, default=None, help="GPU FP32 peak for the roofline (default: from the device)")
    parser.add_argument("--peak-gbps", type=float, default=None, help="GPU memory bandwidth in GB/s for the roofline")
    parser.add_argument("--settle", type=float, default=None, help="seconds between blocks (default 0.2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig()
    if args.quick:
        cfg.sizes, cfg.rounds, cfg.budget, cfg.settle = list(QUICK_SIZES), 2, 0.1, 0.1
    if args.backends:
        cfg.backends = [b for b in args.backends.split(",") if b.strip()]
    if args.sizes:
        cfg.sizes = list(args.sizes)
    cfg.activations = [a.strip().lower() for a in args.activations.split(",") if a.strip()]
    for a in cfg.activations:
        if a not in ("relu", "sigmoid", "tanh", "linear"):
            raise SystemExit(f"fcgpu bench: --activations: unknown {a!r}")
    cfg.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in cfg.ops:
        if o not in OPS:
            raise SystemExit(f"fcgpu bench: --ops: expected names from {','.join(OPS)}, got {o!r}")
    for name in ("rounds", "budget", "min_samples", "settle"):
        value = getattr(args, name)
        if value is not None:
            if value < 0 or (name in ("rounds", "min_samples") and value < 1):
                raise SystemExit(f"fcgpu bench: --{name.replace('min_samples', 'repeats')}: expected a positive number")
            setattr(cfg, name, value)
    cfg.warmup = max(0, args.warmup)
    if args.model.strip().lower() in ("none", "", "0"):
        cfg.model = None
    else:
        try:
            cfg.model = [int(w) for w in args.model.replace(",", "-").split("-")]
        except ValueError:
            raise SystemExit(f"fcgpu bench: --model: expected widths like 784-512-10, got {args.model!r}") from None
        if len(cfg.model) < 2 or min(cfg.model) < 1:
            raise SystemExit(f"fcgpu bench: --model: expected at least two positive widths, got {args.model!r}")
    cfg.model_batch = args.model_batch
    cfg.unset_openblas_env = args.unset_openblas_env
    cfg.peak_gflops, cfg.peak_gbps = args.peak_gflops, args.peak_gbps
    cfg.json_path, cfg.plot_path = args.json_path, args.plot_path
    cfg.verbose = not args.quiet
    return cfg


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``fcgpu bench`` for parsed arguments: table on stdout, JSON and plot if asked."""
    cfg = config_from_args(args)
    try:
        result = run_benchmark(cfg)
    except ValueError as e:
        print(f"fcgpu bench: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    if cfg.json_path:
        tmp = cfg.json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, cfg.json_path)
        print(f"wrote {cfg.json_path}")
    if cfg.plot_path:
        try:
            write_plot(result, cfg.plot_path)
            print(f"wrote {cfg.plot_path}")
        except ImportError:
            print("fcgpu bench: --plot needs matplotlib (pip install fcgpu[bench])", file=sys.stderr)
            return 1
    return 0 if result["cases"] or result["models"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--worker":
        return worker_main(argv[1])
    parser = argparse.ArgumentParser(prog="fcgpu bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
