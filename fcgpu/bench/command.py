"""The ``fcgpu bench`` command: options to a config, the run, then the table on stdout and the JSON
file and plot if asked; ``main`` is also the worker processes' entry point (``--worker KIND``)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Sequence

from ..cli.args import CommandParser, UsageError, report_usage_error
from ..saving.fileio import atomic_write, check_output_path
from .config import MODEL_ACTIVATION, BenchConfig, add_arguments, config_from_args
from .report import format_table, write_plot
from .runner import resolve_backends, run_benchmark
from .worker import worker_main

__all__ = ["DESCRIPTION", "check_outputs", "main", "print_launches", "run_from_args"]

DESCRIPTION = "Backend throughput comparison behind ``fcgpu bench`` and ``benchmarks/compare_backends.py``."


def check_outputs(cfg: BenchConfig) -> None:
    """Before measuring: the --json and --plot paths can be written, and --plot has matplotlib."""
    if cfg.json_path:
        check_output_path(cfg.json_path, "--json")
    if cfg.plot_path:
        check_output_path(cfg.plot_path, "--plot")
        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot: needs matplotlib, which is not installed (pip install 'fcgpu[bench]')")


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``fcgpu bench`` for parsed arguments: table on stdout, JSON and plot if asked.

    Everything that can be checked is checked first (values, memory, backends, output paths), so
    bad input exits with status 2 before a worker starts.
    """
    try:
        cfg = config_from_args(args)
        if not cfg.launches:  # --launches counts on the host stand-in: no worker, backend or file
            check_outputs(cfg)
            resolve_backends(cfg.backends)
    except (OSError, ValueError) as e:
        return report_usage_error("fcgpu bench", e)
    if cfg.launches:
        return print_launches(cfg)
    result = run_benchmark(cfg)
    print(format_table(result))
    if cfg.json_path:
        with atomic_write(cfg.json_path, "--json") as f:
            f.write(json.dumps(result, indent=1).encode())
        print(f"wrote {cfg.json_path}")
    if cfg.plot_path:
        write_plot(result, cfg.plot_path)
        print(f"wrote {cfg.plot_path}")
    return 0 if result["cases"] or result["models"] else 1


def print_launches(cfg: BenchConfig) -> int:
    """``fcgpu bench --launches``: for SGD and Adam, the device operations per training step inside
    fit (``fcgpu.bench.launches.launches_per_step``) of ``cfg.model`` and of each of ``cfg.sizes`` (a
    one-layer model of M inputs and N logits at batch B), printed; nothing is timed."""
    from .launches import launches_per_step  # the host stand-in for CuPy; its kernels compile on first use

    models = ([(tuple(cfg.model), cfg.model_batch)] if cfg.model else []) + [((m, n), b) for b, m, n in cfg.sizes]
    print("Device operations per training step inside fit, counted on the host stand-in for CuPy", flush=True)
    for widths, batch in models:
        for optimizer in ("sgd", "adam"):
            report = launches_per_step(widths, batch=batch, optimizer=optimizer, activation=MODEL_ACTIVATION)
            print(report.format(), flush=True)
    return 0 if models else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "--worker":
        return worker_main(argv[1])
    parser = CommandParser(prog="fcgpu bench", description=DESCRIPTION)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
