"""ONNX export of the normalization, activation, noise and reshaping layers and of functional graphs
(several inputs, fan-out, merges, nested models), run by ONNX Runtime: the same outputs as
``predict`` at batch 1 and 7, in float32 and float64, the graph checked by ``onnx.checker``."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fcgpu as fc  # noqa: E402
from fcgpu.interop import export_onnx  # noqa: E402

L = fc.layers

LAYERS = {
    "batch_normalization": lambda: [L.BatchNormalization(momentum=0.5)],
    "batch_normalization_plain": lambda: [L.BatchNormalization(center=False, scale=False, epsilon=0.01, momentum=0.3)],
    "layer_normalization": lambda: [L.LayerNormalization(epsilon=1e-4, beta_initializer="ones")],
    "layer_normalization_plain": lambda: [L.LayerNormalization(center=False, scale=False)],
    "normalization_given": lambda: [L.Normalization(mean=[0.5] * 9, variance=[2.0] * 8 + [0.0])],
    "normalization_inverted": lambda: [L.Normalization(mean=0.25, variance=4.0, invert=True)],
    "relu": lambda: [L.ReLU()],
    "relu_options": lambda: [L.ReLU(max_value=0.6, negative_slope=0.1, threshold=0.05)],
    "relu_clipped": lambda: [L.ReLU(max_value=1.5)],
    "leaky_relu": lambda: [L.LeakyReLU(negative_slope=0.15)],
    "elu": lambda: [L.ELU(alpha=0.5)],
    "prelu": lambda: [L.PReLU(alpha_initializer="ones")],
    "softmax": lambda: [L.Softmax()],
    "gaussian_noise": lambda: [L.GaussianNoise(0.2, seed=3)],
    "reshape_flatten": lambda: [L.Reshape((3, 3)), L.Flatten()],
}


def run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def data(n, features=6, dtype=np.float32, seed=None):
    return (np.random.default_rng(n if seed is None else seed).standard_normal((n, features)) * 2).astype(dtype)


def sequential(name, dtype=None):
    fc.set_seed(0)
    model = fc.Sequential([fc.Input(shape=(6,), dtype=dtype), fc.Dense(9, activation="tanh", dtype=dtype),
                           *LAYERS[name](), fc.Dense(3, dtype=dtype)])
    model.compile(loss="mse", optimizer=fc.optimizers.Adam(learning_rate=0.05))
    x = data(32, dtype=np.dtype(dtype or "float32"), seed=1)
    model.fit(x, x[:, :3] * 2, epochs=3, batch_size=8, verbose=0)  # moving statistics and alphas move
    return model


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_each_layer_exports_with_the_outputs_of_predict(tmp_path, name, opset):
    model = sequential(name)
    export_onnx(model, tmp_path / "m.onnx", opset=opset)
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
    for batch in (1, 7):
        x = data(batch)
        np.testing.assert_allclose(run(tmp_path / "m.onnx", {"input": x}), model.predict(x), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_layer_exports_in_float64(tmp_path, name):
    model = sequential(name, "float64")
    export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    for batch in (1, 7):
        x = data(batch, dtype=np.float64)
        np.testing.assert_allclose(run(tmp_path / "m.onnx", {"input": x}), model.predict(x), rtol=1e-10, atol=1e-12)


def test_gaussian_noise_and_dropout_write_no_node(tmp_path):
    fc.set_seed(0)
    model = fc.Sequential([fc.Input(shape=(4,)), L.GaussianNoise(0.5), fc.Dropout(0.5), fc.Dense(2)])
    export_onnx(model, tmp_path / "m.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert ops == ["MatMul", "Add", "Identity"]


# -- functional graphs -----------------------------------------------------------------------------------
def two_inputs():
    fc.set_seed(1)
    a, b = fc.Input((4,), name="a"), fc.Input((2,), name="b")
    h = L.Concatenate()([fc.Dense(5, activation="relu")(a), fc.Dense(5, activation="relu")(b)])
    return fc.Model([a, b], fc.Dense(3)(L.BatchNormalization()(h)), name="two_inputs")


def residual():
    fc.set_seed(2)
    x = fc.Input((6,))
    h = fc.Dense(6, activation="tanh")(x)
    h = L.Add()([x, L.LayerNormalization()(h)])
    h = fc.Dense(6)(h)
    merged = [L.Subtract()([h, x]), L.Multiply()([h, x]), L.Average()([h, x, h]), L.Maximum()([h, x]),
              L.Minimum()([h, x]), L.Add()([h, x, h])]
    return fc.Model(x, fc.Dense(3)(L.Concatenate()(merged)), name="residual")


def nested():
    fc.set_seed(3)
    encoder = fc.Sequential([fc.Input((6,)), fc.Dense(4, activation="relu"), L.BatchNormalization()], name="encoder")
    i = fc.Input((4,))
    head = fc.Model(i, fc.Dense(3)(L.PReLU()(fc.Dense(4)(i))), name="head")
    x = fc.Input((6,), name="x")
    return fc.Model(x, head(L.Add()([encoder(x), fc.Dense(4)(x)])), name="nested")


def images():
    fc.set_seed(4)
    x = fc.Input((2, 3), name="image")
    h = fc.Dense(4, activation="elu")(L.Flatten()(x))
    return fc.Model(x, L.Reshape((2, 2))(L.ReLU(max_value=1.0)(h)), name="images")


GRAPHS = {
    "two_inputs": (two_inputs, lambda n: {"a": data(n, 4), "b": data(n, 2, seed=n + 10)}),
    "residual": (residual, lambda n: {"input": data(n)}),
    "nested": (nested, lambda n: {"input": data(n)}),
    "images": (images, lambda n: {"input": data(n).reshape(n, 2, 3)}),
}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_functional_graphs_export_with_the_outputs_of_predict(tmp_path, graph, opset):
    build, feeds = GRAPHS[graph]
    model = build()
    train = feeds(16)
    model.compile(loss="mse", optimizer="adam")
    model.fit(list(train.values()) if len(train) > 1 else train[next(iter(train))],
              np.ones((16, int(np.prod(model.output_shape[1:]))), np.float32), epochs=2, batch_size=4, verbose=0)
    export_onnx(model, tmp_path / "g.onnx", opset=opset)
    for batch in (1, 7):
        given = feeds(batch)
        expected = model.predict(list(given.values()) if len(given) > 1 else next(iter(given.values())))
        out = run(tmp_path / "g.onnx", given)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-5)


def test_several_inputs_are_several_onnx_inputs_with_a_dynamic_batch(tmp_path):
    export_onnx(two_inputs(), tmp_path / "g.onnx")
    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert shapes == {"a": ["batch", 4], "b": ["batch", 2]}
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["batch", 3]
    ops = {n.op_type for n in graph.node}
    assert "Concat" in ops and "BatchNormalization" not in ops  # inference form: Sub, Mul, Add


def test_image_inputs_keep_their_shape_and_the_output_is_flat_as_predict_gives_it(tmp_path):
    model = images()
    export_onnx(model, tmp_path / "g.onnx")
    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    assert [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == ["batch", 2, 3]
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == ["batch", 4]
    assert model.predict(np.zeros((2, 2, 3), np.float32)).shape == (2, 4)


def test_a_model_of_several_outputs_has_a_graph_output_for_each(tmp_path):
    fc.set_seed(0)
    x = fc.Input((6,))
    h = fc.Dense(4)(x)
    model = fc.Model(x, [fc.Dense(2, name="a")(h), fc.Dense(3, name="b")(h)])
    export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [(o.name, o.type.tensor_type.shape.dim[1].dim_value) for o in graph.output] == [("a", 2), ("b", 3)]
