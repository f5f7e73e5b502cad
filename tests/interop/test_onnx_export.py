"""ONNX export, run by ONNX Runtime: the same outputs as ``predict`` for every activation and layer,
at batch 1 and 7 through one dynamic batch dimension, in float32, float64 and the half policies."""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fcgpu as fc  # noqa: E402
from fcgpu.interop import export_onnx  # noqa: E402
from fcgpu.interop.onnx_export import DEFAULT_OPSET  # noqa: E402

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "gelu_approximate", "leaky_relu", "elu",
               "selu", "silu", "softplus", "softsign"]


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def inputs(n, features=6, dtype=np.float32, scale=3.0):
    return (np.random.default_rng(n).standard_normal((n, features)) * scale).astype(dtype)


def mlp(activation, dtype=None):
    fc.set_seed(0)
    return fc.Sequential([
        fc.Input(shape=(6,)),
        fc.Dense(9, activation=activation, dtype=dtype),
        fc.Dropout(0.3),
        fc.Activation(activation),
        fc.Dense(4, use_bias=False, dtype=dtype),
        fc.Activation("tanh"),
        fc.Dense(3, activation=activation, dtype=dtype),
    ])


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("opset", [13, DEFAULT_OPSET, 20])
def test_onnx_runtime_gives_predict_for_every_activation(tmp_path, activation, opset):
    model = mlp(activation)
    export_onnx(model, tmp_path / "m.onnx", opset=opset)
    for batch in (1, 7):
        x = inputs(batch)
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model.predict(x), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_large_pre_activations_stay_finite_and_equal(tmp_path, activation):
    fc.set_seed(0)
    model = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(5, activation=activation)])
    export_onnx(model, tmp_path / "m.onnx")
    x = inputs(7, scale=300.0)  # |z| in the hundreds: exp overflows where a formula is not written for it
    out, expected = run(tmp_path / "m.onnx", x), model.predict(x)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_the_graph_is_checked_and_its_batch_dimension_is_dynamic(tmp_path):
    export_onnx(mlp("relu"), tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == DEFAULT_OPSET
    (given,), (out,) = proto.graph.input, proto.graph.output
    dims = given.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 6
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch" and out.type.tensor_type.shape.dim[1].dim_value == 3
    assert given.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(node.op_type == "Dropout" for node in proto.graph.node)  # the identity at inference


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("activation", ["tanh", "elu", "selu", "softplus", "softsign", "gelu", "silu", "softmax"])
def test_float64_models_export_in_float64_and_run(tmp_path, activation, opset):
    model = mlp(activation, dtype="float64")
    export_onnx(model, tmp_path / "m.onnx", opset=opset)
    x = inputs(7, dtype=np.float64) * 4  # both sides of 0, far enough for the exponential branches
    out = run(tmp_path / "m.onnx", x)
    assert out.dtype == np.float64
    tol = 1e-6 if activation == "gelu" else 1e-12  # ONNX Runtime's erf is float32 only
    np.testing.assert_allclose(out, model.predict(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("policy", ["mixed_float16", "float16"])
@pytest.mark.parametrize("activation", ["relu", "softmax", "gelu", "silu"])
def test_half_models_have_half_inputs_weights_and_outputs_and_round_as_fcgpu_does(tmp_path, policy, activation):
    model = mlp(activation, dtype=policy)
    export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    weights = [t for t in proto.graph.initializer if t.name.rsplit("_", 1)[0].endswith(("kernel", "bias"))]
    assert len(weights) == 5 and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    for batch in (1, 7):
        x = inputs(batch, dtype=np.float16, scale=1.0)
        out = run(tmp_path / "m.onnx", x)
        assert out.dtype == np.float16
        # one float16 ulp: fcgpu's product is summed in another order than ONNX Runtime's
        np.testing.assert_allclose(out.astype(np.float32), model.predict(x).astype(np.float32), rtol=2e-3, atol=2e-3)


def test_bfloat16_models_export_a_checked_graph(tmp_path):
    pytest.importorskip("ml_dtypes")
    export_onnx(mlp("gelu", dtype="mixed_bfloat16"), tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    # ONNX Runtime loads it; its Python API takes no bfloat16 arrays, so the values are checked in float16 above
    ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])


def test_a_failed_export_leaves_the_old_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the last good export")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(mlp("relu"), target, opset=7)
    with pytest.raises(ValueError, match="not built"):
        export_onnx(fc.Sequential([fc.Dense(3)]), target)
    assert target.read_bytes() == b"the last good export" and os.listdir(tmp_path) == ["m.onnx"]


def test_without_onnx_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"fcgpu\[onnx\]"):
        export_onnx(mlp("relu"), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
