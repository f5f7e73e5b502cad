"""What ``fcgpu bench`` measures and how: ``BenchConfig``, its defaults, and the command-line options
that fill it in (``add_arguments``, each value checked by its type; ``config_from_args`` checks that
every case fits in memory)."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..activations.table import ACTIVATIONS
from ..cli.args import UsageError, int_list, integer, name_list, number, require_memory

__all__ = [
    "BACKEND_NAMES",
    "BenchConfig",
    "DEFAULT_ACTIVATIONS",
    "DEFAULT_SIZES",
    "DEVICE_KINDS",
    "MODEL_ACTIVATION",
    "OPENBLAS_VARS",
    "OPS",
    "QUICK_SIZES",
    "WORKER_KINDS",
    "add_arguments",
    "case_bytes",
    "config_from_args",
    "layer_activations",
    "parse_size",
    "parse_sizes",
]

DEFAULT_SIZES: tuple[tuple[int, int, int], ...] = (
    (32, 64, 64),
    (1, 784, 512),
    (128, 784, 512),
    (256, 1024, 1024),
    (1024, 4096, 4096),
)
QUICK_SIZES: tuple[tuple[int, int, int], ...] = DEFAULT_SIZES[:3]
# Measured unless --activations names others (any of fcgpu.activations.ACTIVATIONS).
DEFAULT_ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid")
OPS: tuple[str, ...] = ("gemm", "forward", "backward", "fwd_bwd", "step")
WORKER_KINDS: tuple[str, ...] = ("numpy", "cupy", "torch-cpu", "torch-cuda")
OPENBLAS_VARS: tuple[str, ...] = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DEVICE_KINDS = ("cupy", "torch-cuda")
MODEL_ACTIVATION = "relu"  # of the hidden layers of the MLP whose training step is measured


@dataclass
class BenchConfig:
    """What to measure and how; the defaults are those of ``fcgpu bench``."""

    backends: list[str] | None = None  # names from WORKER_KINDS, or 'torch' for both torch kinds; None: all usable
    sizes: list[tuple[int, int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))
    activations: list[str] = field(default_factory=lambda: list(DEFAULT_ACTIVATIONS))
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
    # --launches: no timing; the device operations per training step (fcgpu.bench.launches) of
    # the model and of the sizes given explicitly, counted on the host stand-in for CuPy.
    launches: bool = False
    # --graphs: also time fit's step of the model with CUDA graphs off and on (cupy), and PyTorch's
    # eager step against torch.compile(mode="reduce-overhead") (torch-cuda); GPU backends only.
    graphs: bool = False


def layer_activations(widths: Sequence[int], activation: str) -> list[str]:
    """The activation of each layer of a measured model of ``widths``: ``activation`` on the hidden
    layers, 'linear' on the output layer (the logits), except for a single layer, which keeps it."""
    layers = len(widths) - 1
    return [activation if i < layers - 1 or layers == 1 else "linear" for i in range(layers)]


_SIZE = re.compile(r"\s*([0-9]{1,12})\s*[xX]\s*([0-9]{1,12})\s*[xX]\s*([0-9]{1,12})\s*")
BACKEND_NAMES: tuple[str, ...] = ("numpy", "cupy", "torch", *WORKER_KINDS[2:])


def parse_size(text: str) -> tuple[int, int, int]:
    """'128x784x512' -> (128, 784, 512): batch, in features, units, each a positive integer."""
    match = _SIZE.fullmatch(text)
    size = tuple(int(g) for g in match.groups()) if match else ()
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 128x784x512 (batch x in x units, each >= 1), got {text!r}")
    return size  # type: ignore[return-value]


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """'32x64x64,128x784x512' -> both sizes: --sizes takes sizes separated by commas as well as spaces."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected sizes like 128x784x512, got {text!r}")
    return [parse_size(p) for p in parts]


