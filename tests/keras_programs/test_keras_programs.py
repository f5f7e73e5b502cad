"""Each Keras program, run on Keras 3 (torch backend) and on fcgpu with only its imports changed,
shows a user the same things: history keys, what evaluate returns, parameter counts, hooks and
their logs, and, where a program fixes the initial weights in float64, the same numbers.

RESULT keys say how they are compared: 'approx_*' within 0.05 (accuracy after training with
different random streams), 'close_*' to 1e-6 relative (same initial weights, float64; Keras keeps its learning rate
in a float32 variable, so updates differ in the 8th digit), the rest
exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
PROGRAMS = sorted(p.name for p in HERE.glob("prog_*.py"))


def run(program: str, library: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(HERE), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(HERE / "run_program.py"), str(HERE / program), library],
                          capture_output=True, text=True, env=env, timeout=600, cwd=HERE)
    assert done.returncode == 0, f"{program} on {library}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("program", PROGRAMS)
def test_program_gives_what_keras_gives(program):
    pytest.importorskip("keras")
    pytest.importorskip("torch")
    theirs, ours = run(program, "keras"), run(program, "fcgpu")
    assert sorted(ours) == sorted(theirs)
    for key, want in theirs.items():
        got = ours[key]
        if key.startswith("approx_"):
            assert got == pytest.approx(want, abs=0.05), key
        elif key.startswith("close_"):
            np.testing.assert_allclose(np.concatenate([np.ravel(g) for g in got]) if isinstance(got[0], list) else got,
                                       np.concatenate([np.ravel(w) for w in want]) if isinstance(want[0], list) else want,
                                       rtol=1e-6, atol=1e-7, err_msg=key)
        else:
            assert got == want, key
