"""One command for the first GPU machine: everything that only a real GPU can check, in one report.

    python tools/gpu_check.py [--out gpu-check] [--quick]

Steps, each with its own time limit (under 10 minutes in all: 590 s), each recorded with its
status, duration and the tail of its output, whatever the others did:

1. ``pytest -m gpu``: the GPU-marked tests (device kernels against the NumPy backend, with the
   GPU tolerances).
2. Data parallel over NCCL: ``mpiexec -n 2 tools/gpu_dp_check.py`` where two devices exist (one
   rank otherwise): a few epochs, the ranks' weights compared bit for bit.
3. ``fcgpu bench --backends cupy,torch --quick --graphs --json``: timings against PyTorch on the
   device, and a training step of 784-512-10 inside fit with CUDA graphs off and on, against
   PyTorch eager and ``torch.compile(mode="reduce-overhead")`` (the model of that comparison is in
   benchmarks/RESULTS.md, "A captured step").
4. compute-sanitizer (where installed): racecheck, synccheck and memcheck on
   ``tools/gpu_kernel_run.py``, which launches every block-level kernel and one training step.

The report: ``OUT/report.json`` and ``OUT/report.md`` (plus each step's full log). Exit status 0
only when every step that ran passed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no CuPy, no driver: the steps below record why
        return 0


def run_step(name: str, argv: list[str], out: Path, timeout: int, env: dict | None = None) -> dict:
    log = out / f"{name}.log"
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        status, text = ("passed" if proc.returncode == 0 else f"failed (exit {proc.returncode})"), proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = f"timed out after {timeout} s"
        text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    except FileNotFoundError as e:
        status, text = f"not run ({e})", ""
    log.write_text(text)
    lines = text.strip().splitlines()
    return {"step": name, "command": " ".join(argv), "status": status, "seconds": round(time.monotonic() - start, 1),
            "tail": "\n".join(lines[-15:]), "log": log.name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu-check", help="folder of the report (default gpu-check)")
    parser.add_argument("--quick", action="store_true", help="skip the benchmark")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    devices = device_count()
    steps = []
    machine = run_step("nvidia-smi", ["nvidia-smi"], out, 10)
    steps.append(machine)
    steps.append(run_step("pytest-gpu", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"], out, 200))
    ranks = 2 if devices >= 2 else 1
    mpiexec = shutil.which("mpiexec") or str(Path(py).parent / "mpiexec")
    steps.append(run_step(f"nccl-{ranks}-ranks", [mpiexec, "-n", str(ranks), py, "tools/gpu_dp_check.py", str(out)],
                          out, 90, env={"FCGPU_BACKEND": "cupy"}))
    if not args.quick:
        steps.append(run_step("bench", [py, "-m", "fcgpu", "bench", "--backends", "cupy,torch", "--quick", "--graphs",
                                         "--json", str(out / "bench.json")], out, 140))
    sanitizer = shutil.which("compute-sanitizer") or next(
        (str(p) for p in Path("/usr/local").glob("cuda*/bin/compute-sanitizer") if p.exists()), None)
    for tool, limit in (("racecheck", 60), ("synccheck", 45), ("memcheck", 45)):
        if sanitizer is None:
            steps.append({"step": f"compute-sanitizer {tool}", "status": "not run (compute-sanitizer not found)",
                          "seconds": 0, "tail": "", "command": ""})
            continue
        steps.append(run_step(f"sanitizer-{tool}", [sanitizer, "--tool", tool, "--error-exitcode", "3", py,
                                                   "tools/gpu_kernel_run.py"], out, limit))
    report = {"devices": devices, "steps": steps}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = ["# fcgpu GPU check", "", f"Devices seen by CuPy: {devices}", "", "| step | status | seconds |",
             "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps]
    for s in steps:
        lines += ["", f"## {s['step']}", "", f"`{s['command']}`", "", "```", s["tail"], "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6 + len(steps)]))
    print(f"report: {out / 'report.md'}")
    ran = [s for s in steps if not s["status"].startswith("not run") and s["step"] != "nvidia-smi"]
    return 0 if ran and all(s["status"] == "passed" for s in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
