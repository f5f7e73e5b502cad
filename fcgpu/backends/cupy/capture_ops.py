"""The CuPy backend in graph mode: what a training step captured as a CUDA graph launches instead.

A base of ``CupyBackend`` (which supplies ``kernel(name)`` and calls ``graph_*`` from its own GEMM and
dropout methods while graph mode is on). Inside ``with backend.graph_mode(scalars):`` every launch of
a step is the same from one step to the next, whatever the step: what changes is read from the
device arrays of ``GraphScalars`` (``kernels/graphs.cuh``):

- GEMMs go through ``gemm_for_capture()`` (CuPy refuses cuBLAS during stream capture): fcgpu's own
  tiled GEMMs (``gemm.GemmLauncher``) on real CuPy, else (the stand-in has no RawModule; float64)
  ``capture_gemm``, one ElementwiseKernel thread an output element (``fcgpu_gemm_capture``).
- Dropout's Philox step is the step given plus the device counter ``ctr[0]`` (``<kernel>_dev``).
- SGD and Adam (not guarded by a loss scaler) read the learning rate and Adam's bias corrections
  from ``gs``, which ``graph_begin`` fills from the counter (``<update>_glr``); a loss scaler's
  guarded updates are left as they are (their device state already decides the step).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

from .gemm import DTYPES as OWN_GEMM_DTYPES
from .gemm import GemmDropout, fused_activations
from .gemm_splitk import splitk_plan, splitk_workspace_shape

FUSED_ACTIVATIONS = frozenset(fused_activations())  # the activations the own GEMM's epilogue applies

Array = Any

__all__ = ["CTR_SIZE", "GS_SIZE", "CaptureOps", "GraphScalars"]

GS_SIZE = 9  # kernels/graphs.cuh: FC_GS_SIZE
CTR_SIZE = 2  # ctr[0]: steps since the scalars' bases were taken; ctr[1]: the batch in the epoch


class GraphScalars:
    """The device arrays a graph-mode step reads: ``ctr`` (int64: steps since the bases, batch in
    the epoch) and ``gs`` (float64: the guarded updates' state layout, then the learning rate)."""

    def __init__(self, backend: Any) -> None:
        self.ctr = backend.zeros((CTR_SIZE,), np.int64)
        self.gs = backend.zeros((GS_SIZE,), np.float64)


class CaptureOps:
    """Graph mode of the CuPy backend: ``graph_mode``, the capture GEMM hook and the step kernels."""

    kernel: Any
    _graph_step: GraphScalars | None = None

    def graph_scalars(self) -> GraphScalars:
        """New device step scalars (a counter at zero) for ``graph_mode``."""
        return GraphScalars(self)

    @contextlib.contextmanager
    def graph_mode(self, scalars: GraphScalars) -> Iterator[None]:
        """The block's steps launch the graph-mode kernels, reading ``scalars``."""
        previous, self._graph_step = self._graph_step, scalars
        epilogues, self.gemm_epilogues = self.gemm_epilogues, self.own_capture_gemms
        try:
            yield
        finally:
            self._graph_step, self.gemm_epilogues = previous, epilogues

    def capture_graph(self, body: Callable[[], None]) -> Any:
        """``body()`` captured as a ``cupy.cuda.Graph`` on a non-default stream of its own (CuPy
        refuses capture on the default one); the graph's ``launch()`` replays it on the current stream."""
        stream = self.cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                body()
            finally:
                graph = stream.end_capture()
        return graph

    # -- GEMMs -----------------------------------------------------------------------------------
    def gemm_for_capture(self) -> Callable[..., Array]:
        """The GEMM the captured step uses: ``gemm(a, b, out, trans_a=False, trans_b=False)``, out =
        op(a) @ op(b) for C-contiguous a, b, out (op: transposed where asked), no cuBLAS: fcgpu's own
        tiled GEMMs (``own_gemm``, RawModules) where the CuPy module has ``RawModule`` (real CuPy;
        not the stand-in), else the one-thread-an-element ``capture_gemm``."""
        return self.own_capture_gemm if self.own_capture_gemms else self.capture_gemm

    has_graph_mode = True

    @property
    def own_capture_gemms(self) -> bool:
        """Whether the CuPy module has ``RawModule`` (real CuPy; the stand-in has not), so the
        captured step's GEMMs are fcgpu's own tiled kernels."""
        return hasattr(self.cp, "RawModule")

    def own_capture_gemm(self, a: Array, b: Array, out: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
        """``capture_gemm``'s three products through ``own_gemm`` (its dtypes: float32 and half types,
        float32 weight gradients of half operands); other dtypes through ``capture_gemm``."""
        launcher = self.own_gemm  # type: ignore[attr-defined]
        same = a.dtype == b.dtype == out.dtype
        if a.dtype in OWN_GEMM_DTYPES and not (trans_a and trans_b):
            if trans_a and a.dtype == b.dtype and (same or out.dtype == np.float32):
                return launcher.weight_grad(a, b, out)
            if trans_b and same:
                return launcher.input_grad(a, b, out)
            if not trans_a and not trans_b and same:
                return launcher.dense_forward(a, b, None, "linear", out)
        return self.capture_gemm(a, b, out, trans_a, trans_b)

    def capture_gemm(self, a: Array, b: Array, out: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
        for name, x in (("a", a), ("b", b), ("out", out)):
            if x.ndim != 2 or not x.flags.c_contiguous:
                raise ValueError(f"capture_gemm: {name} must be a C-contiguous matrix, got shape {x.shape}")
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if kb != k or out.shape != (m, n):
            raise ValueError(f"capture_gemm: {a.shape}{'.T' * trans_a} @ {b.shape}{'.T' * trans_b} into {out.shape}")
        sa0, sa1 = (1, a.shape[1]) if trans_a else (a.shape[1], 1)
        sb0, sb1 = (1, b.shape[1]) if trans_b else (b.shape[1], 1)
        self.kernel("fcgpu_gemm_capture")(a, b, n, k, sa0, sa1, sb0, sb1, out, size=m * n)
        return out

    def _epilogue_dropout(self, seed: int, step: int, rate: float, offset: int) -> GemmDropout:
        """A Dropout's key for a GEMM epilogue in graph mode: its step plus the device counter ctr[0]."""
        return GemmDropout(seed, step, self._graph_step.ctr, offset, rate)

    def dense_affine(self, x: Array, kernel: Array, bias: Array | None, activation: str, out: Array,
                     keep: Array | None = None) -> Array:
        """In graph mode with own GEMMs (``gemm_epilogues``): one launch, the bias and activation in
        the GEMM's epilogue (``GemmLauncher.dense_forward``); else matmul, then bias + activation."""
        if self.gemm_epilogues and x.dtype in OWN_GEMM_DTYPES and activation in FUSED_ACTIVATIONS:
            return self.own_gemm.dense_forward(x, kernel, bias, activation, out, keep)  # type: ignore[attr-defined]
        return super().dense_affine(x, kernel, bias, activation, out, keep)  # type: ignore[misc]

    def dense_affine_dropout(self, x: Array, kernel: Array, bias: Array | None, activation: str, out: Array,
                             dropped: Array, seed: int, step: int, rate: float, offset: int) -> Array:
        """out (B, N) = act(x @ kernel + bias) (kept for backward) and dropped = its Dropout (the
        step plus the device counter ctr[0] in graph mode), where ``gemm_epilogues``: one launch;
        else matmul, then bias + activation + dropout."""
        if self.gemm_epilogues and x.dtype in OWN_GEMM_DTYPES and activation in FUSED_ACTIVATIONS:
            return self.own_gemm.dense_forward(x, kernel, bias, activation, out,  # type: ignore[attr-defined]
                                               dropout=self._epilogue_dropout(seed, step, rate, offset), dropped=dropped)
        return super().dense_affine_dropout(x, kernel, bias, activation, out, dropped, seed, step,  # type: ignore[misc]
                                            rate, offset)

    def fused_chain_forward(self, x: Array, weights: Any, biases: Any, activations: Any, out: Array,
                            keep: Any) -> Array:
        """Where ``gemm_epilogues``: the fused MLP forward (``fused_mlp``), one launch; else layer by layer."""
        if self.gemm_epilogues:
            return self.fused_mlp.forward(x, weights, biases, activations, out, keep)  # type: ignore[attr-defined]
        return super().fused_chain_forward(x, weights, biases, activations, out, keep)  # type: ignore[misc]

    def dense_input_grad(self, dz: Array, kernel: Array, out: Array, activation: str, kept: Array,
                         dropout: tuple | None) -> Array:
        """Where ``gemm_epilogues``: one launch, the previous Dense's Dropout backward (the step plus
        the device counter) and act' in the input-gradient GEMM's epilogue; else the composition."""
        if self.gemm_epilogues and dz.dtype in OWN_GEMM_DTYPES and activation in FUSED_ACTIVATIONS:
            drop = None if dropout is None else self._epilogue_dropout(*dropout)
            return self.own_gemm.input_grad(dz, kernel, out, activation, kept, dropout=drop)  # type: ignore[attr-defined]
        return super().dense_input_grad(dz, kernel, out, activation, kept, dropout)  # type: ignore[misc]

    def weight_grads(self, x: Array, dz: Array, dW: Array, db: Array | None) -> None:
        """In graph mode with own GEMMs: dW and db in one launch (``GemmLauncher.weight_grad``;
        split over the batch where it has few output tiles, ``gemm_splitk``), no CuPy reduction in
        the captured step (CuPy 14.2 routes reductions through CUB by default, whose workspace comes
        from the memory pool)."""
        if not (self.gemm_epilogues and x.dtype in OWN_GEMM_DTYPES and x.dtype == dz.dtype
                and (db is None or db.dtype == dW.dtype) and (dW.dtype == x.dtype or dW.dtype == np.float32)):
            return super().weight_grads(x, dz, dW, db)  # type: ignore[misc]
        (batch, m), n = x.shape, dz.shape[1]
        if splitk_plan(batch, m, n)[0] == 1:
            self.own_gemm.weight_grad(x, dz, dW, db)  # type: ignore[attr-defined]
            return None
        # Few output tiles over many rows (a narrow layer at a large batch): the batch split in
        # slices, their partials reduced in order (gemm_splitk); the workspace allocated in the
        # warm-up step, kept by the graph like the layers' buffers.
        shape = splitk_workspace_shape(batch, m, n)
        workspace = self._workspaces.get(self, f"splitk{shape[0]}", shape, np.float32)  # type: ignore[attr-defined]
        self.own_gemm.weight_grad_splitk(x, dz, dW, db, workspace)  # type: ignore[attr-defined]
        return None

    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        if self._graph_step is not None:
            return self.gemm_for_capture()(a, b, out)
        return super().matmul(a, b, out)  # type: ignore[misc]

    def matmul_a_bt(self, a: Array, b: Array, out: Array) -> Array:
        if self._graph_step is not None:
            return self.gemm_for_capture()(a, b, out, trans_b=True)
        return super().matmul_a_bt(a, b, out)  # type: ignore[misc]

    # -- dropout: Philox step + ctr[0] ------------------------------------------------------------
    def graph_dropout(self, name: str, head: tuple, seed: int, step: int, tail: tuple) -> Array:
        """Kernel ``name``'s ``_dev`` variant: (head, seed, step, ctr, tail) for (head, seed, step, tail)."""
        return self.kernel(name + "_dev")(*head, np.uint64(seed), np.uint64(step), self._graph_step.ctr, *tail)

    # -- updates: the learning rate and bias corrections from gs ----------------------------------
    def _graph_update(self, guard: Any, clip: Any, unscale: float) -> GraphScalars | None:
        return self._graph_step if guard is None and clip is None and unscale == 1.0 else None

    def sgd_update(self, param, grad, buf, lr, momentum, weight_decay, nesterov, *, half=None, unscale=1.0, guard=None,
                   clip=None) -> None:
        g = self._graph_update(guard, clip, unscale)
        if g is None:
            return super().sgd_update(param, grad, buf, lr, momentum, weight_decay, nesterov,  # type: ignore[misc]
                                      half=half, unscale=unscale, guard=guard, clip=clip)
        suffix, tail = ("_glr_mixed", (half,)) if half is not None else ("_glr", ())
        if momentum:
            self.kernel("fcgpu_sgd_momentum" + suffix)(grad, momentum, weight_decay, bool(nesterov), g.gs, param, buf, *tail)
        else:
            self.kernel("fcgpu_sgd" + suffix)(grad, weight_decay, g.gs, param, *tail)

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled, *, half=None,
                    unscale=1.0, guard=None, clip=None) -> None:
        g = self._graph_update(guard, clip, unscale)
        if g is None:
            return super().adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,  # type: ignore[misc]
                                       decoupled, half=half, unscale=unscale, guard=guard, clip=clip)
        suffix, tail = ("_glr_mixed", (half,)) if half is not None else ("_glr", ())
        head = (grad, beta1, beta2, 1.0 - beta1, 1.0 - beta2, eps, weight_decay, bool(decoupled))
        self.kernel("fcgpu_adam" + suffix)(*head, g.gs, param, m, v, *tail)

    # -- the step's first and last kernels --------------------------------------------------------
    def graph_begin(self, g: GraphScalars, lrs: Array, it_base: int, it_fit: int, t_base: int, beta1: float,
                    beta2: float) -> None:
        """gs from the counter: the learning rate of iteration it_base + ctr[0] (``lrs`` from it_fit
        on) and Adam's bias corrections of step t_base + ctr[0] + 1."""
        self.kernel("fcgpu_graph_step_begin")(g.ctr, lrs, lrs.size, int(it_base), int(it_fit), int(t_base),
                                              float(beta1), float(beta2), g.gs, size=1)

    def graph_gather(self, src: Array, perm: Array, g: GraphScalars, out: Array) -> Array:
        """out (batch, ...) = the rows perm[ctr[1] * batch + r] of src (contiguous), cast to out's type."""
        batch = out.shape[0]
        cols = out.size // max(1, batch)
        self.kernel("fcgpu_gather_rows")(src, perm, g.ctr, batch, cols, out, size=out.size)
        return out

    def graph_end(self, g: GraphScalars, sums: Array, steps: int, acc: Array) -> None:
        """acc into row ctr[1] of sums (2 per row), acc zeroed, ctr[0] + 1, ctr[1] + 1 modulo steps."""
        self.kernel("fcgpu_graph_step_end")(int(steps), sums, g.ctr, acc, size=1)
