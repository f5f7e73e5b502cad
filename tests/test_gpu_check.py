"""tools/gpu_check.py: the one command for the first GPU machine writes its report whatever runs."""
from __future__ import annotations

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_every_step_and_writes_one_report(tmp_path, monkeypatch):
    check = _load("gpu_check")
    commands = []

    def fake_step(name, argv, out, timeout, env=None):
        commands.append((name, argv, timeout, env))
        return {"step": name, "command": " ".join(argv), "status": "passed", "seconds": 0.0, "tail": "", "log": ""}

    monkeypatch.setattr(check, "run_step", fake_step)
    monkeypatch.setattr(check, "device_count", lambda: 2)
    monkeypatch.setattr(check.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert check.main(["--out", str(tmp_path)]) == 0
    names = [c[0] for c in commands]
    assert names == ["nvidia-smi", "pytest-gpu", "nccl-2-ranks", "bench", "sanitizer-racecheck", "sanitizer-synccheck",
                     "sanitizer-memcheck"]
    assert "-m" in commands[1][1] and "gpu" in commands[1][1]
    assert commands[2][1][1:3] == ["-n", "2"] and commands[2][3] == {"FCGPU_BACKEND": "cupy"}
    assert "cupy,torch" in commands[3][1] and "--json" in commands[3][1] and "--graphs" in commands[3][1]
    assert sum(c[2] for c in commands) < 600  # the steps' limits: under 10 minutes in all
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["step"] for s in report["steps"]] == names and (tmp_path / "report.md").exists()


def test_gpu_check_without_a_gpu_fails_and_says_so(tmp_path, monkeypatch):
    check = _load("gpu_check")
    monkeypatch.setattr(check, "device_count", lambda: 0)
    monkeypatch.setattr(check.shutil, "which", lambda name: None)
    monkeypatch.setattr(check, "run_step", lambda name, argv, out, timeout, env=None: {
        "step": name, "command": "", "status": "failed (exit 1)", "seconds": 0.0, "tail": "", "log": ""})
    assert check.main(["--out", str(tmp_path), "--quick"]) == 1
    text = (tmp_path / "report.md").read_text()
    assert "nccl-1-ranks" in text and "compute-sanitizer not found" in text


def test_the_gpu_scripts_run_on_the_stand_in(tmp_path):
    import subprocess
    import sys

    for script, args in (("gpu_kernel_run.py", []), ("gpu_dp_check.py", [str(tmp_path)])):
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / script), *args, "--stand-in"], capture_output=True,
                              text=True, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "dp.rank0.json").read_text())["size"] == 1
