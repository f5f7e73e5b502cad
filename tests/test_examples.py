"""The examples run as users run them, and reach what they claim."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "FCGPU_BACKEND": "numpy", "PYTHONPATH": str(EXAMPLES.parent)}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_keras_mlp_program_runs_with_only_its_imports_changed(tmp_path):
    pytest.importorskip("sklearn")
    source = (EXAMPLES / "keras_mlp.py").read_text()
    # Its body uses only Keras's names: no 'fc.' / 'fcgpu.' outside the two import lines and the loader.
    body = source.split("# ---- from here on: the Keras program")[1]
    assert not re.search(r"\bfc\.|fcgpu\.", body)
    out = _run("keras_mlp.py", "digits", cwd=tmp_path)
    accuracy = float(re.search(r"'accuracy': ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95, out  # Keras 3 (torch backend) reaches 0.97 with this program
    assert (tmp_path / "best_mlp.keras").is_file()
    assert "dropout (Dropout)" in out and "Total params: 26,122" in out
    # ModelCheckpoint("best_mlp.keras") wrote Keras's own archive: Keras itself loads it
    if importlib.util.find_spec("keras") and importlib.util.find_spec("h5py"):
        import keras

        assert keras.models.load_model(tmp_path / "best_mlp.keras").count_params() == 26_122


def test_the_keras_mlp_on_fashion_mnist_when_its_files_are_here(tmp_path):
    from fcgpu.utils import datasets as data

    if not Path(data.DEFAULT_FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST's IDX files are not in {data.DEFAULT_FASHION_MNIST_DIR}")
    out = _run("keras_mlp.py", "fashion-mnist", cwd=tmp_path)
    assert float(re.search(r"'accuracy': ([0-9.]+)", out).group(1)) >= 0.85, out
