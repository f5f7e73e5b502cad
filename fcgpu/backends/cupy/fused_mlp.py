"""Launches the fused MLP forward (``kernels/mlp_fused.cuh``): a whole chain of small Dense layers in one kernel.

Where every width of a chain of Dense layers is at most 128 (``MAX_WIDTH``), the forward of the
whole chain, ``y_{i+1} = act_i(y_i @ W_i + b_i)`` from ``y_0 = x``, runs as one launch: a block takes
32 rows of the batch (``ROWS``) and keeps their activations in shared memory from layer to layer.
Each chain of (widths, activations) gets a small generated kernel, ``fcgpu_mlp_fwd``, in a
``RawModule`` of its own (compiled once per launcher and chain): the headers, then one call of the
header's layer template per layer. This module holds that generation and the dispatch (grid, block,
argument checks); the arithmetic is in the header. ``forward`` is exactly one launch, allocates
nothing and reads nothing back to the host, so it can be captured into a CUDA graph.

float32 runs on the CUDA cores (FMA, each output summed over k in order with ``fmaf``: the own
GEMM's rounding, so the result equals the chain of ``GemmLauncher.dense_forward`` calls); float16
and bfloat16 on tensor cores (WMMA, float32 sums, widths padded to 16, each layer's output rounded
once to the dtype, as the own WMMA GEMM's). Any elementwise activation of the table; softmax (a
row activation) only as the last layer's.
``CupyBackend.fused_mlp`` is this launcher on the backend's CuPy module.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from . import kernel_sources
from .gemm import COMPILE_OPTIONS, DTYPES, GEMM_HEADERS, WMMA_HEADER
from ...activations.table import ACTIVATIONS, get_activation

__all__ = ["BLOCK_THREADS", "COMPILE_OPTIONS", "HEADERS", "KERNEL_NAME", "MAX_WIDTH", "ROWS", "FusedMlpLauncher", "eligible",
           "grid_blocks", "layer_flags", "module_code"]

HEADERS = GEMM_HEADERS + ("mlp_fused.cuh",)  # mlp_fused.cuh uses gemm.cuh's shared-array and device macros
# float16 / bfloat16: gemm_wmma.cuh (the WMMA API and the 16-bit types) before mlp_fused.cuh.
HALF_HEADERS = GEMM_HEADERS + (WMMA_HEADER, "mlp_fused.cuh")
KERNEL_NAME = "fcgpu_mlp_fwd"
MAX_WIDTH = 128  # kernels/mlp_fused.cuh: FC_MLP_MAX_WIDTH
ROWS = 32  # FC_MLP_ROWS: batch rows a block
BLOCK_THREADS = 256  # FC_MLP_THREADS
_BIAS, _KEEP_Y, _KEEP_Z = 1, 2, 4  # FC_MLP_BIAS, FC_MLP_KEEP_Y, FC_MLP_KEEP_Z
_INT32_MAX = 2**31 - 1
_F32 = np.dtype(np.float32)


def _names(activations: Sequence[Any]) -> tuple[str, ...]:
    return tuple(get_activation(a).name for a in activations)


def eligible(widths: Sequence[int], activations: Sequence[Any], dtype: Any = np.float32) -> str | None:
    """Why a chain cannot run fused, or None when it can. ``widths`` (L + 1 ints): the input width,
    then each layer's output width; ``activations`` (L): each layer's."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return f"dtype {dtype!r} is not a NumPy dtype"
    if dt not in DTYPES:
        return f"the fused MLP runs float32, float16 or bfloat16, got {dt}"
    widths = [int(w) for w in widths]
    if len(widths) < 2:
        return f"widths must hold the input width and at least one layer's, got {widths}"
    if len(activations) != len(widths) - 1:
        return f"{len(widths) - 1} layers need {len(widths) - 1} activations, got {len(activations)}"
    bad = [w for w in widths if not 1 <= w <= MAX_WIDTH]
    if bad:
        return f"every width must be 1..{MAX_WIDTH}, got {widths}"
    try:
        names = _names(activations)
    except (KeyError, ValueError, TypeError) as e:
        return f"unknown activation: {e}"
    for i, name in enumerate(names):
        if ACTIVATIONS[name].rows and (i != len(names) - 1 or name != "softmax"):
            return f"row activation {name!r} of layer {i}: only softmax, and only as the last layer's"
    return None


def _require(widths: Sequence[int], activations: Sequence[Any],
             dtype: Any) -> tuple[np.dtype, tuple[int, ...], tuple[str, ...]]:
    why = eligible(widths, activations, dtype)
    if why is not None:
        raise ValueError(f"fused MLP: {why}")
    return np.dtype(dtype), tuple(int(w) for w in widths), _names(activations)


