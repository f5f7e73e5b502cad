"""The compile gate's layouts: how CuPy lays out the backend's kernel calls, and the variants to sweep.

Part of ``support.cuda_compile``. ``trace_backend_calls`` records fcgpu's CuPy backend on
the host stand-in without running kernels; ``cupy_layout`` reduces each recorded call as
CuPy's ``_reduce_dims`` does; ``sweep_variants`` adds the generic layouts and every dtype.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fcgpu.testing.fake_cupy.params import dtype_named
from fcgpu.testing.fake_cupy.recording import KernelCall
from support.compile_gate.compilers import KernelCompileError
from support.compile_gate.variants import ArgLayout, Variant

DTYPES: tuple[str, ...] = ("float32", "float64", "float16", "bfloat16")
_INT32_MAX = 2**31 - 1


def _c_contiguous(shape: Sequence[int], strides: Sequence[int], itemsize: int) -> bool:
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def cupy_layout(call: KernelCall) -> tuple[tuple[ArgLayout, ...], int, bool]:
    """(arguments, indexer ndim, indexer 32-bit) that CuPy derives for a recorded ``KernelCall``.

    Mirrors ``ElementwiseKernel.__call__``: non-raw arrays are broadcast to the loop shape, then
    ``_reduce_dims`` folds them to 1-D when all are C-contiguous, keeps 2-D loops with a strided
    array as they are, and otherwise merges axes that are contiguous in every strided array.
    Contiguity flags survive the reduction (CuPy's ``_view`` copies them).
    """
    shape = list(call.loop_shape)
    ndim = len(shape)
    flags: list[bool] = []
    for kind, dt, shp, st in zip(call.kinds, call.dtypes, call.shapes, call.strides):
        flags.append(True if kind == "s" else _c_contiguous(shp, st, dtype_named(dt).itemsize))
    array_idx = [k for k, kind in enumerate(call.kinds) if kind == "a"]
    strided = [k for k in array_idx if not flags[k]]
    new_ndim = ndim
    if ndim > 1 and array_idx:
        if not strided:
            new_ndim = 1
        elif ndim == 2:
            new_ndim = 2
        else:
            vec = list(shape)
            axes: list[int] = []
            last = -1
            for ax in range(ndim):
                if vec[ax] == 1:
                    continue
                if last < 0:
                    last = ax
                    continue
                if any(call.strides[k][ax] * vec[ax] != call.strides[k][last] for k in strided):
                    axes.append(last)
                else:
                    vec[ax] *= vec[last]
                last = ax
            if last >= 0:
                axes.append(last)
            if len(axes) != ndim:
                new_ndim = len(axes)
    size = int(np.prod(shape)) if shape else 1
    args = []
    for k, (kind, dt) in enumerate(zip(call.kinds, call.dtypes)):
        if kind == "s":
            args.append(ArgLayout("s", dt))
        elif kind == "r":
            span = int(np.prod(call.shapes[k])) * dtype_named(dt).itemsize
            args.append(ArgLayout("r", dt, len(call.shapes[k]), flags[k], span <= _INT32_MAX))
        else:
            args.append(ArgLayout("a", dt, new_ndim, flags[k], size * dtype_named(dt).itemsize <= _INT32_MAX))
    return tuple(args), new_ndim, size <= _INT32_MAX


def trace_backend_calls() -> list[KernelCall]:
    """The kernel calls fcgpu's CuPy backend makes for representative inputs (float32), recorded on the stand-in.

    Kernels are not compiled or run, so this needs neither a GPU nor a C++ compiler.
    """
    from fcgpu.backends.cupy.backend import CupyBackend
    from fcgpu.activations import ACTIVATIONS
    from fcgpu.testing import fake_cupy

    b = CupyBackend(fake_cupy)
    f = np.float32
    with fake_cupy.record_kernel_calls(execute=False) as calls, np.errstate(all="ignore"):
        for batch in (1, 4):
            z = b.zeros((batch, 3), f)
            bias = b.zeros((3,), f)
            for act, entry in ACTIVATIONS.items():  # a row entry (softmax) records its row kernels
                b.bias_act_forward(z, bias, act, b.empty((batch, 3), f))
                b.bias_act_forward(z, None, act, z)
                b.act_backward(z, z, act, b.empty((batch, 3), f))
                if entry.backward_from == "z":  # the two-output pass keeping z + b (in place, as Dense)
                    b.bias_act_forward(z, bias, act, b.empty((batch, 3), f), keep=z)
                elif not entry.rows:  # fused with a Dropout after the Dense (y in place, as Dense)
                    b.bias_act_dropout_forward(z, bias, act, z, b.empty((batch, 3), f), 2**64 - 1, 2**40, 0.5)
                    b.bias_act_dropout_forward(z, None, act, z, b.empty((batch, 3), f), 7, 1, 0.25, batch * 3)
                    b.act_dropout_backward(z, z, act, b.empty((batch, 3), f), 7, 1, 0.25, batch * 3)
            # Dropout: forward into a new array, backward in place with a rank's element offset.
            b.dropout_forward(z, b.empty((batch, 3), f), 2**64 - 1, 2**40, 0.5)
            b.dropout_backward(z, z, 7, 1, 0.25, offset=batch * 3)
            lse = b.zeros((batch, 1), f)
            b.softmax_xent_grad(z, lse, b.zeros((batch,), np.int64), 0.25, b.empty((batch, 3), f))
            b.softmax_xent_grad(z, lse, b.zeros((batch, 3), f), 0.25, b.empty((batch, 3), f))
            col = b.zeros((batch, 1), f)
            b.bce_logits_sum(col, col)
            b.bce_logits_grad(col, col, 0.25, b.empty((batch, 1), f))
            b.bce_prob_sum(col, col, 1e-7)
            b.bce_prob_grad(col, col, 1e-7, 0.25, b.empty((batch, 1), f))
            b.mse_grad(z, z, 0.25, b.empty((batch, 3), f))
            acc = b.zeros((2,), np.float64)
            b.softmax_xent_step(z, b.zeros((batch,), np.int64), 0.25, 1.0, True, b.empty((batch, 3), f), acc)
            b.softmax_xent_step(z, b.zeros((batch, 3), f), 0.25, 1.0, True, b.empty((batch, 3), f), acc)
            b.bce_logits_step(col, col, 0.25, 1.0, True, b.empty((batch, 1), f), acc)
            b.mse_step(z, z, 0.25, 1.0 / 3, b.empty((batch, 3), f), b.zeros((4, 2), np.float64)[1])
            b.mae_grad(z, z, 0.25, b.empty((batch, 3), f))
            b.mae_step(z, z, 0.25, 1.0 / 3, b.empty((batch, 3), f), b.zeros((4, 2), np.float64)[1])
            b.huber_grad(z, z, 1.0, 0.25, b.empty((batch, 3), f))
            b.huber_step(z, z, 1.0, 0.25, 1.0 / 3, b.empty((batch, 3), f), b.zeros((4, 2), np.float64)[1])
            b.all_finite(z)  # loss scaling's overflow check
            # Sample weights read by the fused steps (W = float32 here; float64 for a float64 model).
            sw = b.zeros((batch,), np.float64 if f == np.float64 else np.float32)
            b.softmax_xent_step(z, b.zeros((batch,), np.int64), 0.25, 1.0, True, b.empty((batch, 3), f), acc,
                                sample_weight=sw)
            b.softmax_xent_step(z, b.zeros((batch, 3), f), 0.25, 1.0, True, b.empty((batch, 3), f), acc,
                                sample_weight=sw)
            b.bce_logits_step(col, col, 0.25, 1.0, True, b.empty((batch, 1), f), acc, sample_weight=sw)
            b.mse_step(z, z, 0.25, 1.0 / 3, b.empty((batch, 3), f), acc, sample_weight=sw)
            b.mae_step(z, z, 0.25, 1.0 / 3, b.empty((batch, 3), f), acc, sample_weight=sw)
            b.huber_step(z, z, 1.0, 0.25, 1.0 / 3, b.empty((batch, 3), f), acc, sample_weight=sw)
            ls = b.zeros((b.LS_SIZE,), np.float64)
            b.loss_scale_check([z, col], ls, 2000, 1e-3, 0.9, 0.999)  # its device decision, two buffers
        for shape in ((3, 4), (4,)):
            p, g = b.zeros(shape, f), b.zeros(shape, f)
            b.sgd_update(p, g, None, 0.1, 0.0, 0.0, False)
            b.sgd_update(p, g, b.zeros(shape, f), 0.1, 0.9, 1e-4, True)
            b.adam_update(p, g, b.zeros(shape, f), b.zeros(shape, f), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
            b.adam_update(p, g, b.zeros(shape, f), b.zeros(shape, f), 1e-3, 0.9, 0.999, 1e-8, 0.01, 2, True)
            z = lambda: b.zeros(shape, f)  # noqa: E731 - a fresh state buffer per call
            b.rmsprop_update(p, g, z(), None, None, 1e-3, 0.9, 0.0, 1e-7, 0.0)
            b.rmsprop_update(p, g, z(), None, z(), 1e-3, 0.9, 0.5, 1e-7, 0.0)
            b.rmsprop_update(p, g, z(), z(), None, 1e-3, 0.9, 0.0, 1e-7, 0.01)
            b.rmsprop_update(p, g, z(), z(), z(), 1e-3, 0.9, 0.5, 1e-7, 0.0)
            b.adagrad_update(p, g, z(), 1e-3, 1e-7, 0.0)
            b.l1l2_grad(g, p, 0.01, 0.01)
            b.l1l2_penalty(p, 0.01, 0.01)
        # Half parameters keep float32 state (optimizers.state_dtype): T and S differ in these calls.
        h, s = b.zeros((3, 4), np.float16), lambda: b.zeros((3, 4), f)
        b.sgd_update(h, h, s(), 0.1, 0.9, 1e-4, True)
        b.adam_update(h, h, s(), s(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
        for mg, mom in ((None, None), (None, s()), (s(), None), (s(), s())):
            b.rmsprop_update(h, h, s(), mg, mom, 1e-3, 0.9, 0.0 if mom is None else 0.5, 1e-7, 0.0)
        b.adagrad_update(h, h, s(), 1e-3, 1e-7, 0.0)
        # Mixed precision: float32 masters, the gradient unscaled as read (_unscaled) and the half
        # copy written in the same pass (_mixed, H = float16).
        for mixed in ({"unscale": 0.5}, {"unscale": 0.5, "half": b.zeros((3, 4), np.float16)}):
            p, g = s(), s()
            b.sgd_update(p, g, None, 0.1, 0.0, 0.0, False, **mixed)
            b.sgd_update(p, g, s(), 0.1, 0.9, 1e-4, True, **mixed)
            b.adam_update(p, g, s(), s(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, **mixed)
            for mg, mom in ((None, None), (None, s()), (s(), None), (s(), s())):
                b.rmsprop_update(p, g, s(), mg, mom, 1e-3, 0.9, 0.0 if mom is None else 0.5, 1e-7, 0.0, **mixed)
            b.adagrad_update(p, g, s(), 1e-3, 1e-7, 0.0, **mixed)
        # Loss scaling decided on the device: the updates guarded by its state (_guarded, _guarded_mixed).
        for mixed in ({"guard": b.zeros((b.LS_SIZE,), np.float64)},
                      {"guard": b.zeros((b.LS_SIZE,), np.float64), "half": b.zeros((3, 4), np.float16)}):
            p, g = s(), s()
            b.sgd_update(p, g, None, 0.1, 0.0, 0.0, False, **mixed)
            b.sgd_update(p, g, s(), 0.1, 0.9, 1e-4, True, **mixed)
            b.adam_update(p, g, s(), s(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, **mixed)
            for mg, mom in ((None, None), (None, s()), (s(), None), (s(), s())):
                b.rmsprop_update(p, g, s(), mg, mom, 1e-3, 0.9, 0.0 if mom is None else 0.5, 1e-7, 0.0, **mixed)
            b.adagrad_update(p, g, s(), 1e-3, 1e-7, 0.0, **mixed)
        b.l1l2_grad(g, p, 0.01, 0.01, gscale=b.zeros((b.LS_SIZE,), np.float64))
        # Keras's gradient clipping: the norms of two variables' segments, per variable and global,
        # unscaled on the host or by the loss scaler's state; the updates clipping as they read (_clip*).
        factors, segs, ls = b.zeros((2,), np.float64), b.zeros((4,), np.int64), b.zeros((b.LS_SIZE,), np.float64)
        for per_variable, guard in ((True, None), (False, None), (False, ls)):
            b.clip_factors([b.zeros((12,), f), b.zeros((12,), f)], [segs, segs], factors, 1.0, per_variable, guard=guard)
        half = b.zeros((3, 4), np.float16)
        for mixed in ({}, {"half": half}, {"guard": ls}, {"guard": ls, "half": half}):
            p, g, clip = s(), s(), {"clip": (factors, segs, 2, 0.0)}
            b.sgd_update(p, g, None, 0.1, 0.0, 0.0, False, **mixed, **clip)
            b.sgd_update(p, g, s(), 0.1, 0.9, 1e-4, True, **mixed, **clip)
            b.adam_update(p, g, s(), s(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False, **mixed, **clip)
            for mg, mom in ((None, None), (None, s()), (s(), None), (s(), s())):
                b.rmsprop_update(p, g, s(), mg, mom, 1e-3, 0.9, 0.0 if mom is None else 0.5, 1e-7, 0.0, **mixed, **clip)
            b.adagrad_update(p, g, s(), 1e-3, 1e-7, 0.0, **mixed, **clip)
        _trace_layer_calls(b, f)
        _trace_graph_calls(b, f)
    return calls


def _trace_graph_calls(b: Any, f: Any) -> None:
    """The captured training step's kernels (kernels/graphs.cuh): graph mode's GEMMs (float32, and
    half operands into a float32 weight gradient), dropout with the device counter, the updates with
    the device learning rate, and the step's gather, first and last kernels."""
    from fcgpu.activations import ACTIVATIONS

    g = b.graph_scalars()
    with b.graph_mode(g):
        x, w, dz = b.zeros((4, 3), f), b.zeros((3, 5), f), b.zeros((4, 5), f)
        b.matmul(x, w, b.empty((4, 5), f))
        b.matmul_a_bt(dz, w, b.empty((4, 3), f))
        b.matmul_at_b(x, dz, b.empty((3, 5), f))
        h = np.float16
        b.matmul_at_b(b.zeros((4, 3), h), b.zeros((4, 5), h), b.empty((3, 5), f))
        z, bias = b.zeros((4, 3), f), b.zeros((3,), f)
        for act, entry in ACTIVATIONS.items():
            if entry.backward_from != "z" and not entry.rows:
                b.bias_act_dropout_forward(z, bias, act, z, b.empty((4, 3), f), 7, 1, 0.25)
                b.act_dropout_backward(z, z, act, b.empty((4, 3), f), 7, 1, 0.25)
        b.dropout_forward(z, b.empty((4, 3), f), 7, 1, 0.25)
        s = lambda: b.zeros((3, 4), f)  # noqa: E731
        for mixed in ({}, {"half": b.zeros((3, 4), np.float16)}):
            b.sgd_update(s(), s(), None, 0.1, 0.0, 0.0, False, **mixed)
            b.sgd_update(s(), s(), s(), 0.1, 0.9, 1e-4, True, **mixed)
            b.adam_update(s(), s(), s(), s(), 1e-3, 0.9, 0.999, 1e-8, 0.01, 1, True, **mixed)
    b.graph_begin(g, b.zeros((3,), np.float64), 2, 0, 1, 0.9, 0.999)
    b.graph_gather(b.zeros((8, 3), f), b.zeros((8,), np.int64), g, b.empty((4, 3), f))
    b.graph_gather(b.zeros((8,), np.int64), b.zeros((8,), np.int64), g, b.empty((4,), np.int64))
    b.graph_end(g, b.zeros((4,), np.float64), 2, b.zeros((2,), np.float64))


def _trace_layer_calls(b: Any, f: Any) -> None:
    """The layer methods' kernels (kernels/layers.cuh): per-feature rows broadcast over a batch."""
    for batch in (1, 4):
        x, v = b.zeros((batch, 3), f), b.zeros((3,), f)
        out = lambda: b.empty((batch, 3), f)  # noqa: E731 - a fresh output per call
        b.relu_forward(x, None, 0.0, 0.0, out())
        b.relu_backward(x, x, 6.0, 0.1, 0.5, out())
        b.elu_forward(x, 1.0, out())
        b.elu_backward(x, x, 0.5, out())
        b.prelu_forward(x, v, out())
        b.prelu_backward(x, x, v, out(), b.empty((3,), f))
        b.gaussian_noise(x, out(), 2**64 - 1, 2**40, 0.1, batch * 3)
        b.normalize_forward(x, v, v, False, out())
        b.normalize_backward(x, v, True, out())
        b.bn_stats(x, b.empty((3,), f), b.empty((3,), f), v, v, 0.99)
        b.bn_forward(x, v, v, v, v, 1e-3, out())
        b.bn_forward(x, v, v, None, None, 1e-3, out())
        b.bn_backward(x, x, v, v, v, 1e-3, True, b.empty((3,), f), b.empty((3,), f), out())
        rows = b.zeros((batch,), f)
        b.ln_forward(x, v, v, 1e-3, out(), b.empty((batch,), f), b.empty((batch,), f))
        b.ln_backward(x, x, rows, rows, v, b.empty((3,), f), b.empty((3,), f), out())


def _generic_layouts(kinds: Sequence[str], dtypes: Sequence[str]) -> dict[str, tuple[tuple[ArgLayout, ...], int, bool]]:
    def make(ndim: int, contiguous: bool, small: bool) -> tuple[tuple[ArgLayout, ...], int, bool]:
        args = []
        for kind, dt in zip(kinds, dtypes):
            if kind == "s":
                args.append(ArgLayout("s", dt))
            elif kind == "r":
                args.append(ArgLayout("r", dt, 1, True, small))
            else:
                args.append(ArgLayout("a", dt, ndim, contiguous, small))
        return tuple(args), ndim, small

    return {"1d": make(1, True, True), "2d-strided": make(2, False, True), "1d-64bit-index": make(1, True, False)}


def _has_placeholder(spec: Any) -> bool:
    """Whether a kernel spec has a parameter typed by a placeholder (T, S, ...) rather than a dtype."""
    params = [p.split() for text in (spec.in_params, spec.out_params) for p in text.split(",") if p.strip()]
    return any(words[-2] not in _DTYPE_NAMES for words in params)


# The type names CuPy reads as dtypes in kernel parameters (a single capital letter is a placeholder;
# NumPy would read 'T', 'S' or 'D' as dtypes of its own).
_DTYPE_NAMES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                          "float16", "float32", "float64", "bfloat16", "complex64", "complex128"})


