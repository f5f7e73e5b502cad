"""fcgpu bench --graphs: the option, the per-step arithmetic, the fcgpu workload on the host stand-in,
and a run without a GPU that reports why instead of failing."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import cli
from fcgpu.bench.command import main as bench_main
from fcgpu.bench.config import BenchConfig
from fcgpu.bench.report import format_table
from fcgpu.bench.runner import graphs_per_step
from fcgpu.bench.workloads import GRAPH_BATCHES, GRAPH_EPOCHS, FcgpuWorker
from fcgpu.testing import stand_in_backend


def test_graphs_option_parses_and_needs_a_model(capsys):
    from fcgpu.bench.config import add_arguments, config_from_args
    from fcgpu.cli.args import CommandParser

    parser = CommandParser(prog="fcgpu bench")
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--graphs"])).graphs is True
    assert config_from_args(parser.parse_args([])).graphs is False and BenchConfig().graphs is False
    assert bench_main(["--graphs", "--model", "none", "--backends", "numpy"]) == 2
    assert "--graphs" in capsys.readouterr().err


def test_graphs_per_step_is_the_difference_over_the_extra_steps():
    short, long = GRAPH_EPOCHS
    ops = {f"off_{short}": [0.010], f"off_{long}": [0.040], f"on_{short}": [0.008], f"on_{long}": [0.014],
           "eager": [0.0002], "reduce_overhead": [0.00005]}
    steps = graphs_per_step(ops)
    extra = (long - short) * GRAPH_BATCHES
    assert steps["graphs_off"] == pytest.approx(30.0 / extra) and steps["graphs_on"] == pytest.approx(6.0 / extra)
    assert steps["eager"] == pytest.approx(0.2) and steps["reduce_overhead"] == pytest.approx(0.05)


def test_fcgpu_graphs_workload_runs_fit_both_ways_on_the_stand_in():
    worker = object.__new__(FcgpuWorker)
    worker.fc, worker.np, worker.kind = fc, np, "cupy"
    before = fc.config.graphs_enabled()
    worker.backend = fc.set_backend(stand_in_backend())
    try:
        ops = worker.graphs_case([6, 5, 3], 4, "float32")
        assert sorted(ops) == sorted(f"{n}_{e}" for n in ("off", "on") for e in GRAPH_EPOCHS)
        for prep, run in ops.values():
            assert prep is None
            run()
            assert fc.config.graphs_enabled() == before  # each run restores the setting
    finally:
        fc.set_backend("numpy")
    numpy_worker = FcgpuWorker("numpy")
    with pytest.raises(RuntimeError, match="cupy backend"):
        numpy_worker.graphs_case([6, 5, 3], 4, "float32")


def test_graphs_without_a_gpu_reports_the_reasons(tmp_path, capsys):
    path = tmp_path / "r.json"
    code = cli.main(["bench", "-q", "--backends", "numpy,cupy,torch-cuda", "--sizes", "1x2x2", "--ops", "step",
                     "--activations", "relu", "--rounds", "1", "--budget", "0.001", "--repeats", "1", "--warmup",
                     "0", "--settle", "0", "--model", "4-3-2", "--model-batch", "2", "--graphs", "--json", str(path)])
    assert code == 0
    result = json.loads(path.read_text())
    assert result["graphs"] == []
    assert set(result["graphs_skipped"]) == {"cupy", "torch-cuda"} and all(result["graphs_skipped"].values())
    out = capsys.readouterr().out
    assert "graphs not measured: cupy:" in out and "graphs not measured: torch-cuda:" in out


def test_table_shows_graph_steps():
    result = {"cases": [], "graphs": [{"widths": [784, 512, 10], "batch": 128, "backend": "cupy",
                                       "per_step_ms": {"graphs_off": 0.15, "graphs_on": 0.03}}],
              "graphs_skipped": {"torch-cuda": "torch has no usable CUDA device here"}}
    text = format_table(result)
    assert "graphs_off 0.1500 ms, graphs_on 0.0300 ms" in text
    assert "graphs not measured: torch-cuda: torch has no usable CUDA device here" in text
