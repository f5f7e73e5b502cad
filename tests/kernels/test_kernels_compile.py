"""The compile gate: every kernel, as CuPy generates it, compiles for sm_80 and sm_90 (NVRTC, no GPU).

A broken kernel must make the gate fail; the last tests check that it does.
"""
from __future__ import annotations

import pytest

from fcgpu.backends.cupy import kernel_sources
from fcgpu.activations import ACTIVATIONS
from fcgpu.backends.cupy.backend import KERNEL_SPECS, KernelSpec
from support import cuda_compile as cc


@pytest.fixture(scope="module")
def report() -> cc.SweepReport:
    return cc.run_sweep()


def _variants(spec: KernelSpec, kinds: str, dtypes: tuple[str, ...]) -> list[cc.Variant]:
    """1-D contiguous variants of ``spec`` whose parameters are arrays ('a') or scalars ('s') of each dtype."""
    out = []
    for dt in dtypes:
        args = tuple(cc.ArgLayout("s", dt) if k == "s" else cc.ArgLayout("a", dt, 1, True) for k in kinds)
        out.append(cc.Variant(spec.name, dt, "1d", args, indexer_ndim=1))
    return out


def test_every_kernel_compiles_for_sm80_and_sm90(report: cc.SweepReport) -> None:
    print(report.summary())
    assert report.ok, report.summary()
    assert report.archs == ("80", "90")


def test_sweep_covers_every_kernel_dtype_and_generic_layout(report: cc.SweepReport) -> None:
    seen = {(v.kernel, v.dtype, v.layout) for v in report.variants}
    for name in KERNEL_SPECS:
        for dtype in cc.DTYPES:
            for layout in ("1d", "2d-strided", "1d-64bit-index"):
                assert (name, dtype, layout) in seen
    # The layouts the backend really produces (a broadcast bias row, the lse column) are in the sweep.
    kernels_with_2d_seen = {v.kernel for v in report.variants if v.layout.startswith("seen:") and v.indexer_ndim == 2}
    elementwise = [a for a, entry in ACTIVATIONS.items() if not entry.rows]
    assert {f"fcgpu_bias_{a}_fwd" for a in elementwise} <= kernels_with_2d_seen
    kept = [a for a, entry in ACTIVATIONS.items() if entry.backward_from == "z"]
    assert kept and {f"fcgpu_bias_{a}_fwd_keep" for a in kept} <= kernels_with_2d_seen
    # A row activation's kernels run one thread per row over raw arrays: a 1-D indexer of size B.
    rows = [a for a, entry in ACTIVATIONS.items() if entry.rows]
    for a in rows:
        for name in (f"fcgpu_bias_{a}_fwd", f"fcgpu_{a}_fwd", f"fcgpu_{a}_bwd"):
            seen = [v for v in report.variants if v.kernel == name and v.layout.startswith("seen:")]
            assert seen and all(v.indexer_ndim == 1 and {x.kind for x in v.args} <= {"r", "s"} for v in seen), name
    assert {"fcgpu_softmax_xent_grad_ids", "fcgpu_softmax_xent_grad_probs"} <= kernels_with_2d_seen


def test_every_recorded_backend_call_has_a_compiled_variant(report: cc.SweepReport) -> None:
    compiled = {(v.kernel, v.args, v.indexer_ndim, v.indexer_32_bits) for v in report.variants if v.dtype == "float32"}
    calls = cc.trace_backend_calls()
    assert {c.name for c in calls} == set(KERNEL_SPECS)
    for call in calls:
        args, ndim, small = cc.cupy_layout(call)
        assert (call.name, args, ndim, small) in compiled, call


def test_cupy_layout_follows_reduce_dims() -> None:
    calls = {c.name: c for c in cc.trace_backend_calls() if c.loop_shape == (4, 3)}
    # All contiguous: folded to 1-D.
    args, ndim, _ = cc.cupy_layout(calls["fcgpu_relu_bwd"])
    assert ndim == 1 and all(a.ndim == 1 and a.c_contiguous for a in args)
    # A broadcast bias row keeps the 2-D loop; only the bias is strided.
    args, ndim, _ = cc.cupy_layout(calls["fcgpu_bias_relu_fwd"])
    assert ndim == 2 and [a.c_contiguous for a in args] == [True, False, True]


