"""The functional API: graphs of layers (fan-out, merges, several inputs), Flatten and Reshape, models
nested as layers; checked by float64 central differences, against Keras 3 itself, and for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import layers
from fcgpu.layers.context import ForwardContext
from helpers import host, summary_text

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")


def graph_model(dtype="float64", merge="concatenate"):
    """x -> d0 -> (d1, d2) -> merge -> out: a fan-out and a merge."""
    inp = fc.Input(shape=(5,), name="features")
    h = layers.Dense(6, activation="tanh", dtype=dtype, name="d0")(inp)
    a = layers.Dense(4, activation="sigmoid", dtype=dtype, name="d1")(h)
    b = layers.Dense(4, activation="elu", dtype=dtype, name="d2")(h)
    merged = {
        "concatenate": layers.Concatenate, "add": layers.Add, "subtract": layers.Subtract,
        "multiply": layers.Multiply, "average": layers.Average, "maximum": layers.Maximum, "minimum": layers.Minimum,
    }[merge](name=merge)([a, b])
    out = layers.Dense(3, dtype=dtype, name="out")(merged)
    return fc.Model(inputs=inp, outputs=out, name="graph")


MERGES = ["concatenate", "add", "subtract", "multiply", "average", "maximum", "minimum"]


@pytest.mark.parametrize("merge", MERGES)
def test_graph_gradients_match_central_differences(backend, rng, merge):
    model = graph_model(merge=merge)
    x = rng.normal(size=(7, 5))
    dy = rng.normal(size=(7, 3))
    model.forward(x)
    model.backward(dy, input_grad=True)
    grads = {name: host(g).copy() for name, _, g in model.parameters()}

    def loss() -> float:
        return float(np.sum(host(model.infer(x)) * dy))

    eps = 1e-6
    for name, param, _ in model.parameters():
        p = param  # a live view: perturb in place
        flat = p.reshape(-1)
        for k in range(0, flat.size, max(1, flat.size // 5)):
            old = float(host(flat[k]))
            flat[k] = old + eps
            up = loss()
            flat[k] = old - eps
            down = loss()
            flat[k] = old
            np.testing.assert_allclose(grads[name].reshape(-1)[k], (up - down) / (2 * eps), rtol=1e-5, atol=1e-7,
                                       err_msg=f"{merge}: {name}[{k}]")


def keras_graph(merge):
    f64 = {"dtype": "float64"}
    inp = keras.Input(shape=(5,), name="features", **f64)
    h = keras.layers.Dense(6, activation="tanh", name="d0", **f64)(inp)
    a = keras.layers.Dense(4, activation="sigmoid", name="d1", **f64)(h)
    b = keras.layers.Dense(4, activation="elu", name="d2", **f64)(h)
    merged = {
        "concatenate": keras.layers.Concatenate, "add": keras.layers.Add, "subtract": keras.layers.Subtract,
        "multiply": keras.layers.Multiply, "average": keras.layers.Average, "maximum": keras.layers.Maximum,
        "minimum": keras.layers.Minimum,
    }[merge](name=merge, **f64)([a, b])
    out = keras.layers.Dense(3, name="out", **f64)(merged)
    return keras.Model(inputs=inp, outputs=out, name="graph")


@pytest.mark.parametrize("merge", MERGES)
def test_a_graph_trains_as_keras_trains_it(merge):
    """Same graph, same initial weights, SGD on the same batches in float64: the same weights after (to
    1e-6: Keras's torch backend loses float64 digits in its Dense)."""
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float64")  # else Keras's InputLayer computes in float32
    try:
        theirs = keras_graph(merge)
    finally:
        keras.config.set_dtype_policy("float32")
    ours = graph_model(merge=merge)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params()
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    rng = np.random.default_rng(3)
    # Keras casts float data to floatx (float32) first: data that float32 holds exactly.
    x, y = (rng.normal(size=s).astype(np.float32).astype(np.float64) for s in ((24, 5), (24, 3)))
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-6, atol=1e-6)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    ours.compile(optimizer=fc.optimizers.SGD(learning_rate=0.1), loss="mse")
    theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-6, atol=1e-6)


