"""A Dense's compositions of backend operations, which a backend may run as one kernel each.

``DenseOps`` is a base of ``Backend``. Each method here is the composition of the backend's own
operations (``matmul`` and friends, ``bias_act_forward``, ``act_backward``...), which every backend
runs as it is; a backend with GEMM epilogues (``gemm_epilogues``: the CuPy backend in graph mode on
real CuPy, ``backends/cupy/capture_ops.py``) overrides them with one launch of its own GEMM kernels.
``Dense`` calls ``dense_affine``, ``dense_affine_dropout`` and ``dense_input_grad`` only where
``gemm_epilogues`` is set (an attribute: no call on the other backends); its ``weight_grads`` is
``Backend``'s (called every step, on every backend). Shapes: x (B, M), kernel (M, N), bias (N,), y, z, dz (B, N), dx (B, M).
"""
from __future__ import annotations

from typing import Any

Array = Any


class DenseOps:
    """A Dense's forward, input gradient and parameter gradients as compositions (see the module docstring)."""

    #: Whether a Dense's forward runs as one ``dense_affine`` launch (the CuPy backend in graph mode
    #: with its own GEMMs: bias and activation in the GEMM's epilogue) rather than matmul + bias_act.
    gemm_epilogues = False
    matmul: Any
    matmul_a_bt: Any
    bias_act_forward: Any
    bias_act_dropout_forward: Any
    act_backward: Any
    act_dropout_backward: Any

    def dense_affine(self, x: Array, kernel: Array, bias: Array | None, activation: str, out: Array,
                     keep: Array | None = None) -> Array:
        """out (B, N) = act(x (B, M) @ kernel (M, N) + bias (N,)), and keep (B, N) = x @ kernel + bias
        where given (an activation whose backward reads z), where ``gemm_epilogues`` says so."""
        if keep is not None:
            self.matmul(x, kernel, out=keep)
            return self.bias_act_forward(keep, bias, activation, out=out, keep=keep)
        self.matmul(x, kernel, out=out)
        if bias is None and activation == "linear":  # no kernel that copies y onto itself
            return out
        return self.bias_act_forward(out, bias, activation, out=out)

    def dense_affine_dropout(self, x: Array, kernel: Array, bias: Array | None, activation: str, out: Array,
                             dropped: Array, seed: int, step: int, rate: float, offset: int) -> Array:
        """out (B, N) = act(x @ kernel + bias), kept for backward, and dropped (B, N) = Dropout(out)
        (``bias_act_dropout_forward``'s mask), where ``gemm_epilogues`` says so; returns dropped."""
        self.matmul(x, kernel, out=out)
        return self.bias_act_dropout_forward(out, bias, activation, out, dropped, seed, step, rate, offset)

    def dense_input_grad(self, dz: Array, kernel: Array, out: Array, activation: str, kept: Array,
                         dropout: tuple | None) -> Array:
        """out (B, M) = the previous Dense's dz from this one's dz (B, N): dz @ kernel.T, then that
        layer's Dropout backward (``dropout``: its (seed, step, rate, offset), or None) and act'
        (``kept``: its y, or z where its activation's backward reads z), where ``gemm_epilogues``."""
        self.matmul_a_bt(dz, kernel, out=out)
        if dropout is not None:
            return self.act_dropout_backward(kept, out, activation, out, *dropout)
        return self.act_backward(kept, out, activation, out=out)

    def fuses_chain(self, widths: Any, activations: Any, dtype: Any) -> bool:
        """Whether the forward of a chain of Dense layers (``widths``: the input's, then each
        layer's; their ``activations``) runs here as one kernel (``fused_chain_forward``)."""
        return False

    def fused_chain_forward(self, x: Array, weights: Any, biases: Any, activations: Any, out: Array,
                            keep: Any) -> Array:
        """out (B, N_L) = a chain's forward of x (B, N_0), layer i's y and z + b written into
        ``keep[i]`` (a (y, z) pair, either None; the last y is ``out``): one launch where
        ``fuses_chain``, else layer by layer (``dense_affine``)."""
        h = x
        for i, (kernel, bias, activation, (y, z)) in enumerate(zip(weights, biases, activations, keep)):
            h = self.dense_affine(h, kernel, bias, activation, out if i == len(weights) - 1 else y, z)
        return out
