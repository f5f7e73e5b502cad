"""fcgpu bench: a smoke run on a tiny grid (NumPy only), and its pieces. No speed assertions:
speed lives in benchmarks/RESULTS.md."""
from __future__ import annotations

import argparse
import json

import pytest

import fcgpu as fc
from fcgpu import bench, cli
from fcgpu.bench import cost
from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy.device_specs import device_peak
from fcgpu.bench.config import layer_activations
from fcgpu.bench.runner import step_cost


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    json_path, png_path = out / "r.json", out / "r.png"
    argv = [
        "bench", "-q", "--backends", "numpy", "--sizes", "4x8x8", "1x6x5", "--activations", "relu,sigmoid",
        "--rounds", "2", "--budget", "0.002", "--repeats", "2", "--warmup", "1", "--settle", "0",
        "--model", "8-6-3", "--model-batch", "4", "--json", str(json_path), "--plot", str(png_path),
    ]
    return argv, json_path, png_path


def test_smoke_writes_json_table_and_png(smoke, capsys):
    argv, json_path, png_path = smoke
    assert cli.main(argv) == 0
    table = capsys.readouterr().out
    assert "numpy" in table and "fb/gemm" in table and "training step 8-6-3 batch 4" in table

    result = json.loads(json_path.read_text())
    assert [(c["batch"], c["in"], c["out"], c["activation"]) for c in result["cases"]] == [
        (4, 8, 8, "relu"), (4, 8, 8, "sigmoid"), (1, 6, 5, "relu"), (1, 6, 5, "sigmoid"),
    ]
    for case in result["cases"]:
        assert case["backend"] == "numpy"
        assert set(case["ops"]) == set(bench.OPS)
        for op, e in case["ops"].items():
            assert e["n"] >= 2 * 2, op  # two rounds of at least --repeats calls
            assert 0 < e["min_ms"] <= e["p25_ms"] <= e["median_ms"] <= e["p75_ms"]
            assert e["gflops"] > 0 and e["flops"] > 0 and e["bytes"] > 0
            assert "roofline_fraction" not in e  # host rows have none
        assert case["fwd_bwd_over_gemm"] == pytest.approx(
            case["ops"]["fwd_bwd"]["median_ms"] / case["ops"]["gemm"]["median_ms"]
        )
    (model,) = result["models"]
    assert model["widths"] == [8, 6, 3] and model["batch"] == 4 and model["ops"]["step"]["median_ms"] > 0

    machine = result["machine"]
    assert machine["cpu"] and machine["logical_cores"] >= 1 and len(machine["load_average_end"]) == 3
    info = result["backends"]["numpy"]["info"]
    assert info["numpy"] and info["timer"].startswith("host")
    assert isinstance(info["blas"], list)
    assert set(result["backends"]["numpy"]["env"]) == set(bench.OPENBLAS_VARS)

    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_size():
    assert bench.parse_size("128x784x512") == (128, 784, 512)
    assert bench.parse_size(" 1X2x3 ") == (1, 2, 3)
    for bad in ("1x2", "0x2x3", "0x1x1", "12x", "x1x2", "ax2x3", "1x2x3x4", "1,2,3", "-1x2x3", "1.5x2x3", "9" * 20 + "x1x1"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 128x784x512"):
            bench.parse_size(bad)


def parsed(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.config_from_args(parser.parse_args(list(argv)))


def test_sizes_take_commas_as_well_as_spaces():
    cfg = parsed("--sizes", "4x8x8,1x6x5", "2x3x4", "--backends", "numpy,torch")
    assert cfg.sizes == [(4, 8, 8), (1, 6, 5), (2, 3, 4)] and cfg.backends == ["numpy", "torch"]
    assert bench.config.parse_sizes("4x4x4,,") == [(4, 4, 4)]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.config.parse_sizes(",")


def test_numeric_flags_reach_the_config():
    cfg = parsed("--budget", "0.5", "--warmup", "0", "--repeats", "5000", "--rounds", "2", "--settle", "0",
                 "--model", "8,6-3", "--model-batch", "4", "--peak-gflops", "1e3")
    assert (cfg.budget, cfg.warmup, cfg.min_samples, cfg.rounds, cfg.settle) == (0.5, 0, 5000, 2, 0.0)
    assert cfg.max_samples == 5000  # --repeats above the cap raises the cap instead of being ignored
    assert cfg.model == [8, 6, 3] and cfg.model_batch == 4 and cfg.peak_gflops == 1e3
    assert parsed("--model", "none").model is None and parsed().warmup == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "nan"], "argument --budget: expected a finite number in (0, 3600], got 'nan'"),
        (["--budget", "inf"], "argument --budget: expected a finite number in (0, 3600], got 'inf'"),
        (["--budget", "0"], "argument --budget: expected a finite number in (0, 3600], got '0'"),
        (["--warmup", "-5"], "argument --warmup: expected an integer in [0, 1000000], got '-5'"),
        (["--repeats", "0"], "argument --repeats: expected an integer in [1, 1000000], got '0'"),
        (["--rounds", "1.5"], "argument --rounds: expected an integer in [1, 1000], got '1.5'"),
        (["--settle", "-1"], "argument --settle: expected a finite number in [0, 60], got '-1'"),
        (["--peak-gbps", "nan"], "argument --peak-gbps: expected a finite number in (0, 1e+09], got 'nan'"),
        (["--model-batch", "0"], "argument --model-batch: expected an integer in [1, 16777216], got '0'"),
        (["--model", "784--10"], "argument --model: expected 2 to 64 integers in [1, 1048576] such as 784-512-10"),
        (["--sizes", "0x1x1"], "argument --sizes: expected a size like 128x784x512"),
        (["--sizes", "12x"], "argument --sizes: expected a size like 128x784x512"),
        (["--backends", "numpy,tensorflow"], "argument --backends: expected comma-separated backends from "
                                            "numpy,cupy,torch,torch-cpu,torch-cuda; unknown 'tensorflow'"),
        (["--activations", "relu,reluu"], "argument --activations: expected comma-separated activations from"),
        (["--ops", "gemm,fma"], "argument --ops: expected comma-separated ops from gemm,forward"),
        (["--sizes", "1000000x1000000x1000000"], "fcgpu bench: error: --sizes 1000000x1000000x1000000 (float32 x, W, y, "
                                             "dx, dW, dy) needs about 21.8 TiB of memory, but"),
        (["--model", "1000000-1000000", "--sizes", "1x1x1"], "fcgpu bench: error: --model 1000000-1000000 at "
                                                            "--model-batch 128 needs about 7.3 TiB of memory"),
    ],
)
def test_bad_values_are_argument_errors_before_anything_runs(argv, message, capsys, tmp_path):
    try:
        code = cli.main(["bench", "--backends", "numpy", "--json", str(tmp_path / "r.json"), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "starting the" not in err and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "flag, where, message",
    [
        ("--json", "missing/x.json", "--json: the folder '{tmp}/missing' of '{tmp}/missing/x.json' does not exist"),
        ("--plot", "missing/x.png", "--plot: the folder '{tmp}/missing' of '{tmp}/missing/x.png' does not exist"),
        ("--json", ".", "--json: expected a file name, but '{tmp}' is a folder"),
    ],
)
def test_output_paths_are_checked_before_measuring(flag, where, message, capsys, tmp_path):
    assert cli.main(["bench", "--backends", "numpy", "--sizes", "1x1x1", flag, str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert err == f"fcgpu bench: error: {message.format(tmp=tmp_path)}\n"


def test_plot_without_matplotlib_is_refused_before_measuring(capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert cli.main(["bench", "--backends", "numpy", "--sizes", "1x1x1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot: needs matplotlib" in capsys.readouterr().err


def test_json_is_written_through_a_link(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "results" / "run.json")
    argv = ["bench", "-q", "--backends", "numpy", "--sizes", "2x3x4", "--activations", "relu", "--ops", "gemm",
            "--rounds", "1", "--budget", "0.001", "--repeats", "1", "--warmup", "0", "--settle", "0",
            "--model", "none", "--json", str(link)]
    assert cli.main(argv) == 0
    assert link.is_symlink() and json.loads((tmp_path / "results" / "run.json").read_text())["cases"]


def test_activation_names_come_from_the_table():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    cfg = bench.config_from_args(parser.parse_args(["--activations", ",".join(ACTIVATIONS).upper()]))
    assert cfg.activations == list(ACTIVATIONS)
    assert bench.config_from_args(parser.parse_args([])).activations == list(bench.DEFAULT_ACTIVATIONS)
    with pytest.raises(SystemExit):
        parser.parse_args(["--activations", "relu,sqrt"])


def test_unset_openblas_env_only_touches_the_workers_environment():
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "HOME": "/h", "PYTHONPATH": "/x"}
    kept = bench.worker_env(False, base)
    cleared = bench.worker_env(True, base)
    assert kept["OPENBLAS_CORETYPE"] == "Haswell" and kept["OPENBLAS_L2_SIZE"] == "1048576"
    assert "OPENBLAS_CORETYPE" not in cleared and "OPENBLAS_L2_SIZE" not in cleared
    assert cleared["HOME"] == "/h"
    assert cleared["PYTHONPATH"].endswith("/x") and cleared["PYTHONPATH"] != "/x"  # this fcgpu first
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's mapping is left alone


def test_backend_names():
    kinds, skipped = bench.resolve_backends(["numpy"])
    assert kinds == ["numpy"] and skipped == {}
    with pytest.raises(ValueError, match="backends"):
        bench.resolve_backends(["tensorflow"])


def test_step_cost_is_the_cost_of_the_measured_model():
    assert layer_activations([8, 6, 3], "tanh") == ["tanh", "linear"]  # logits out
    assert layer_activations([8, 3], "tanh") == ["tanh"]  # a single layer keeps its activation
    model = fc.Sequential([fc.Dense(6, activation="tanh"), fc.Dense(3)])
    model.build((None, 8))
    assert step_cost([8, 6, 3], 4, "tanh", "float32") == cost.train_step_cost(model, 4).total


def test_device_peak_from_attributes():
    # An H100 SXM: 132 SMs at 1.98 GHz, HBM3 at 2.619 GHz on a 5120-bit bus.
    peak = device_peak(1_980_000, 132, 2_619_000, 5120, 9, 0)
    assert peak["peak_gflops"] == pytest.approx(2 * 128 * 132 * 1.98, rel=1e-9)
    assert peak["peak_gbps"] == pytest.approx(2 * 2.619 * 640, rel=1e-9)
    assert device_peak(1_410_000, 108, 1_215_000, 5120, 8, 0)["peak_gflops"] == pytest.approx(
        2 * 64 * 108 * 1.41, rel=1e-9
    )  # A100: 64 FP32 lanes per SM


def _synthetic_result():
    def op(ms, flops=2e9, roof=None):
        e = {"median_ms": ms, "p25_ms": ms, "p75_ms": ms, "min_ms": ms, "n": 3, "gflops": flops / ms / 1e6,
             "flops": flops, "bytes": 1e6}
        if roof is not None:
            e["roofline_fraction"] = roof
        return e

    cases = []
    for backend, ms, roof in (("numpy", 2.0, None), ("torch-cpu", 1.0, None), ("cupy", 0.1, 0.5)):
        cases.append({"batch": 8, "in": 16, "out": 4, "activation": "relu", "backend": backend,
                      "ops": {"gemm": op(ms / 1.1), "fwd_bwd": op(ms, roof=roof)}, "fwd_bwd_over_gemm": 1.1})
    return {"cases": cases, "models": [], "skipped": {"torch-cuda": "no device"}, "backends": {},
            "machine": {"cpu": "test cpu", "logical_cores": 2}}


def test_table_shows_ratios_and_device_roofline():
    text = bench.format_table(_synthetic_result())
    rows = {line.split()[2]: line for line in text.splitlines() if line.strip().startswith("8x")}
    assert set(rows) == {"numpy", "torch-cpu", "cupy"}
    assert "2.000" in rows["numpy"] and "1.100" in rows["numpy"]  # fb/torch and fb/gemm
    assert "50.0%" in rows["cupy"] and "%" not in rows["numpy"]
    assert "not measured: torch-cuda: no device" in text


def test_plot_from_a_result(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "p.png"
    bench.write_plot(_synthetic_result(), str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