def test_maximum_splits_tied_gradients_as_torch_does(backend):
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 0.0]])
    c = np.array([[1.0, 5.0, 3.0]])
    layer = layers.Maximum(dtype="float64")
    layer.forward([a, b, c], ForwardContext(input_owned=True, output_private=True))
    grads = [host(g) for g in layer.backward(np.ones((1, 3)))]
    ta, tb, tc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
    torch.maximum(torch.maximum(ta, tb), tc).sum().backward()
    for ours, theirs in zip(grads, (ta.grad, tb.grad, tc.grad)):
        np.testing.assert_array_equal(ours, theirs.numpy())


def two_input_model():
    left = fc.Input(shape=(3,), name="left")
    right = fc.Input(shape=(2,), name="right")
    h = layers.Concatenate()([layers.Dense(4, activation="relu")(left), right])
    out = layers.Dense(2, activation="softmax")(h)
    return fc.Model([left, right], out)


def test_several_inputs_as_a_list_or_a_dict_train_the_same(backend, rng):
    xl, xr = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(40, 2)).astype(np.float32)
    y = rng.integers(0, 2, size=40)
    runs = []
    for inputs in ([xl, xr], {"right": xr, "left": xl}):
        fc.set_seed(5)
        model = two_input_model()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        history = model.fit(inputs, y, batch_size=8, epochs=2, verbose=0)
        runs.append((history.history["loss"], model.get_weights(), model.predict(inputs)))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("x, words", [
    (lambda xl, xr: xl, "takes 2 inputs ['left', 'right']"),
    (lambda xl, xr: [xl], "a list of 1"),
    (lambda xl, xr: {"left": xl}, "got a dict with keys ['left']"),
    (lambda xl, xr: [xl, xr[:5]], "same number of samples"),
    (lambda xl, xr: [xl, xl], "x[1]: model 'functional' takes 2 features"),
])  # fmt: skip
def test_bad_inputs_are_named_and_change_nothing(rng, x, words):
    model = two_input_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    xl, xr = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        model.fit(x(xl, xr), np.zeros(10), verbose=0)
    assert words in str(info.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_chain_runs_exactly_as_the_same_sequential(rng):
    """A functional chain takes the Sequential path: same numbers, same device operations."""
    from fcgpu.testing import count_device_ops, stand_in_backend

    x = rng.normal(size=(64, 12)).astype(np.float32)
    y = rng.integers(0, 4, size=64)
    with fc.use_backend(stand_in_backend()):
        fc.set_seed(9)
        seq = fc.Sequential([fc.Input(shape=(12,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                             layers.Dense(4, activation="softmax")])
        fc.set_seed(9)
        inp = fc.Input(shape=(12,))
        h = layers.Dropout(0.3)(layers.Dense(16, activation="relu")(inp))
        func = fc.Model(inp, layers.Dense(4, activation="softmax")(h))
        ops = []
        for model in (seq, func):
            model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
            model.train_step(x[:32], y[:32])
            with count_device_ops() as counted:
                model.train_step(x[32:], y[32:])
            ops.append(counted.total)
        assert ops[0] == ops[1]
        for a, c in zip(seq.get_weights(), func.get_weights()):
            np.testing.assert_array_equal(a, c)


def test_summary_lists_inputs_and_connections():
    model = two_input_model()
    text = summary_text(model)
    assert "left (InputLayer)" in text and "right (InputLayer)" in text
    assert "Connected to" in text
    assert "concatenate (Concatenate)" in text and "dense[0][0], right[0][0]" in text
    chain_in = fc.Input(shape=(4,))
    chain = fc.Model(chain_in, layers.Dense(2)(chain_in))
    assert "Connected to" not in summary_text(chain)  # a chain: Keras's three columns
    assert "input_layer (InputLayer)" in summary_text(chain)


def test_config_json_clone_and_file_round_trips(tmp_path, rng):
    model = two_input_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    xs = [rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)]
    model.fit(xs, rng.integers(0, 2, size=6), verbose=0)
    again = fc.models.model_from_json(model.to_json())
    assert [l.name for l in again.layers] == [l.name for l in model.layers]
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict(xs), model.predict(xs))
    clone = fc.models.clone_model(model)
    assert clone.count_params() == model.count_params()
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    np.testing.assert_array_equal(loaded.predict(xs), model.predict(xs))
    assert type(loaded).__name__ == "Functional"


def test_flatten_takes_images_in_sequential_and_functional(backend, rng):
    x = rng.normal(size=(20, 4, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=20)
    seq = fc.Sequential([layers.Flatten(input_shape=(4, 3)), layers.Dense(5, activation="relu"), layers.Dense(2)])
    inp = fc.Input(shape=(4, 3))
    func = fc.Model(inp, layers.Dense(2)(layers.Dense(5, activation="relu")(layers.Flatten()(inp))))
    func.set_weights(seq.get_weights())
    np.testing.assert_allclose(seq.predict(x), func.predict(x), rtol=1e-6)
    np.testing.assert_allclose(seq.predict(x), host(seq(x)), rtol=1e-6)
    assert seq.output_shape == (None, 2)
    seq.compile(loss=fc.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="sgd")
    seq.fit(x, y, verbose=0)
    for wrong in ((2, 3, 4), (2, 12)):
        with pytest.raises(ValueError, match=r"takes samples of shape \(4, 3\)"):
            seq.predict(rng.normal(size=wrong))
    lazy = fc.Sequential([layers.Flatten(), layers.Dense(2)])
    assert lazy.predict(x).shape == (20, 2)
    with pytest.raises(ValueError, match="no Flatten"):
        fc.Sequential([layers.Dense(2)]).predict(x)


def test_reshape_reports_shapes_and_refuses_dense_after_rank_two():
    inp = fc.Input(shape=(12,))
    r = layers.Reshape((3, -1))(inp)
    assert r.shape == (None, 3, 4)
    with pytest.raises(ValueError, match="add a Flatten"):
        layers.Dense(2)(r)
    out = layers.Dense(2)(layers.Flatten()(layers.Activation("relu")(r)))
    model = fc.Model(inp, out)
    assert [row.split()[0] for row in summary_text(model).splitlines() if "(" in row and "Layer (type)" not in row][:3] == [
        "input_layer", "reshape", "activation"]
    with pytest.raises(ValueError, match="target_shape"):
        layers.Reshape((5,))(inp)


@pytest.mark.parametrize("make, error, words", [
    (lambda: fc.Model(fc.Input(shape=(3,)), layers.Dense(2)(fc.Input(shape=(3,)))), ValueError, "Graph disconnected"),
    (lambda: fc.Model(layers.Dense(2)(fc.Input(shape=(3,))), None), TypeError, "expected fcgpu.Input"),
    (lambda: fc.Model(), TypeError, "subclassed models"),
    (lambda: layers.Add()(fc.Input(shape=(3,))), ValueError, "list of at least 2"),
    (lambda: layers.Add()([fc.Input(shape=(3,)), fc.Input(shape=(4,))]), ValueError, "inputs of one shape"),
    (lambda: layers.Subtract()([fc.Input(shape=(3,))] * 3), ValueError, "expected 2 inputs"),
    (lambda: layers.Concatenate(axis=0), ValueError, "axis"),
    (lambda: fc.Input(shape=(3,)) + fc.Input(shape=(3,)), TypeError, "merge layers"),
])  # fmt: skip
def test_bad_graphs_are_refused_clearly(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_a_layer_called_twice_in_one_graph_is_refused():
    inp = fc.Input(shape=(3,))
    shared = layers.Dense(3)
    with pytest.raises(NotImplementedError, match="called twice"):
        fc.Model(inp, shared(shared(inp)))


def test_several_outputs_predict_as_keras_returns_them(backend, rng):
    inp = fc.Input(shape=(4,))
    h = layers.Dense(5, activation="relu")(inp)
    a, b = layers.Dense(2, name="a")(h), layers.Dense(3, activation="softmax", name="b")(h)
    as_list, as_dict = fc.Model(inp, [a, b]), fc.Model(inp, {"first": a, "second": b})
    x = rng.normal(size=(6, 4)).astype(np.float32)
    out = as_list.predict(x)
    assert isinstance(out, list) and [o.shape for o in out] == [(6, 2), (6, 3)]
    single_a, single_b = fc.Model(inp, a), fc.Model(inp, b)
    np.testing.assert_allclose(out[0], single_a.predict(x), rtol=1e-6)
    np.testing.assert_allclose(out[1], single_b.predict(x), rtol=1e-6)
    by_name = as_dict.predict(x)
    assert sorted(by_name) == ["first", "second"]
    np.testing.assert_allclose(by_name["second"], out[1], rtol=1e-6)
    assert as_list.output_names == ["a", "b"] and as_list.output_shape == [(None, 2), (None, 3)]
    assert [host(o).shape for o in as_list(x)] == [(6, 2), (6, 3)]
    with pytest.raises(ValueError, match="expected 2 entries"):
        as_list.compile(loss=["mse"], optimizer="sgd")


def test_gradients_of_several_outputs_match_central_differences(backend, rng):
    inp = fc.Input(shape=(3,))
    h = layers.Dense(4, activation="tanh", dtype="float64")(inp)
    model = fc.Model(inp, [layers.Dense(2, dtype="float64")(h), h])  # an output that also feeds a layer
    x, dy = rng.normal(size=(5, 3)), rng.normal(size=(5, 6))
    model.forward(x)
    model.backward(dy)
    grads = {name: host(g).copy() for name, _, g in model.parameters()}
    kernel = model.parameters()[0][1]
    eps = 1e-6
    for k in range(kernel.size):
        flat = kernel.reshape(-1)
        old = float(host(flat[k]))
        flat[k] = old + eps
        up = float(np.sum(host(model.infer(x)) * dy))
        flat[k] = old - eps
        down = float(np.sum(host(model.infer(x)) * dy))
        flat[k] = old
        np.testing.assert_allclose(grads["dense/kernel"].reshape(-1)[k], (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_models_nest_as_layers(backend, rng):
    """A Sequential inside a functional model and inside a Sequential: its parameters keep its name,
    and the whole trains as the flat model with the same weights."""
    fc.set_seed(2)
    base = fc.Sequential([fc.Input(shape=(6,)), layers.Dense(5, activation="relu"), layers.Dense(4, activation="relu")],
                         name="base")
    inp = fc.Input(shape=(6,))
    outer = fc.Model(inp, layers.Dense(3, activation="softmax")(base(inp)))
    names = [n for n, _ in outer.trainable_variables]
    assert names == ["base/dense/kernel", "base/dense/bias", "base/dense_1/kernel", "base/dense_1/bias",
                     "dense/kernel", "dense/bias"]
    flat = fc.Sequential([fc.Input(shape=(6,)), layers.Dense(5, activation="relu"), layers.Dense(4, activation="relu"),
                          layers.Dense(3, activation="softmax")])
    flat.set_weights(outer.get_weights())
    stacked = fc.Sequential([base, layers.Dense(3, activation="softmax", name="head")])
    x, y = rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, size=32)
    np.testing.assert_allclose(outer.predict(x), flat.predict(x), rtol=1e-6)
    for model in (outer, flat):
        model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.SGD(0.1))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(outer.get_weights(), flat.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert stacked.predict(x).shape == (32, 3)


def test_a_model_of_images_nested_first_in_a_sequential(rng):
    """Keras's classification tutorial: Sequential([model, Softmax()]) around a Flatten model."""
    model = fc.Sequential([layers.Flatten(input_shape=(4, 3)), layers.Dense(5)])
    probability_model = fc.Sequential([model, layers.Softmax()])
    assert probability_model.output_shape == (None, 5)
    x = rng.normal(size=(6, 4, 3)).astype(np.float32)
    out = probability_model.predict(x)
    logits = model.predict(x)
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(out, want / want.sum(1, keepdims=True), rtol=1e-5)
