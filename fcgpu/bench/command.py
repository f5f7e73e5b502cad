"""The ``fcgpu bench`` command: options to a config, the run, then the table on stdout and the JSON
file and plot if asked; ``main`` is also the worker processes' entry point (``--worker KIND``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from .config import add_arguments, config_from_args
from .report import format_table, write_plot
from .runner import run_benchmark
from .worker import worker_main

__all__ = ["DESCRIPTION", "main", "run_from_args"]

DESCRIPTION = "Backend throughput comparison behind ``fcgpu bench`` and ``benchmarks/compare_backends.py``."


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
    parser = argparse.ArgumentParser(prog="fcgpu bench", description=DESCRIPTION)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