def _layer_call(i: int, n_in: int, n_out: int, act: str, last: bool, bufs: tuple[str, str], half: str) -> str:
    """One layer's call in the generated kernel; ``half`` is the 16-bit C type, or '' for float32."""
    src, dst = bufs
    pre, targ, extra = ("fc_mlp_wmma", f"{half}, ", "fc_mlp_ws, fc_mlp_cs, ") if half else ("fc_mlp", "", "")
    if last and ACTIVATIONS[act].rows:
        return (f"    {pre}_layer_softmax<{targ}{n_in}, {n_out}>({src}, {dst}, {extra}w{i}, b{i}, z{i}, out, row0, B, "
                f"flags{i});")
    functor = ACTIVATIONS[act].kernel_functor
    return (f"    {pre}_layer<{targ}{n_in}, {n_out}, {functor}, {'true' if last else 'false'}>({src}, {dst}, {extra}"
            f"w{i}, b{i}, y{i}, z{i}, out, row0, B, flags{i});")


@functools.lru_cache(maxsize=None)
def _module_code(dt: np.dtype, widths: tuple[int, ...], activations: tuple[str, ...]) -> str:
    ctype = DTYPES[dt][1]
    half = "" if dt == _F32 else ctype
    lines = [kernel_sources.read(h) for h in (HALF_HEADERS if half else HEADERS)]
    params = [f"const {ctype}* x"]
    for i in range(len(activations)):
        params += [f"const {ctype}* w{i}", f"const {ctype}* b{i}", f"{ctype}* y{i}", f"{ctype}* z{i}", f"int flags{i}"]
    params += [f"{ctype}* out", "int B"]
    load = f"fc_mlp_wmma_load<{half}, {widths[0]}>" if half else f"fc_mlp_load<{widths[0]}>"
    body = [f"    FC_MLP_WMMA_BUFFERS({half});" if half else "    FC_MLP_BUFFERS();",
            "    int row0 = (int)blockIdx.x * FC_MLP_ROWS;", f"    {load}(fc_mlp_a, x, row0, B);"]
    buffers = ("fc_mlp_a", "fc_mlp_b")
    for i, act in enumerate(activations):
        last = i == len(activations) - 1
        bufs = (buffers[i % 2], buffers[(i + 1) % 2])
        body.append(_layer_call(i, widths[i], widths[i + 1], act, last, bufs, half))
    layout = " ".join(f"{w}" for w in widths) + " / " + " ".join(activations)
    lines += [f"// fused MLP: {dt}, widths and activations {layout}",
              f'extern "C" __global__ void __launch_bounds__(FC_MLP_THREADS) {KERNEL_NAME}(',
              "    " + ", ".join(params) + ") {", *body, "}"]
    return "\n".join(lines) + "\n"


def module_code(dtype: Any, widths: Sequence[int], activations: Sequence[Any]) -> str:
    """The ``RawModule`` source of one chain: the headers, then ``fcgpu_mlp_fwd(x, w0, b0, y0, z0,
    flags0, w1, ..., out, B)`` calling the header's layer template once per layer (cached)."""
    return _module_code(*_require(widths, activations, dtype))


