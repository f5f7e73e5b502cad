"""The worker protocol: each backend is measured in a process of its own (``python -m fcgpu.bench
--worker KIND``) that answers JSON-line requests on a pipe; ``WorkerClient`` is the runner's end.

A worker's first line is its hello (``ok``, the library's ``info`` and the OpenBLAS variables it
started with); each request names a case and the block's warm-up, budget and sample limits, and its
answer holds the seconds of every timed call.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from typing import Any

from .config import OPENBLAS_VARS
from .timers import calibrate
from .workloads import make_worker

__all__ = ["WorkerClient", "worker_env", "worker_main"]

# The folder holding the fcgpu package this module belongs to: first on the workers' import path.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_main(kind: str) -> int:
    """Serve measurement requests (JSON lines on stdin, answers on the original stdout)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else a library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        worker = make_worker(kind)
        send({"ok": True, "info": worker.info(), "env": {k: os.environ.get(k) for k in OPENBLAS_VARS}})
    except Exception as e:
        send({"ok": False, "reason": f"{type(e).__name__}: {e}"})
        return 0
    cache: dict[str, Any] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            key = json.dumps({k: v for k, v in req.items() if k not in ("samples", "budget", "warmup", "min_samples",
                                                                            "max_samples")}, sort_keys=True)
            if cache.get("key") != key:
                cache.clear()
                gc.collect()
                if req["cmd"] == "case":
                    ops = worker.case(req["batch"], req["in"], req["out"], req["activation"], req["dtype"], req["ops"])
                elif req["cmd"] == "graphs":
                    ops = worker.graphs_case(req["widths"], req["batch"], req["dtype"])
                else:
                    ops = worker.model_case(req["widths"], req["batch"], req["dtype"])
                cache.update(key=key, ops=ops)
            ops = cache["ops"]
            warm = worker.timer.warm(ops, req["warmup"], req["budget"])
            samples = calibrate(warm, req["budget"], req["min_samples"], req["max_samples"])
            send({"ok": True, "times": worker.timer.measure(ops, samples)})
        except Exception as e:
            import traceback

            traceback.print_exc()
            send({"ok": False, "reason": f"{type(e).__name__}: {e}"})
    return 0


class WorkerClient:
    """One worker process and its request/answer pipe."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fcgpu.bench", "--worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"ok": False, "reason": f"the worker exited with status {code}"}
        return json.loads(line)

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "reason": "the worker is gone"}
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def worker_env(unset_openblas: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: ``base`` (default: this process's), with the OpenBLAS core-type
    variables removed if asked, and this fcgpu first on the import path."""
    env = dict(os.environ if base is None else base)
    if unset_openblas:
        for k in OPENBLAS_VARS:
            env.pop(k, None)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