def test_one_exact_source_compiles_alone_for_each_arch() -> None:
    """The sweep batches sources; the unbatched translation unit CuPy would build compiles too."""
    spec = KERNEL_SPECS["fcgpu_bias_sigmoid_fwd"]
    variant = next(v for v in cc.sweep_variants({spec.name: spec}, dtypes=("float16",)) if v.layout.startswith("seen:"))
    source = cc.variant_source(spec, variant)
    assert source.startswith("#include <cupy/complex.cuh>")
    assert "extern \"C\" __global__ void fcgpu_bias_sigmoid_fwd(const CArray<float16, 2, 1, 1> _raw_z" in source
    assert kernel_sources.preamble() in source
    for arch in cc.ARCHS:
        assert len(cc.compile_source(source, arch, cc.choose_backend())) > 1000


def test_options_are_cupys() -> None:
    options = cc.cupy_options()
    assert "-ftz=true" in options and "--std=c++17" in options
    assert any(o.startswith("-I") and o.endswith("include") for o in options)


def test_gate_fails_on_a_typo_in_an_operation() -> None:
    good = KERNEL_SPECS["fcgpu_relu_bwd"]
    bad = KernelSpec("fcgpu_relu_bwd_typo", good.in_params, good.out_params, good.operation.replace("fc_act_backward", "fc_act_backwrd"))
    specs = {good.name: good, bad.name: bad}
    variants = _variants(good, "aaa", ("float32",)) + _variants(bad, "aaa", ("float32",))
    report = cc.run_sweep(variants, archs=("80",), specs=specs, workers=1)
    assert not report.ok
    assert [f.variant.kernel for f in report.failures] == [bad.name]  # pinned on the broken kernel only
    assert "fc_act_backwrd" in report.failures[0].log
    with pytest.raises(cc.KernelCompileError, match="fcgpu_relu_bwd_typo"):
        cc.check_kernels_compile(variants=variants, archs=("80",), specs=specs, workers=1)


def test_gate_fails_on_a_header_function_that_does_not_compile_for_half_types() -> None:
    """CUDA's max() has float and double overloads only: fine for float32, ambiguous for float16/bfloat16."""
    preamble = kernel_sources.preamble() + (
        "\ntemplate <typename T> __device__ T fc_bad_bias_relu(T z, T b) { return max(z + b, (T)0); }\n"
    )
    spec = KernelSpec("fcgpu_bad_bias_relu", "T z, T b", "T y", "y = fc_bad_bias_relu(z, b)")
    variants = _variants(spec, "aaa", ("float32", "float16", "bfloat16"))
    report = cc.run_sweep(variants, archs=("90",), specs={spec.name: spec}, preamble=preamble, workers=1)
    assert sorted(f.variant.dtype for f in report.failures) == ["bfloat16", "float16"]
    assert all("more than one instance of overloaded function" in f.log for f in report.failures)


def test_nvcc_fallback_compiles_the_same_source() -> None:
    """Where NVRTC cannot be loaded the gate uses the toolkit's nvcc; both accept CuPy's source."""
    if cc.nvcc_path() is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine; NVRTC from the wheel is the gate's default")
    spec = KERNEL_SPECS["fcgpu_adam"]
    variant = cc.sweep_variants({spec.name: spec}, dtypes=("float16",))[0]
    assert len(cc.compile_source(cc.variant_source(spec, variant), "80", "nvcc")) > 1000


def test_command_line(capsys) -> None:
    assert cc.main(["--dtype", "float32", "--arch", "90"]) == 0
    out = capsys.readouterr().out
    assert "all compiled" in out and "sm_90" in out


def test_a_preamble_without_include_guards_is_judged_kernel_by_kernel() -> None:
    """Batching concatenates sources; a preamble that cannot be repeated must not fail the gate by itself."""
    preamble = "template <typename T> __device__ T fc_twice(T x) { return x + x; }\n"
    specs = {
        name: KernelSpec(name, "T x", "T y", "y = fc_twice(x)") for name in ("fcgpu_twice_a", "fcgpu_twice_b")
    }
    variants = [v for spec in specs.values() for v in _variants(spec, "aa", ("float32",))]
    report = cc.run_sweep(variants, archs=("80",), specs=specs, preamble=preamble, workers=1)
    assert report.ok, report.summary()
