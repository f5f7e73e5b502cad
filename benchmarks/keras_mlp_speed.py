"""The Keras MLP program of examples/keras_mlp.py on Keras 3 (torch backend) and on fcgpu, timed
side by side in one run: the same source, only its two import lines differ between the two.

    python benchmarks/keras_mlp_speed.py --keras-python /path/to/python-with-keras-and-torch

Each round runs the program once on each library (in alternating order), in fresh processes on
the CPU; the figure is fit's seconds per epoch (the programs stop early at different epochs).
Keras is not a dependency of fcgpu: give a Python where ``import keras`` works (KERAS_BACKEND is
set to torch here).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "examples" / "keras_mlp.py"


def keras_source() -> str:
    """examples/keras_mlp.py with Keras's own import lines back."""
    source = PROGRAM.read_text()
    source = source.replace("import fcgpu as keras  # the Keras program's `import keras`", "import keras")
    source = source.replace("from fcgpu import layers  # the Keras program's `from keras import layers`",
                            "from keras import layers")
    source = source.replace("        from fcgpu.utils import datasets as data\n\n        return data.load_fashion_mnist()",
                            "        raise SystemExit('fashion-mnist: this side runs digits only')")
    assert "fcgpu" not in source.split('"""', 2)[2], "the Keras variant must not use fcgpu"
    return source


def run(python: str, script: Path, env: dict[str, str], cwd: str) -> dict[str, float]:
    done = subprocess.run([python, str(script), "digits"], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{script.name} failed:\n{done.stderr[-2000:]}")
    m = re.search(r"epochs (\d+) seconds ([0-9.]+) test .*'accuracy': ([0-9.]+)", done.stdout)
    epochs, seconds, accuracy = int(m.group(1)), float(m.group(2)), float(m.group(3))
    return {"epochs": epochs, "seconds": seconds, "per_epoch": seconds / epochs, "accuracy": accuracy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras-python", required=True, help="a Python where keras (3) and torch import")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keras_script = Path(tmp) / "keras_mlp_keras.py"
        keras_script.write_text(keras_source())
        base = {k: v for k, v in os.environ.items() if not k.startswith(("FCGPU_", "KERAS_"))}
        env_keras = {**base, "KERAS_BACKEND": "torch"}
        env_fcgpu = {**base, "FCGPU_BACKEND": "numpy", "PYTHONPATH": str(ROOT)}
        results: dict[str, list[dict[str, float]]] = {"keras-torch": [], "fcgpu-numpy": []}
        for r in range(args.rounds):
            order = [("keras-torch", args.keras_python, keras_script, env_keras),
                     ("fcgpu-numpy", sys.executable, PROGRAM, env_fcgpu)]
            for name, python, script, env in (order if r % 2 == 0 else order[::-1]):
                results[name].append(run(python, script, env, tmp))
                print(name, results[name][-1], flush=True)
    summary = {name: {"median_seconds_per_epoch": statistics.median(x["per_epoch"] for x in runs),
                      "accuracy": [x["accuracy"] for x in runs], "epochs": [x["epochs"] for x in runs]}
               for name, runs in results.items()}
    ratio = summary["keras-torch"]["median_seconds_per_epoch"] / summary["fcgpu-numpy"]["median_seconds_per_epoch"]
    print(f"per epoch: keras-torch {summary['keras-torch']['median_seconds_per_epoch']:.4f} s, fcgpu-numpy "
          f"{summary['fcgpu-numpy']['median_seconds_per_epoch']:.4f} s: fcgpu {ratio:.1f}x faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": results, "summary": summary, "speedup": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
