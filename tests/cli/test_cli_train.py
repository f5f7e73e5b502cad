"""`fcgpu train`: the main job on digits, Fashion-MNIST from a folder, and its error messages."""
from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.cli import main

from helpers import idx_bytes, make_fashion_dir


def test_train_on_digits_prints_backend_accuracy_and_time(capsys, tmp_path):
    pytest.importorskip("sklearn")
    saved = tmp_path / "digits.npz"
    assert main(["train", "--backend", "numpy", "--epochs", "30", "--seed", "0", "--save", str(saved)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("backend: numpy (requested)")
    assert "model: 64-64-10 (4,810 params)" in out
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95
    assert re.search(r"time per epoch: [0-9.]+ s on numpy", out)
    assert "Epoch 30/30" in err and "accuracy=" in err  # the progress bar
    model = fc.load_model(saved)
    assert model.count_params() == 4810


def test_train_under_a_mixed_precision_policy(capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "--backend", "numpy", "--epochs", "20", "--dtype", "mixed_float16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "model: 64-64-10 (4,810 params), mixed_float16" in out
    assert float(re.search(r"test accuracy: ([0-9.]+)", out).group(1)) >= 0.9


def test_train_fashion_mnist_from_a_folder(capsys, tmp_path):
    folder = make_fashion_dir(tmp_path / "fm", n_train=40, n_test=10)
    argv = ["train", "--dataset", "fashion-mnist", "--data-dir", str(folder), "--backend", "numpy"]
    assert main(argv + ["--epochs", "2", "--hidden", "16,8", "--batch-size", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data: fashion-mnist, 40 train / 10 test samples" in out
    assert "model: 784-16-8-10" in out and "Epoch 2/2 - " in out and "test accuracy:" in out


def test_train_without_fashion_mnist_says_how_to_get_it(capsys, tmp_path):
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err


def test_train_on_an_unusable_backend_fails_with_the_reason(capsys):
    if "cupy" in fc.available_backends():
        pytest.skip("a CUDA device is usable here")
    assert main(["train", "--backend", "cupy", "--epochs", "1"]) == 2
    assert "backend 'cupy' is not usable here" in capsys.readouterr().err


def test_train_is_reproducible(capsys):
    pytest.importorskip("sklearn")
    runs = []
    for _ in range(2):
        main(["train", "--backend", "numpy", "--epochs", "2", "--no-progress", "--seed", "3"])
        out = capsys.readouterr().out
        runs.append([line.split(" - ", 2)[2] for line in out.splitlines() if line.startswith("Epoch")])
    assert runs[0] == runs[1] and len(runs[0]) == 2


def test_unknown_dataset_is_refused():
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar"])


def test_module_entry_point_lists_train():
    parser_help = __import__("fcgpu.cli", fromlist=["build_parser"]).build_parser().format_help()
    assert "train" in parser_help and "info" in parser_help


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "argument --batch-size: expected an integer in [1, 16777216], got '0'"),
        (["--epochs", "-1"], "argument --epochs: expected an integer in [0, 1000000], got '-1'"),
        (["--epochs", "1e9"], "argument --epochs: expected an integer in [0, 1000000], got '1e9'"),
        (["--hidden", "a,b"], "argument --hidden: expected 1 to 64 integers in [1, 1048576] such as 256,128"),
        (["--hidden", "64,0"], "argument --hidden: expected 1 to 64 integers in [1, 1048576]"),
        (["--hidden", "64,"], "argument --hidden: expected 1 to 64 integers"),
        (["--lr", "-1"], "argument --lr: expected a finite number in (0, 1000], got '-1'"),
        (["--lr", "nan"], "argument --lr: expected a finite number in (0, 1000], got 'nan'"),
        (["--lr", "inf"], "argument --lr: expected a finite number in (0, 1000], got 'inf'"),
        (["--seed", str(2**64)], f"argument --seed: expected an integer in [0, 4294967295], got '{2**64}'"),
        (["--seed", "-1"], "argument --seed: expected an integer in [0, 4294967295], got '-1'"),
        (["--seed", "1" * 5000], "argument --seed: expected an integer in [0, 4294967295]"),
        (["--backend", "gpu"], "argument --backend: expected one of numpy, cupy, auto, got 'gpu'"),
    ],
)
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def fashion_argv(folder, *extra):
    return ["train", "--dataset", "fashion-mnist", "--data-dir", str(folder), "--epochs", "1", "--hidden", "4",
            "--no-progress", *extra]


def test_the_default_backend_comes_from_fcgpu_backend(capsys, tmp_path, monkeypatch):
    folder = make_fashion_dir(tmp_path / "fm", n_train=8, n_test=4)
    monkeypatch.setenv("FCGPU_BACKEND", "NumPy")
    assert main(fashion_argv(folder)) == 0
    assert capsys.readouterr().out.startswith("backend: numpy (requested, from FCGPU_BACKEND=numpy)")
    monkeypatch.setenv("FCGPU_BACKEND", "cupy")  # --backend wins over the variable
    assert main(fashion_argv(folder, "--backend", "numpy")) == 0
    assert capsys.readouterr().out.startswith("backend: numpy (requested)")
    monkeypatch.setenv("FCGPU_BACKEND", "gpu")
    assert main(fashion_argv(folder)) == 2
    assert capsys.readouterr().err == "fcgpu train: error: FCGPU_BACKEND: expected one of numpy, cupy, auto, got 'gpu'\n"


def test_data_dir_needs_fashion_mnist(capsys, tmp_path):
    assert main(["train", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "fcgpu train: error: --data-dir: only read with --dataset fashion-mnist, got --dataset digits\n"
    )


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/m.fcgpu", "--save: the folder '{tmp}/missing' of '{tmp}/missing/m.fcgpu' does not exist"),
        (".", "--save: expected a file name, but '{tmp}' is a folder"),
    ],
)
def test_the_save_path_is_checked_before_training(capsys, tmp_path, where, message):
    folder = make_fashion_dir(tmp_path / "fm", n_train=8, n_test=4)
    assert main(fashion_argv(folder, "--backend", "numpy", "--save", str(tmp_path / where))) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"fcgpu train: error: {message.format(tmp=tmp_path)}\n"


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 11, 3], np.uint8), "the test labels hold class 11: expected class ids in [0, 10)"),
        (np.array([0, 1, 2], np.uint8), "the test files in .* do not fit together: images (4, 28, 28), labels (3,)"),
        (np.zeros(4, ">i4"), None),
    ],
)
def test_all_data_is_checked_before_training(capsys, tmp_path, labels, message):
    folder = make_fashion_dir(tmp_path / "fm", n_train=8, n_test=4)
    code = {np.dtype("u1"): 8, np.dtype(">i4"): 0x0C}[labels.dtype]
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, code, labels.dtype.str)))
    result = main(fashion_argv(folder, "--backend", "numpy"))
    out, err = capsys.readouterr()
    if message is None:  # integer labels of a wider type are fine
        assert result == 0
        return
    assert result == 2 and "Epoch" not in out and "Epoch" not in err
    assert re.fullmatch(f"fcgpu train: error: .*{re.escape(message).replace(re.escape('.*'), '.*')}\n", err)


