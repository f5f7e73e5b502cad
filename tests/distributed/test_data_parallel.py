"""Data-parallel training under ``mpiexec -n 2`` (and 3): N ranks give what one process gives on the same
global batches, on the NumPy backend (MPI) and on the CuPy backend's code through the NCCL
stand-in; every rank ends bit-identical; History, evaluate and predict are global; files are
written once; mismatched data fails on every rank."""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.backends.params import ALIGN_ELEMENTS

from dp_helpers import HERE, clean_env, mpirun  # noqa: F401 - mpirun is a fixture

sys.path.insert(0, str(HERE))
from dp_scenarios import SCENARIOS  # noqa: E402

RANKS = 2
RTOL = 1e-9
# Float32 gradients summed in another order round differently; a half copy may then round the other way.
TOLERANCE = {"mixed_float16": {"rtol": 2e-3, "atol": 2e-3}}


def _load(folder: Path, name: str) -> list[dict]:
    results = []
    for rank in range(len(list(folder.glob(f"{name}.rank*.pkl")))):
        with open(folder / f"{name}.rank{rank}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return results


@pytest.fixture(scope="module", params=[("numpy", 2), ("standin", 2), ("numpy", 3)], ids=lambda p: f"{p[0]}-{p[1]}")
def job(request, mpirun, tmp_path_factory):
    """(backend name, output folder, the job's stdout): dp_job.py once per backend and rank count."""
    backend, ranks = request.param
    folder = tmp_path_factory.mktemp(f"dp-{backend}-{ranks}")
    env = clean_env(FCGPU_FAKE_CUPY_DEVICES=str(ranks))
    done = mpirun(ranks, str(HERE / "dp_job.py"), str(folder), backend, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    results = _load(folder, "adam_split")
    assert len(results) == ranks and all(r["size"] == ranks for r in results)
    return backend, folder, done.stdout


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each scenario in this process (a world of one), on each backend."""
    cache: dict[tuple[str, str], dict] = {}

    def get(backend_name: str, scenario: str) -> dict:
        key = (backend_name, scenario)
        if key not in cache:
            if backend_name == "standin":
                from fcgpu.testing import stand_in_backend

                backend = stand_in_backend()
            else:
                backend = fc.backends.resolve_backend("numpy")[0]
            with fc.use_backend(backend):
                cache[key] = SCENARIOS[scenario](0, str(tmp_path_factory.mktemp("reference")))
        return cache[key]

    return get


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ranks_give_what_one_process_gives(job, references, scenario):
    backend, folder, _ = job
    reference = references(backend, scenario)
    tol = TOLERANCE.get(scenario, {"rtol": RTOL, "atol": 1e-12})
    for result in _load(folder, scenario):
        for got, want in zip(result["weights"], reference["weights"]):
            np.testing.assert_allclose(got, want, **tol)
        assert result["epochs"] == reference["epochs"]
        assert result["history"].keys() == reference["history"].keys()
        for key, values in reference["history"].items():
            np.testing.assert_allclose(result["history"][key], values, rtol=tol["rtol"], err_msg=key)
        for key, value in reference["evaluate"].items():
            assert result["evaluate"][key] == pytest.approx(value, rel=tol["rtol"])
        np.testing.assert_allclose(result["predict"], reference["predict"], **tol)
        assert result["steps"] == reference["steps"]
        if "weighted_evaluate" in reference:
            assert result["weighted_evaluate"] == pytest.approx(reference["weighted_evaluate"], rel=tol["rtol"])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rank_ends_bit_identical(job, scenario):
    first, *others = _load(job[1], scenario)
    for other in others:
        for a, b in zip(first["weights"], other["weights"]):
            assert np.array_equal(a, b)
        assert other["history"] == first["history"]  # the global figures, on every rank
        assert other["evaluate"] == first["evaluate"]
        assert np.array_equal(other["predict"], first["predict"])


def test_callbacks_acted_on_global_figures(job, references):
    """The learning-rate schedule and early stopping decided the same, on every rank, as one process."""
    reference = references(job[0], "sgd_momentum")
    assert len(reference["epochs"]) < 20 and reference["lr"] < 0.2  # both callbacks acted
    for result in _load(job[1], "sgd_momentum"):
        assert result["lr"] == reference["lr"]
        assert result["epochs"] == reference["epochs"]


def test_one_gradient_all_reduce_per_step_on_the_flat_buffer(job):
    backend, folder, _ = job
    for name in SCENARIOS:
        for result in _load(folder, name):
            steps = next(iter(result["steps"].values()))
            size = 0  # the flat buffer: each parameter's slice starts at a multiple of ALIGN_ELEMENTS
            for w in result.get("flat_weights", result["weights"]):  # a frozen layer is outside the buffer
                size = -(-size // ALIGN_ELEMENTS) * ALIGN_ELEMENTS + w.size
            if backend == "numpy":  # MPI on the host: the flat float64 gradient buffer, whole
                assert result["host_allreduces"] == [size] * steps
            else:  # NCCL between devices; nothing on the host
                assert result["host_allreduces"] == []
                assert result["nccl_allreduces"] + result.get("fit_replays", 0) == steps  # a replay: inside its graph


def test_each_rank_uses_the_device_of_its_local_rank(job):
    results = _load(job[1], "adam_split")
    ranks = len(results)
    assert [(r["rank"], r["size"], r["local_rank"]) for r in results] == [(k, ranks, k) for k in range(ranks)]
    if job[0] == "standin":
        assert [r["device"] for r in results] == list(range(ranks))


def test_model_files_are_written_once_by_rank_0(job):
    backend, folder, _ = job
    results = _load(folder, "sgd_momentum")
    assert len(results[0]["saves"]) >= 1 and all(not r["saves"] for r in results[1:])
    direct = _load(folder, "direct")
    assert [len(d["saves"]) for d in direct] == [1] + [0] * (len(direct) - 1)
    with fc.use_backend("numpy"):
        loaded = fc.load_model(folder / "direct.fcgpu")
    for a, b in zip(loaded.get_weights(), direct[0]["weights"]):
        assert np.array_equal(a, b)
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".pkl")) == ["best.fcgpu", "direct.fcgpu"]


def test_a_save_failing_on_rank_0_fails_on_every_rank(job):
    direct = _load(job[1], "direct")
    assert direct[0]["failed_save"].startswith("FileNotFoundError: ")
    for other in direct[1:]:
        assert other["failed_save"].startswith("RootFailed: model.save failed on rank 0: FileNotFoundError")


def test_mismatched_data_fails_on_every_rank(job):
    direct = _load(job[1], "direct")
    for d in direct:
        assert d["mismatch"] is not None
        assert "every rank must pass the same x" in d["mismatch"]
        assert f"rank{'s 1, 2' if len(direct) == 3 else ' 1'} of {len(direct)} differ" in d["mismatch"]


def test_an_optimizer_configured_differently_on_one_rank_fails_on_every_rank(job):
    for d in _load(job[1], "direct"):
        assert d["optimizer_mismatch"] is not None and "optimizer" in d["optimizer_mismatch"]


def test_train_step_with_another_batch_on_one_rank_fails_on_every_rank(job):
    for d in _load(job[1], "direct"):
        assert d["train_step_mismatch"] is not None and "every rank must pass the same x" in d["train_step_mismatch"]


def test_runtime_warnings_are_shown_by_rank_0_only(job):
    direct = _load(job[1], "direct")
    assert direct[0]["runtime_warnings"] >= 1
    assert all(d["runtime_warnings"] == 0 for d in direct[1:])


def test_only_rank_0_prints(job):
    out = job[2]
    assert out.count("Epoch 1/20 - ") == 1  # fit's verbose=2 line
    assert out.count("Epoch 1: val_loss improved") == 1  # ModelCheckpoint's message
    assert out.count("early stopping") == 1  # EarlyStopping's


def test_fcgpu_train_under_mpiexec_prints_once_and_saves_once(mpirun, tmp_path):
    pytest.importorskip("sklearn")
    saved = tmp_path / "digits.fcgpu"
    done = mpirun(RANKS, os.path.join(os.path.dirname(sys.executable), "fcgpu"), "train", "--backend", "numpy",
                  "--epochs", "2", "--no-progress", "--save", str(saved))
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("test accuracy:") == 1 and done.stdout.count("saved:") == 1
    assert f"data parallel: {RANKS} ranks (mpi" in done.stdout
    assert done.stdout.count("Epoch 2/2 - ") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["digits.fcgpu"]
    with fc.use_backend("numpy"):
        assert fc.load_model(saved).count_params() == 4810


def test_fcgpu_train_argument_errors_print_once_under_mpiexec(mpirun):
    done = mpirun(RANKS, os.path.join(os.path.dirname(sys.executable), "fcgpu"), "train", "--epochs", "-1")
    assert done.returncode != 0
    assert done.stderr.count("fcgpu train: error:") == 1, done.stderr


def test_a_loop_of_ones_own_with_the_all_reduce_optimizer_keeps_the_inner_config(job):
    """The explicit_wrapper scenario (compared with one process above) configures as its Adam."""
    for result in _load(job[1], "explicit_wrapper"):
        assert result["config"]["class_name"] == "Adam" and result["config"]["learning_rate"] == 0.02


def test_the_captured_step_replays_with_its_all_reduce_on_every_rank(job):
    backend, folder, _ = job
    for result in _load(folder, "captured"):
        # 3 epochs of 4 full batches, less the warm-up; NumPy has no graph mode
        assert result["fit_replays"] == (3 * 4 - 1 if backend == "standin" else 0)
