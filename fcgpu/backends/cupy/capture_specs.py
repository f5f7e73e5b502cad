"""The kernels of the captured training step (``kernels/graphs.cuh``), declared like ``kernel_specs``'s.

``capture_specs(specs)`` gives, from the backend's own specs: the GEMM of the captured path
(``fcgpu_gemm_capture``, one thread an output element; cuBLAS refuses stream capture), the batch
gather and the step's first and last kernels, the dropout kernels with their Philox step offset by
the device counter (``<name>_dev``: step + ctr[0]), and the optimizer updates with the learning rate
read from the device step scalars (``<name>_glr`` and ``<name>_glr_mixed``: the guarded update, whose
scale, skip and bias corrections are read from the same array, with lr from ``gs[FC_GS_LR]``).
``kernel_specs.KERNEL_SPECS`` includes them, so the compile gate covers them.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["DROPOUT_KERNELS", "GLR_UPDATES", "capture_specs"]

# Kernels whose Philox step comes from the device counter in the captured step.
DROPOUT_KERNELS = ("fcgpu_dropout",)
# The updates with a learning rate from the device (their guarded variants reworked).
GLR_UPDATES = ("fcgpu_sgd", "fcgpu_sgd_momentum", "fcgpu_adam")
_DEVICE_LR = "gs[FC_GS_LR]"


def _dev(spec: Any, cls: Any) -> Any:
    ins = spec.in_params.replace("uint64 step,", "uint64 step, raw int64 ctr,")
    op = re.sub(r"\bstep\b", "(step + (unsigned long long)ctr[FC_CTR_STEPS])", spec.operation)
    return cls(spec.name + "_dev", ins, spec.out_params, op)


def _glr(guarded: Any, base: str, cls: Any) -> Any:
    """The guarded update ``guarded`` with lr (and Adam's decay 1 - lr wd) from the device, ls -> gs."""
    ins = guarded.in_params.replace("float64 lr, ", "").replace("float64 decay, ", "").replace("raw float64 ls", "raw float64 gs")
    op = re.sub(r"\bls\[", "gs[", guarded.operation)
    op = re.sub(r"\blr\b", _DEVICE_LR, op)
    op = re.sub(r"\bdecay\b", f"(1.0 - {_DEVICE_LR} * wd)", op)
    suffix = guarded.name[len(base) + len("_guarded"):]
    return cls(base + "_glr" + suffix, ins, guarded.out_params, op)


def capture_specs(specs: dict[str, Any], cls: Any) -> list[Any]:
    """The captured step's kernels (``cls``: ``KernelSpec``), some derived from ``specs``."""
    out = [
        cls("fcgpu_gemm_capture", "raw T a, raw T b, int64 n, int64 k, int64 sa0, int64 sa1, int64 sb0, int64 sb1",
            "raw O c",
            "c[i] = O(fc_gemm_element<typename fc_acc<T>::type>(&a[0], &b[0], i / n, i % n, k, sa0, sa1, sb0, sb1))"),
        cls("fcgpu_gather_rows", "raw S src, raw int64 perm, raw int64 ctr, int64 batch, int64 cols", "raw D dst",
            "dst[i] = D(src[fc_gather_index(&perm[0], &ctr[0], batch, cols, i)])"),
        cls("fcgpu_graph_step_begin",
            "raw int64 ctr, raw float64 lrs, int64 nlr, int64 it_base, int64 it_fit, int64 t_base, float64 beta1, "
            "float64 beta2", "raw float64 gs",
            "fc_graph_step_begin(&ctr[0], &lrs[0], nlr, it_base, it_fit, t_base, beta1, beta2, &gs[0])"),
        cls("fcgpu_graph_step_end", "int64 steps", "raw float64 sums, raw int64 ctr, raw float64 acc",
            "fc_graph_step_end(&acc[0], steps, &sums[0], &ctr[0])"),
    ]
    for name, spec in specs.items():
        if name in DROPOUT_KERNELS or re.fullmatch(r"fcgpu_(bias_)?\w+_dropout_(fwd|bwd)", name):
            out.append(_dev(spec, cls))
    for base in GLR_UPDATES:
        for suffix in ("_guarded", "_guarded_mixed"):
            out.append(_glr(specs[base + suffix], base, cls))
    return out
