"""Backend throughput comparison behind ``fcgpu bench`` and ``benchmarks/compare_backends.py``.

For each size (B, M, N) and activation, every backend measures, in the same run:

* ``gemm``: the three bare GEMMs of a Dense forward+backward (x @ W, x.T @ dz, dz @ W.T) in the
  backend's own array library, written into preallocated outputs: the floor a layer can reach;
* ``forward``, ``backward`` and ``fwd_bwd`` of one Dense layer;
* ``step``: a full training step of a one-layer model (forward, softmax cross-entropy, backward,
  SGD update), and the same for a small MLP (784-512-10 at batch 128 by default);
* with ``--graphs``, on a GPU: that MLP's step inside fit with CUDA graphs off and on (cupy), and
  PyTorch's eager step against ``torch.compile(mode="reduce-overhead")`` (torch-cuda).

Each backend runs in its own worker process, so one library's idle BLAS/OpenMP threads never spin
on the cores another is measuring with, and a worker can start with a changed environment (the
OpenBLAS variables must be gone before NumPy loads). Backends are measured in alternating blocks
(the order rotates every round), with a short pause between blocks so the previous worker's
threads go to sleep; within a block the operations are interleaved call by call, so drift in the
machine's speed hits the floor and the layer alike. Host backends are timed with
``time.perf_counter`` around each call; GPU backends with device events
(``cupyx.profiler.benchmark``, ``torch.cuda.Event``), never a host clock around queued work.

Throughput comes from :mod:`fcgpu.bench.cost`; on a GPU the fraction of the roofline uses the device's
peak FP32 rate and memory bandwidth (from its attributes, or ``--peak-gflops/--peak-gbps``).

Modules: :mod:`~fcgpu.bench.config` (what to measure, the command-line options),
:mod:`~fcgpu.bench.timers`, :mod:`~fcgpu.bench.workloads` (the fcgpu and PyTorch cases),
:mod:`~fcgpu.bench.worker` (the worker processes and their pipe protocol),
:mod:`~fcgpu.bench.runner` (orchestration and cost entries), :mod:`~fcgpu.bench.report` (table
and plot) and :mod:`~fcgpu.bench.command` (``fcgpu bench`` itself).
"""
from __future__ import annotations

from .command import main, run_from_args
from .config import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_SIZES,
    DEVICE_KINDS,
    OPENBLAS_VARS,
    OPS,
    QUICK_SIZES,
    WORKER_KINDS,
    BenchConfig,
    add_arguments,
    config_from_args,
    parse_size,
)
from .report import format_table, write_plot
from .runner import machine_info, resolve_backends, run_benchmark
from .worker import worker_env, worker_main

# Every name imported above is importable from fcgpu.bench (fcgpu.cli and the tests use some of
# them); __all__ is the documented API, the same as before the split into modules.
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
