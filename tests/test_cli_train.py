"""`fcgpu train`: the main job on digits, Fashion-MNIST from a folder, and its error messages."""
from __future__ import annotations

import re

import pytest

import fcgpu as fc
from fcgpu.cli import main

from helpers import make_fashion_dir


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
        (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
        (["--epochs", "-1"], "argument --epochs: expected a non-negative integer, got '-1'"),
        (["--hidden", "a,b"], "argument --hidden: expected comma-separated positive integers"),
        (["--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    ],
)
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
