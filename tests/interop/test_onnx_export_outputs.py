"""ONNX export of models of several outputs, run by ONNX Runtime: one graph output per model output,
named as the model's outputs, with a dynamic batch dimension, each equal to what ``predict`` gives
for it; and ``fcgpu convert`` between .keras, .fcgpu, .weights.h5 and .onnx for such models."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fcgpu as fc  # noqa: E402
from fcgpu.cli import main  # noqa: E402
from fcgpu.interop import export_onnx  # noqa: E402


def x_of(batch, features=6, dtype=np.float32):
    return (np.random.default_rng(batch).standard_normal((batch, features)) * 2).astype(dtype)


def two_heads(form="list", dtype=None):
    fc.set_seed(0)
    inp = fc.Input(shape=(6,), name="features")
    h = fc.Dense(8, activation="tanh", name="trunk", dtype=dtype)(inp)
    label = fc.Dense(3, activation="softmax", name="label", dtype=dtype)(h)
    value = fc.Dense(1, name="value", dtype=dtype)(h)
    return fc.Model(inp, [label, value] if form == "list" else {"label": label, "value": value})


def two_inputs():
    fc.set_seed(1)
    a, b = fc.Input(shape=(4,), name="left"), fc.Input(shape=(2,), name="right")
    h = fc.layers.Concatenate(name="joined")([fc.Dense(5, activation="relu", name="da")(a),
                                              fc.Dense(3, activation="tanh", name="db")(b)])
    return fc.Model([a, b], [fc.Dense(2, activation="sigmoid", name="yes_no")(h), fc.Dense(1, name="amount")(h)])


def chained_heads():
    """An output that another output reads, and a nested Sequential trunk."""
    fc.set_seed(2)
    trunk = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(7, activation="relu"), fc.Dense(5, activation="gelu")],
                          name="trunk_model")
    inp = fc.Input(shape=(6,), name="features")
    first = fc.Dense(4, activation="relu", name="first")(trunk(inp))
    second = fc.Dense(2, activation="sigmoid", name="second")(first)
    return fc.Model(inp, [first, second])


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def predicted_list(model, x):
    out = model.predict(x)
    return [out[name] for name in model.output_names] if isinstance(out, dict) else list(out)


def check(model, path, feeds_of, tolerance=(2e-5, 2e-6)):
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == model.output_names
    for o, width in zip(proto.graph.output, [t.shape[-1] for t in model.outputs]):
        dims = o.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and dims[1].dim_value == width
    s = session(path)
    assert [o.name for o in s.get_outputs()] == model.output_names
    for batch in (1, 7):
        feeds, x = feeds_of(batch)
        got = s.run(None, feeds)
        want = predicted_list(model, x)
        assert len(got) == len(want) == len(model.outputs)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tolerance[0], atol=tolerance[1])


@pytest.mark.parametrize("form", ["list", "dict"])
def test_each_output_is_a_graph_output_equal_to_predict(tmp_path, form):
    model = two_heads(form)
    export_onnx(model, tmp_path / "m.onnx")
    check(model, tmp_path / "m.onnx", lambda n: ({"input": x_of(n)}, x_of(n)))


@pytest.mark.parametrize("dtype, tolerance", [("float64", (1e-12, 1e-12)), ("float16", (2e-3, 2e-3))])
def test_float64_and_half_two_heads(tmp_path, dtype, tolerance):
    model = two_heads(dtype=dtype)
    export_onnx(model, tmp_path / "m.onnx")
    check(model, tmp_path / "m.onnx", lambda n: ({"input": x_of(n, dtype=dtype)}, x_of(n, dtype=dtype)),
          tolerance=tolerance)


def test_two_inputs_and_two_outputs(tmp_path):
    model = two_inputs()
    export_onnx(model, tmp_path / "m.onnx")

    def feeds(n):
        x = x_of(n)
        return {"left": x[:, :4].copy(), "right": x[:, 4:].copy()}, [x[:, :4].copy(), x[:, 4:].copy()]

    check(model, tmp_path / "m.onnx", feeds)


def test_an_output_read_by_another_output_and_a_nested_trunk(tmp_path):
    model = chained_heads()
    export_onnx(model, tmp_path / "m.onnx")
    check(model, tmp_path / "m.onnx", lambda n: ({"input": x_of(n)}, x_of(n)))


def test_an_output_named_as_the_graph_input_is_refused(tmp_path):
    fc.set_seed(3)
    inp = fc.Input(shape=(6,), name="features")
    model = fc.Model(inp, [fc.Dense(2, name="input")(inp), fc.Dense(1, name="other")(inp)])
    with pytest.raises(ValueError, match="'input'"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_of_one_output_keeps_its_output_named_output(tmp_path):
    fc.set_seed(4)
    model = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(3)])
    export_onnx(model, tmp_path / "m.onnx")
    assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["output"]


# -- fcgpu convert ---------------------------------------------------------------------------------
def convert(*args):
    return main(["convert", *map(str, args)])


@pytest.mark.parametrize("form", ["list", "dict"])
def test_convert_moves_a_two_head_model_between_every_format(tmp_path, form, capsys):
    pytest.importorskip("h5py")
    model = two_heads(form)
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"] if form == "list" else
                  {"label": "categorical_crossentropy", "value": "mse"})
    model.save(tmp_path / "m.fcgpu")
    x = x_of(7)
    assert convert(tmp_path / "m.fcgpu", tmp_path / "m.keras") == 0
    assert convert(tmp_path / "m.keras", tmp_path / "back.fcgpu") == 0
    back = fc.load_model(tmp_path / "back.fcgpu")
    for a, b in zip(predicted_list(back, x), predicted_list(model, x)):
        np.testing.assert_array_equal(a, b)
    assert type(back.predict(x)) is type(model.predict(x))
    assert convert(tmp_path / "m.keras", tmp_path / "w.weights.h5") == 0
    assert convert(tmp_path / "w.weights.h5", tmp_path / "again.keras", "--model", tmp_path / "m.fcgpu") == 0
    for a, b in zip(predicted_list(fc.load_model(tmp_path / "again.keras"), x), predicted_list(model, x)):
        np.testing.assert_array_equal(a, b)
    assert convert(tmp_path / "m.keras", tmp_path / "m.onnx") == 0
    check(model, tmp_path / "m.onnx", lambda n: ({"input": x_of(n)}, x_of(n)))
    keras = pytest.importorskip("keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(predicted_list(theirs, x) if form == "list" else
                    [theirs.predict(x, verbose=0)[k] for k in model.output_names], predicted_list(model, x)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)
