"""The real-CuPy tier: the shipped code and the stand-in held to CuPy 14.2 itself, without a GPU.

The ``verify`` extra installs ``cupy-cuda13x``, which imports without a driver: everything up to
the first device call can be checked against it. Each check runs in a fresh interpreter where
the state of ``sys.modules`` matters (a submodule imported once is an attribute from then on).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="the real-CuPy tier needs CuPy installed (the 'verify' extra)")


def run_fresh(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FCGPU_BACKEND"}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_nccl_is_a_submodule_that_import_cupy_does_not_load():
    # The crash of issue 18 (1): self.cp.cuda.nccl after a plain import cupy.
    out = run_fresh(
        """
        import cupy
        from fcgpu.testing import fake_cupy
        print(hasattr(cupy.cuda, "nccl"), hasattr(fake_cupy.cuda, "nccl"))
        from fcgpu.backends.cupy_backend import CupyBackend
        for module in (cupy, fake_cupy):
            nccl = CupyBackend(module).nccl_module()
            print(nccl is module.cuda.nccl, hasattr(nccl, "NcclCommunicator") or not nccl.available)
        """
    )
    assert out.split() == ["False", "False", "True", "True", "True", "True"]


class _Buffer:
    """A contiguous float32 device buffer as far as the backend looks before NCCL takes it."""

    dtype = np.dtype(np.float32)
    size = 6
    strides = (4,)

    class flags:  # noqa: N801 - the attribute CuPy arrays have
        c_contiguous = True

    __cuda_array_interface__ = {"data": (0x7F0000000000, False)}


def test_allreduce_on_real_cupy_reaches_nccl_with_cupys_constants(monkeypatch):
    """allreduce_sum and broadcast on the real module, up to the NCCL call (a recorder stands in for
    the communicator, whose construction needs a device)."""
    from fcgpu.backends.cupy_backend import CupyBackend

    backend = CupyBackend(cupy)
    nccl = backend.nccl_module()
    calls = []

    class Recorder:
        def allReduce(self, *args):  # noqa: N802 - NCCL's name
            calls.append(("allReduce", args))

        def broadcast(self, *args):
            calls.append(("broadcast", args))

    class Comm:
        rank, size = 0, 1
        attachments = {("nccl", id(backend)): Recorder()}

    monkeypatch.setattr(backend, "_stream", lambda: 0)  # the current stream needs a driver
    backend.allreduce_sum(_Buffer(), Comm())
    backend.broadcast(_Buffer(), Comm())
    if nccl.available:  # with libnccl (nvidia-nccl-cu13) the real constants
        assert calls == [
            ("allReduce", (0x7F0000000000, 0x7F0000000000, 6, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)),
            ("broadcast", (0x7F0000000000, 0x7F0000000000, 6, nccl.NCCL_FLOAT32, 0, 0)),
        ]
