"""What ``fcgpu bench`` measures and how: ``BenchConfig``, its defaults, and the command-line options
that fill it in (``add_arguments``, checked by ``config_from_args``)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Sequence

from ..activations import ACTIVATIONS

__all__ = [
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
    "config_from_args",
    "layer_activations",
    "parse_size",
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


def layer_activations(widths: Sequence[int], activation: str) -> list[str]:
    """The activation of each layer of a measured model of ``widths``: ``activation`` on the hidden
    layers, 'linear' on the output layer (the logits), except for a single layer, which keeps it."""
    layers = len(widths) - 1
    return [activation if i < layers - 1 or layers == 1 else "linear" for i in range(layers)]


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcgpu bench`` (shared with benchmarks/compare_backends.py)."""
    parser.add_argument("--backends", default=None,
                        help="comma-separated: numpy, cupy, torch (= torch-cpu and torch-cuda), torch-cpu, torch-cuda; "
                             "default: all usable here")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None, metavar="BxMxN",
                        help="batch x in x units, e.g. --sizes 32x64x64 128x784x512 (default: the full grid, "
                             "whose last size takes minutes on a small CPU)")
    parser.add_argument("--activations", default=",".join(DEFAULT_ACTIVATIONS),
                        help=f"comma-separated names from {','.join(ACTIVATIONS)} "
                             f"(default {','.join(DEFAULT_ACTIVATIONS)})")
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
        if a not in ACTIVATIONS:
            raise SystemExit(f"fcgpu bench: --activations: unknown {a!r}; expected names from {','.join(ACTIVATIONS)}")
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