def grid_blocks(batch: int) -> int:
    """Blocks of a forward over ``batch`` rows: one per 32 rows."""
    return -(-int(batch) // ROWS)


def layer_flags(has_bias: bool, keep_y: bool, keep_z: bool) -> int:
    """A layer's ``flags`` argument (kernels/mlp_fused.cuh: FC_MLP_BIAS, FC_MLP_KEEP_Y, FC_MLP_KEEP_Z)."""
    return (_BIAS if has_bias else 0) | (_KEEP_Y if keep_y else 0) | (_KEEP_Z if keep_z else 0)


def _check(name: str, a: Any, shape: tuple[int, ...], dt: np.dtype) -> None:
    """``a`` is a C-contiguous array of ``shape`` and dtype ``dt``."""
    if a is None:
        raise TypeError(f"fused MLP: {name} is required")
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        raise TypeError(f"fused MLP: {name} must be an array, got {type(a).__name__}")
    if np.dtype(a.dtype) != dt:
        raise TypeError(f"fused MLP: {name} must be {dt} (as x), got {np.dtype(a.dtype)}")
    if tuple(a.shape) != shape:
        raise ValueError(f"fused MLP: {name} must have shape {shape}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"fused MLP: {name} must be C-contiguous")


def _span(a: Any) -> tuple[int, int]:
    start = int(a.__cuda_array_interface__["data"][0])
    return start, start + int(a.nbytes)


def _check_apart(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """No output overlaps an input or another output (blocks read inputs while others write)."""
    items = [(n, a, _span(a)) for n, a in {**inputs, **outputs}.items() if a is not None and a.size]
    for i, (n1, _, (s1, e1)) in enumerate(items):
        for n2, _, (s2, e2) in items[i + 1:]:
            if (n1 in outputs or n2 in outputs) and s1 < e2 and s2 < e1:
                raise ValueError(f"fused MLP: {n1} and {n2} overlap in memory")


class FusedMlpLauncher:
    """The fused MLP forward on CuPy module ``cp`` (real CuPy, or a stand-in with ``RawModule``)."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._kernels: dict[tuple, Any] = {}

    eligible = staticmethod(eligible)

    def module_code(self, dtype: Any, widths: Sequence[int], activations: Sequence[Any]) -> str:
        """The generated source of one chain (see the module function ``module_code``)."""
        return module_code(dtype, widths, activations)

    def kernel(self, widths: Sequence[int], activations: Sequence[Any], dtype: Any = np.float32) -> Any:
        """The compiled ``fcgpu_mlp_fwd`` of one chain (one ``RawModule`` per chain, built on first use)."""
        key = _require(widths, activations, dtype)
        k = self._kernels.get(key)
        if k is None:
            module = self.cp.RawModule(code=_module_code(*key), options=COMPILE_OPTIONS)
            k = self._kernels[key] = module.get_function(KERNEL_NAME)
        return k

    def forward(self, x: Any, weights: Sequence[Any], biases: Sequence[Any | None], activations: Sequence[Any],
                out: Any, keep: Sequence[tuple[Any | None, Any | None]] | None = None) -> Any:
        """out (B, N_L) = the chain's forward of x (B, N_0), in one launch.

        weights[i] (N_i, N_{i+1}) and biases[i] (N_{i+1},) or None are layer i's, activations[i] its
        activation (names or table entries). keep, when given, holds a pair (y_i, z_i) a layer, each
        (B, N_{i+1}) or None: layer i's output act_i(z_i) and pre-activation z_i = y_{i-1} @ W_i + b_i
        are also written there (what a backward reads). The last layer's output is ``out`` itself,
        so its y must be None. All arrays of x's dtype (float32, float16 or bfloat16) and C-contiguous;
        no output may overlap an input.
        """
        n_layers = len(weights)
        if len(biases) != n_layers or len(activations) != n_layers:
            raise ValueError(f"fused MLP: {n_layers} weights need {n_layers} biases and activations, got "
                             f"{len(biases)} and {len(activations)}")
        if n_layers == 0:
            raise ValueError("fused MLP: weights must hold at least one layer's")
        if x is None or not hasattr(x, "shape") or len(x.shape) != 2:
            raise ValueError(f"fused MLP: x must be 2-D (B, N_0), got shape {getattr(x, 'shape', None)}")
        batch = int(x.shape[0])
        for i, w in enumerate(weights):
            if w is None or not hasattr(w, "shape") or len(w.shape) != 2:
                raise ValueError(f"fused MLP: weights[{i}] must be 2-D (N_{i}, N_{i + 1}), got shape "
                                 f"{getattr(w, 'shape', None)}")
        if np.dtype(x.dtype) not in DTYPES:
            raise TypeError(f"fused MLP: x must be float32, float16 or bfloat16, got {np.dtype(x.dtype)}")
        widths = (int(x.shape[1]), *(int(w.shape[1]) for w in weights))
        kernel = self.kernel(widths, activations, x.dtype)
        dt = np.dtype(x.dtype)
        _check("x", x, (batch, widths[0]), dt)
        if batch > _INT32_MAX:
            raise ValueError(f"fused MLP: x's batch must fit in int32, got {batch}")
        keep = [(None, None)] * n_layers if keep is None else list(keep)
        if len(keep) != n_layers:
            raise ValueError(f"fused MLP: keep must hold {n_layers} (y, z) pairs, got {len(keep)}")
        if keep[-1][0] is not None:
            raise ValueError("fused MLP: keep[-1]'s y must be None (the last layer's output is out)")
        inputs, outputs = {"x": x}, {"out": out}
        args: list[Any] = [x]
        for i, (w, b, (y, z)) in enumerate(zip(weights, biases, keep)):
            _check(f"weights[{i}]", w, (widths[i], widths[i + 1]), dt)
            if b is not None:
                _check(f"biases[{i}]", b, (widths[i + 1],), dt)
            for name, a in ((f"keep[{i}] y", y), (f"keep[{i}] z", z)):
                if a is not None:
                    _check(name, a, (batch, widths[i + 1]), dt)
                    outputs[name] = a
            inputs[f"weights[{i}]"], inputs[f"biases[{i}]"] = w, b
            flags = layer_flags(b is not None, y is not None, z is not None)
            # An argument not read (flag off) still needs a pointer: out stands in.
            args += [w, out if b is None else b, out if y is None else y, out if z is None else z, np.int32(flags)]
        _check("out", out, (batch, widths[-1]), dt)
        _check_apart(outputs, inputs)
        args += [out, np.int32(batch)]
        blocks = grid_blocks(batch)
        if blocks:
            kernel((blocks,), (BLOCK_THREADS,), tuple(args), shared_mem=0)
        return out