def test_a_model_too_big_for_memory_is_refused_before_building(capsys, tmp_path):
    folder = make_fashion_dir(tmp_path / "fm", n_train=8, n_test=4)
    assert main(fashion_argv(folder, "--backend", "numpy", "--hidden", "1048576,1048576")) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"fcgpu train: error: the model 784-1048576-1048576-10 needs about [0-9.]+ TiB of memory, "
                        r"but [0-9.]+ [KMGT]iB is available\n", err)


def test_a_diverged_run_is_not_saved_and_says_so_in_one_line(capsys, tmp_path):
    pytest.importorskip("sklearn")
    saved = tmp_path / "good.fcgpu"
    saved.write_bytes(b"the last good file")
    code = main(["train", "--backend", "numpy", "--epochs", "2", "--lr", "1000", "--dtype", "float16",
                 "--no-progress", "--save", str(saved)])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("fcgpu train: error:")]
    assert len(lines) == 1 and "not saved" in lines[0]
    assert "Traceback" not in err
    assert saved.read_bytes() == b"the last good file"


def test_mixed_bfloat16_without_ml_dtypes_names_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ml_dtypes", None)  # as if it were not installed
    assert main(["train", "--backend", "numpy", "--epochs", "1", "--dtype", "mixed_bfloat16", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install ml_dtypes" in err and "Traceback" not in err


def test_a_mixed_precision_run_that_diverged_is_not_saved_either(capsys, tmp_path):
    pytest.importorskip("sklearn")
    saved = tmp_path / "good.fcgpu"
    saved.write_bytes(b"the last good file")
    code = main(["train", "--backend", "numpy", "--epochs", "2", "--lr", "1000", "--dtype", "mixed_float16",
                 "--no-progress", "--save", str(saved)])
    err = capsys.readouterr().err
    assert code == 1 and saved.read_bytes() == b"the last good file"
    assert [line for line in err.splitlines() if "error" in line] == [
        line for line in err.splitlines() if line.startswith("fcgpu train: error: not saved: the loss was not finite")]


def test_a_diverging_run_warns_in_one_line(capsys, tmp_path):
    pytest.importorskip("sklearn")
    main(["train", "--backend", "numpy", "--epochs", "2", "--lr", "1000", "--dtype", "float16", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("fcgpu train: warning: fit: the loss was not finite")
