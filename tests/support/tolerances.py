"""The kernel checks' ulp budgets: how far each activation's kernel may be from its NumPy host formula.

Each entry: (host budget, GPU budget). Host: g++ with IEEE rounding, no FMA, glibc math; GPU:
-ftz=true, fused multiply-adds, device expf/tanhf.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UlpBudget:
    """How far a kernel may be from the NumPy entry: ulp of the forward and of the backward result;
    ``backward_dy_eps`` adds an absolute slack of that many eps * |dy| to the backward (for a
    ``rows`` entry eps * y * the row's largest |dy|), where a sum cancels: a fused multiply-add
    without the intermediate rounding NumPy does, two math libraries' last bits, a row's dot product."""

    forward: int
    backward: int
    backward_dy_eps: float = 0.0


ACTIVATION_ULP: dict[str, tuple[UlpBudget, UlpBudget]] = {
    "linear": (UlpBudget(0, 0), UlpBudget(0, 0)),
    "relu": (UlpBudget(0, 0), UlpBudget(0, 0)),
    "sigmoid": (UlpBudget(4, 2), UlpBudget(6, 3)),
    "tanh": (UlpBudget(2, 1), UlpBudget(4, 2, backward_dy_eps=2.0)),
    "leaky_relu": (UlpBudget(0, 0), UlpBudget(0, 0)),
    "elu": (UlpBudget(3, 1), UlpBudget(4, 2)),
    "selu": (UlpBudget(3, 1), UlpBudget(4, 2)),
    "softplus": (UlpBudget(4, 4), UlpBudget(8, 8)),
    "softsign": (UlpBudget(0, 0), UlpBudget(1, 1)),
    "silu": (UlpBudget(5, 6, backward_dy_eps=2.0), UlpBudget(8, 8, backward_dy_eps=4.0)),
    "gelu": (UlpBudget(4, 4, backward_dy_eps=2.0), UlpBudget(8, 8, backward_dy_eps=4.0)),
    "gelu_approximate": (UlpBudget(4, 4, backward_dy_eps=2.0), UlpBudget(8, 8, backward_dy_eps=4.0)),
    "softmax": (UlpBudget(12, 2, backward_dy_eps=4.0), UlpBudget(16, 4, backward_dy_eps=8.0)),
}