def sweep_variants(
    specs: dict[str, Any] | None = None,
    dtypes: Sequence[str] = DTYPES,
    calls: Sequence[KernelCall] | None = None,
) -> list[Variant]:
    """Every (kernel, dtype, layout) CuPy would compile a distinct source for, as used by the backend.

    Argument kinds per kernel come from ``calls`` (default: ``trace_backend_calls()``); the
    recorded layouts are kept (named 'seen:...') and the generic 1-D, 2-D strided and 64-bit
    index layouts added. Parameters of the floating type take each of ``dtypes`` in turn.
    """
    from fcgpu.backends.cupy.backend import KERNEL_SPECS

    specs = KERNEL_SPECS if specs is None else specs
    calls = trace_backend_calls() if calls is None else calls
    by_kernel: dict[str, list[KernelCall]] = {}
    for c in calls:
        by_kernel.setdefault(c.name, []).append(c)
    missing = [name for name in specs if name not in by_kernel]
    if missing:
        raise KernelCompileError(f"no recorded backend call uses these kernels, so their layouts are unknown: {missing}")
    variants: list[Variant] = []
    for name in specs:
        layouts: dict[tuple, str] = {}
        first = by_kernel[name][0]
        # The floating type: that of the first elementwise argument, or of the first raw one in a
        # kernel over rows whose arguments are all raw.
        kind = "a" if "a" in first.kinds else "r"
        float_type = first.dtypes[first.kinds.index(kind)]
        for label, layout in _generic_layouts(first.kinds, first.dtypes).items():
            layouts.setdefault(layout, label)
        for c in by_kernel[name]:
            layout = cupy_layout(c)
            desc = ",".join(f"{a.kind}{a.ndim}{'c' if a.c_contiguous else 's'}" for a in layout[0] if a.kind != "s")
            layouts.setdefault(layout, f"seen:{desc}")
        # A kernel whose parameters all have fixed types (no placeholder such as T) keeps its recorded
        # dtypes in every variant (the same source under each dtype's name).
        swept = float_type if _has_placeholder(specs[name]) else None
        for dtype in dtypes:
            for (args, ind_ndim, ind32), label in layouts.items():
                typed = tuple(
                    ArgLayout(a.kind, dtype if a.dtype == swept else a.dtype, a.ndim, a.c_contiguous, a.index_32_bits)
                    for a in args
                )
                variants.append(Variant(name, dtype, label, typed, ind_ndim, ind32))
    return variants
