"""What fit, evaluate and predict take as data: arrays, lists, pandas objects, generators and
PyDatasets (fcgpu's and Keras's), with Keras's steps_per_epoch rules and clear errors that name
the batch at fault."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.training.data_adapter import RAN_OUT, is_stream


@pytest.fixture(autouse=True)
def _step_by_step():
    """Arrays and streams compared bit for bit: both step by step. Captured as a CUDA graph, fit on
    arrays sums its GEMMs in another order than the stream path's (tests/training/test_graph_step.py
    holds the two to float tolerance)."""
    fc.config.set_graphs(False)
    yield
    fc.config.set_graphs("auto")

X = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
Y = (X[:, :3].sum(1) > X[:, 3:].sum(1)).astype(np.int64)
VX = np.random.default_rng(1).normal(size=(30, 6)).astype(np.float32)
VY = (VX[:, :3].sum(1) > VX[:, 3:].sum(1)).astype(np.int64)


def model(optimizer="adam", dropout=False):
    fc.set_seed(3)
    layers = [fc.Dense(12, activation="relu")] + ([fc.Dropout(0.3, seed=1)] if dropout else []) + [fc.Dense(2)]
    m = fc.Sequential(layers)
    m.compile(loss="softmax_cross_entropy", optimizer=optimizer, metrics=["accuracy"])
    return m


def batches(x, y, size=16):
    for i in range(0, len(x), size):
        yield x[i : i + size], y[i : i + size]


class Batches(fc.utils.PyDataset):
    def __init__(self, x, y, size=16, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.size, self.ends, self.begins = x, y, size, 0, 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size : (i + 1) * self.size], self.y[i * self.size : (i + 1) * self.size]

    def on_epoch_begin(self):
        self.begins += 1

    def on_epoch_end(self):
        self.ends += 1


def assert_same_history(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=0, err_msg=key)


def test_what_counts_as_a_stream():
    assert is_stream(batches(X, Y)) and is_stream(Batches(X, Y)) and is_stream(iter([(X, Y)]))
    for data in (X, [[1.0, 2.0]], (X, Y), None, "x", {"x": X}):
        assert not is_stream(data)


@pytest.mark.parametrize("kind", ["generator", "pydataset", "pydataset_workers"])
def test_a_stream_trains_as_the_same_batches_of_arrays(backend, kind):
    want = model().fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_data=(VX, VY), verbose=0).history
    if kind == "generator":
        def forever():
            while True:
                yield from batches(X, Y)

        data, steps = forever(), 5
    else:
        data, steps = Batches(X, Y, **({"workers": 4, "use_multiprocessing": True} if kind.endswith("workers") else {})), None
    m = model()
    got = m.fit(data, epochs=3, steps_per_epoch=steps, shuffle=False, validation_data=Batches(VX, VY, 7), verbose=0)
    assert_same_history(got.history, want)
    assert got.params["steps"] == 5 and "samples" not in got.params
    ref = model()
    ref.fit(X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_validation_from_a_generator_is_read_once_and_kept(backend):
    want = model().fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_data=(VX, VY), verbose=0).history
    got = model().fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_data=batches(VX, VY, 8), verbose=0)
    assert_same_history(got.history, want)


def test_validation_steps_take_that_many_batches_each_epoch():
    m = model()
    got = m.fit(Batches(X, Y), epochs=2, shuffle=False, validation_data=Batches(VX, VY, 10), validation_steps=1,
                verbose=0).history
    first = model()
    first.fit(Batches(X, Y), epochs=1, shuffle=False, verbose=0)
    assert got["val_loss"][0] == pytest.approx(first.evaluate(VX[:10], VY[:10])[0], rel=1e-12)


def test_pydataset_shuffles_its_batch_order_with_fit_and_calls_its_epoch_hooks():
    order = []

    class Recorded(Batches):
        def __getitem__(self, i):
            order.append(i)
            return super().__getitem__(i)

    data = Recorded(X, Y)
    fc.set_seed(5)
    model().fit(data, epochs=3, verbose=0)  # shuffle=True by default, as Keras
    epochs = [order[1:][5 * e : 5 * (e + 1)] for e in range(3)]  # order[0]: the batch read to build the model
    assert all(sorted(e) == [0, 1, 2, 3, 4] for e in epochs) and any(e != [0, 1, 2, 3, 4] for e in epochs)
    assert data.ends == 3 and data.begins == 3


def test_keras_pydataset_is_read_as_well():
    keras = pytest.importorskip("keras")

    class KerasBatches(keras.utils.PyDataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return X[i * 16 : (i + 1) * 16], Y[i * 16 : (i + 1) * 16]

    want = model().fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    assert_same_history(model().fit(KerasBatches(), epochs=2, shuffle=False, verbose=0).history, want)


def test_evaluate_and_predict_take_streams(backend):
    m = model()
    m.fit(X, Y, epochs=2, verbose=0)
    want = m.evaluate(X, Y, return_dict=True)
    assert m.evaluate(batches(X, Y, 13), return_dict=True) == pytest.approx(want, rel=1e-12)
    assert m.evaluate(Batches(X, Y), return_dict=True) == pytest.approx(want, rel=1e-12)
    assert m.evaluate(Batches(X, Y), steps=2, return_dict=True) == pytest.approx(m.evaluate(X[:32], Y[:32], return_dict=True), rel=1e-12)
    np.testing.assert_allclose(m.predict(batches(X, Y)), m.predict(X), rtol=1e-6)
    np.testing.assert_allclose(m.predict((X[i : i + 9] for i in range(0, 80, 9))), m.predict(X), rtol=1e-6)
    np.testing.assert_allclose(m.predict(Batches(X, Y), steps=2), m.predict(X[:32]), rtol=1e-6)


def test_pandas_and_lists_train_as_arrays():
    pd = pytest.importorskip("pandas")
    want = model().fit(X, Y, batch_size=16, epochs=2, shuffle=False, validation_data=(VX, VY), verbose=0).history
    frame = pd.DataFrame(X, columns=list("abcdef"))
    got = model().fit(frame, pd.Series(Y), batch_size=16, epochs=2, shuffle=False,
                      validation_data=(pd.DataFrame(VX), pd.Series(VY)), verbose=0).history
    assert_same_history(got, want)
    lists = model().fit(X.tolist(), Y.tolist(), batch_size=16, epochs=2, shuffle=False,
                        validation_data=(VX.tolist(), VY.tolist()), verbose=0).history
    for key in want:  # lists hold Python floats (float64), rounded to float32 as arrays are
        np.testing.assert_allclose(lists[key], want[key], rtol=1e-12)
    mixed = pd.DataFrame({"flag": X[:, 0] > 0, "count": np.arange(80), "value": X[:, 1]})
    m = model()
    m.fit(mixed, Y, epochs=1, verbose=0)  # bool, int and float columns: float64 rows
    np.testing.assert_allclose(m.predict(mixed), m.predict(mixed.to_numpy(dtype=np.float64)), rtol=1e-6)
    with pytest.raises((TypeError, ValueError), match="x"):
        model().fit(pd.DataFrame({"name": ["a"] * 80}), Y, verbose=0)


def test_generator_steps_per_epoch_goes_on_across_epochs_and_stops_when_it_runs_out():
    seen = []
    record = fc.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append((len(history_epochs), b)))
    history_epochs = []
    record.on_epoch_end = lambda e, logs: history_epochs.append(e)

    def five():
        for i in range(5):
            yield X[16 * i : 16 * (i + 1)], Y[16 * i : 16 * (i + 1)]

    with pytest.warns(UserWarning, match="ran out of data"):
        h = model().fit(five(), steps_per_epoch=2, epochs=4, verbose=0, callbacks=[record])
    assert h.epoch == [0, 1, 2] and seen == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    with pytest.warns(UserWarning, match="ran out of data"):
        h = model().fit(five(), epochs=3, verbose=0)  # all of it in epoch 1; nothing is left for epoch 2
    assert h.epoch == [0]


def test_pydataset_steps_per_epoch_is_keras_rule():
    """As Keras 3: epochs go on where the last stopped; past the end an epoch ends early, with the
    warning, and the next starts at batch 0."""
    order = []

    class Recorded(Batches):
        def __getitem__(self, i):
            order.append(i)
            return super().__getitem__(i)

    with pytest.warns(UserWarning, match="ran out of data"):
        h = model().fit(Recorded(X[:48], Y[:48]), steps_per_epoch=2, epochs=3, shuffle=False, verbose=0)
    assert h.epoch == [0, 1, 2] and order[1:] == [0, 1, 2, 0, 1]


def test_the_next_batch_is_read_while_this_one_computes():
    events = []

    def tracked():
        for i, batch in enumerate(batches(X, Y)):
            events.append(f"read {i}")
            yield batch

    hook = fc.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: events.append(f"end {b}"))
    model().fit(tracked(), epochs=1, verbose=0, callbacks=[hook])
    assert events == ["read 0", "read 1", "end 0", "read 2", "end 1", "read 3", "end 2", "read 4", "end 3", "end 4"]


def hostile(bad, at=2):
    for i, (xb, yb) in enumerate(batches(X, Y)):
        yield bad if i == at else (xb, yb)


@pytest.mark.parametrize("bad, error, words", [
    ((X[:16, :4], Y[:16]), ValueError, r"x, batch 2: x: .*takes 6 features"),
    ((X[:16], Y[:15]), ValueError, r"x, batch 2: x and x, batch 2: y: expected the same number of samples"),
    ((X[:16], np.full(16, 7)), ValueError, r"x, batch 2: y"),
    ((np.full((16, 6), np.nan, np.float32), Y[:16]), ValueError, r"x, batch 2: x"),
    ((X[:16].astype(str), Y[:16]), TypeError, r"x, batch 2: x"),
    ({"x": X[:16]}, TypeError, r"x, batch 2: expected a tuple \(x, y\)"),
    ("text", TypeError, r"x, batch 2: expected a tuple"),
    ((X[:16],), ValueError, r"x, batch 2: expected \(x, y\) with targets"),
    ((X[:16], Y[:16], np.ones(16), 1), ValueError, r"x, batch 2: expected a tuple .* got 4 entries"),
    ((X[:16], Y[:16], np.ones(15)), ValueError, r"x, batch 2: sample_weight"),
    ((X[:16], Y[:16], np.full(16, -1.0)), ValueError, r"x, batch 2: sample_weight"),
])  # fmt: skip
def test_a_bad_batch_mid_epoch_is_named(bad, error, words):
    m = model()
    with pytest.raises(error, match=words):
        m.fit(hostile(bad), epochs=1, verbose=0)


def test_weighted_batches_train_as_weighted_arrays(backend):
    """(x, y, sample_weight) batches weigh the loss and the metrics as fit(sample_weight=) does."""
    w = np.random.default_rng(3).uniform(0.0, 2.0, len(X))
    want = model().fit(X, Y, batch_size=16, epochs=2, shuffle=False, sample_weight=w, verbose=0)
    got = model().fit(((X[i : i + 16], Y[i : i + 16], w[i : i + 16]) for _ in range(2) for i in range(0, len(X), 16)),
                      steps_per_epoch=-(-len(X) // 16), epochs=2, verbose=0)
    assert_same_history(got.history, want.history)
    unweighted = model().fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert abs(unweighted.history["loss"][-1] - got.history["loss"][-1]) > 1e-4
    m = model()
    batches_w = [(X[i : i + 16], Y[i : i + 16], w[i : i + 16]) for i in range(0, len(X), 16)]
    assert m.evaluate(iter(batches_w), verbose=0) == pytest.approx(m.evaluate(X, Y, sample_weight=w, batch_size=16))


def test_three_tuples_without_weights_and_argument_errors():
    want = model().fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    got = model().fit(((xb, yb, None) for xb, yb in batches(X, Y)), epochs=1, verbose=0).history
    assert_same_history(got, want)
    for kwargs, error, words in [
        (dict(x=batches(X, Y), y=Y), ValueError, "y: a generator yields its own targets"),
        (dict(x=batches(X, Y), validation_split=0.2), ValueError, "validation_split: only for arrays"),
        (dict(x=X, y=Y, steps_per_epoch=2), ValueError, "steps_per_epoch: only for a generator or PyDataset"),
        (dict(x=X, y=Y, validation_data=(VX, VY), validation_steps=2), ValueError, "validation_steps: only for"),
        (dict(x=batches(X, Y), steps_per_epoch=0), ValueError, "steps_per_epoch"),
        (dict(x=iter([])), ValueError, "x: the generator yielded no batch"),
        (dict(x=X), ValueError, "y: expected targets, got None"),
        (dict(x=Batches(X[:0], Y[:0])), ValueError, "no batches"),
        (dict(x=batches(X, Y), validation_data=(VX,)), ValueError, "validation_data: expected a tuple"),
    ]:
        with pytest.raises(error, match=words):
            model().fit(epochs=1, verbose=0, **kwargs)


def test_a_stream_stops_on_a_non_finite_loss_naming_the_batch():
    def exploding():
        yield from batches(X[:32], Y[:32])
        yield X[:16] * 1e30, Y[:16]
        yield from batches(X[:32], Y[:32])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = model(optimizer=fc.optimizers.SGD(learning_rate=1e10))
        h = m.fit(exploding(), epochs=1, verbose=0)
    assert h.stopped is not None and h.stopped["epoch"] == 0 and h.stopped["batch"] <= 3


def test_ran_out_message_is_keras():
    assert RAN_OUT.startswith("Your input ran out of data; interrupting training.")


def test_a_functional_model_takes_streams_as_well():
    def make():
        fc.set_seed(0)
        inputs = fc.Input(shape=(6,))
        outputs = fc.layers.Dense(2)(fc.layers.Dense(7, activation="relu")(inputs))
        m = fc.Model(inputs, outputs)
        m.compile(loss="softmax_cross_entropy", optimizer="adam", metrics=["accuracy"])
        return m

    want = make().fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    m = make()
    assert_same_history(m.fit(Batches(X, Y), epochs=2, shuffle=False, verbose=0).history, want)
    np.testing.assert_allclose(m.predict(Batches(X, Y)), m.predict(X), rtol=1e-6)