def case_bytes(widths: Sequence[int], batch: int, dtype: str) -> int:
    """Memory one measured case holds: for each layer x, W, y and their gradients dx, dW, dy."""
    itemsize = np.dtype(dtype).itemsize
    return sum(2 * (batch * m + m * n + batch * n) * itemsize for m, n in zip(widths[:-1], widths[1:]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcgpu bench`` (shared with benchmarks/compare_backends.py); each value is
    checked by its type, so a bad one is an argument error before anything runs."""
    parser.add_argument("--backends", type=name_list(BACKEND_NAMES, "backends"), default=None,
                        help="comma-separated: numpy, cupy, torch (= torch-cpu and torch-cuda), torch-cpu, torch-cuda; "
                             "default: all usable here")
    parser.add_argument("--sizes", nargs="+", type=parse_sizes, default=None, metavar="BxMxN",
                        help="batch x in x units, separated by spaces or commas, e.g. --sizes 32x64x64,128x784x512 "
                             "(default: the full grid, whose last size takes minutes on a small CPU)")
    parser.add_argument("--activations", type=name_list(tuple(ACTIVATIONS), "activations"),
                        default=list(DEFAULT_ACTIVATIONS),
                        help=f"comma-separated names from {','.join(ACTIVATIONS)} "
                             f"(default {','.join(DEFAULT_ACTIVATIONS)})")
    parser.add_argument("--ops", type=name_list(OPS, "ops"), default=list(OPS),
                        help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write the results and the machine as JSON")
    parser.add_argument("--plot", dest="plot_path", metavar="FILE", help="write a PNG plot (needs matplotlib)")
    parser.add_argument("--rounds", type=integer(1, 1000), default=None,
                        help="alternating blocks per backend and case (default 3)")
    parser.add_argument("--budget", type=number(0, 3600), default=None,
                        help="seconds of each operation per block (default 0.3); sets the number of repeats")
    parser.add_argument("--repeats", type=integer(1, 1_000_000), default=None, dest="min_samples",
                        help="at least this many timed calls of each operation per block (default 3)")
    parser.add_argument("--warmup", type=integer(0, 1_000_000), default=None,
                        help="untimed calls of each operation per block (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="the three smallest sizes, 2 rounds and a short budget: a minute or less")
    parser.add_argument("--model", type=_model_widths, default=[784, 512, 10],
                        help="widths of the MLP whose training step is measured, or 'none' (default 784-512-10)")
    parser.add_argument("--model-batch", type=integer(1, 2**24), default=128)
    parser.add_argument("--unset-openblas-env", action="store_true",
                        help="start the measuring processes without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE "
                             "(they must be unset before NumPy loads); the BLAS kernel that ran is reported")
    parser.add_argument("--peak-gflops", type=number(0, 1e9), default=None,
                        help="GPU FP32 peak for the roofline (default: from the device)")
    parser.add_argument("--peak-gbps", type=number(0, 1e9), default=None,
                        help="GPU memory bandwidth in GB/s for the roofline")
    parser.add_argument("--settle", type=number(0, 60, lo_open=False), default=None,
                        help="seconds between blocks (default 0.2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--launches", action="store_true",
                        help="no timing: print the device operations (kernels, GEMMs, ufuncs, ...) and transfers of "
                             "one training step inside fit on the CuPy backend's code, counted on the host stand-in, "
                             "for SGD and Adam: of --model at --model-batch, and of each --sizes given (one layer)")
    parser.add_argument("--graphs", action="store_true",
                        help="also time a training step of --model inside fit with CUDA graphs off and on "
                             "(fcgpu.config.set_graphs, cupy backend), and PyTorch's eager step against "
                             "torch.compile(mode='reduce-overhead') (torch-cuda); needs a GPU: without one "
                             "the report says why instead")


def _model_widths(text: str) -> list[int] | None:
    """'784-512-10' (or with commas) -> [784, 512, 10]; 'none' -> None."""
    if text.strip().lower() in ("none", "", "0"):
        return None
    return int_list(1, 2**20, "-,", "784-512-10", min_len=2)(text)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The BenchConfig of parsed arguments; raises UsageError where a case would not fit in memory."""
    cfg = BenchConfig()
    if args.quick:
        cfg.sizes, cfg.rounds, cfg.budget, cfg.settle = list(QUICK_SIZES), 2, 0.1, 0.1
    if args.backends:
        cfg.backends = list(args.backends)
    if args.sizes:
        cfg.sizes = [size for group in args.sizes for size in group]
    cfg.activations, cfg.ops = list(args.activations), list(args.ops)
    for name in ("rounds", "budget", "min_samples", "settle", "warmup"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.max_samples = max(cfg.max_samples, cfg.min_samples)  # --repeats above the cap raises the cap
    cfg.model, cfg.model_batch = args.model, args.model_batch
    cfg.unset_openblas_env = args.unset_openblas_env
    cfg.peak_gflops, cfg.peak_gbps = args.peak_gflops, args.peak_gbps
    cfg.json_path, cfg.plot_path = args.json_path, args.plot_path
    cfg.verbose = not args.quiet
    cfg.launches = args.launches
    cfg.graphs = args.graphs
    if cfg.graphs and not cfg.model:
        raise UsageError("--graphs: times the training step of --model; give a model, not 'none'")
    if cfg.launches:
        if cfg.json_path or cfg.plot_path:
            raise UsageError("--launches: prints its counts; --json and --plot are for the timing benchmark")
        cfg.sizes = [size for group in args.sizes for size in group] if args.sizes else []
    for batch, m, n in cfg.sizes:
        require_memory(case_bytes([m, n], batch, cfg.dtype), f"--sizes {batch}x{m}x{n} ({cfg.dtype} x, W, y, dx, dW, dy)")
    if cfg.model and "step" in cfg.ops:
        require_memory(case_bytes(cfg.model, cfg.model_batch, cfg.dtype),
                       f"--model {'-'.join(map(str, cfg.model))} at --model-batch {cfg.model_batch}")
    return cfg
