"""The Keras layers surface: Dropout (and its Philox generator), Activation, Input, input_shape /
input_dim, model.pop, and the summary, config and saving of models holding them."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from helpers import summary_text
from fcgpu.backends.cupy import kernel_sources
from fcgpu.activations import ACTIVATIONS
from fcgpu.backends import philox
from fcgpu.backends.numpy.backend import NumpyBackend
from fcgpu.layers.context import TRAINING, ForwardContext
from fcgpu.testing import count_device_ops, fake_cupy, stand_in_backend

NP = NumpyBackend()

# Random123's known-answer vectors (kat_vectors): counter (4 words), key (2 words) -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), 10, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, 10, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), 10,
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), 7,
     (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A)),
]  # fmt: skip

SUMMARY = """\
Model: "mlp"
_________________________________________________________________
Layer (type)                 Output Shape              Param #   
=================================================================
dense (Dense)                (None, 512)               401920    
_________________________________________________________________
dropout (Dropout)            (None, 512)               0         
_________________________________________________________________
dense_1 (Dense)              (None, 10)                5130      
_________________________________________________________________
activation (Activation)      (None, 10)                0         
=================================================================
Total params: 407,050
Trainable params: 407,050
Non-trainable params: 0
_________________________________________________________________"""


@pytest.fixture(params=["stand-in", pytest.param("gpu", marks=pytest.mark.gpu)])
def kernel_module(request):
    """The module whose ElementwiseKernel runs kernels/random.cuh: the host stand-in, or CuPy (-m gpu)."""
    if request.param == "stand-in":
        return fake_cupy
    try:
        return fc.backends.resolve_backend("cupy")[0].cp
    except fc.BackendUnavailable as e:
        pytest.skip(f"needs a usable CUDA device: {e}")


# -- Philox4x32-10 ------------------------------------------------------------------------------
@pytest.mark.parametrize("counter, key, rounds, expected", PHILOX_KAT)
def test_numpy_philox_known_answers(counter, key, rounds, expected) -> None:
    got = philox.philox4x32(np.array([counter], np.uint32), key, rounds=rounds)
    assert [int(w) for w in got[0]] == list(expected)


def test_kernel_philox_known_answers(kernel_module) -> None:
    """fc_philox4x32_10 of kernels/random.cuh, compiled as CuPy compiles it (on the host: by g++)."""
    kernel = kernel_module.ElementwiseKernel(
        "raw uint32 ctr, uint32 k0, uint32 k1",
        "raw uint32 out",
        "fc_u32x4 c = {ctr[4 * i], ctr[4 * i + 1], ctr[4 * i + 2], ctr[4 * i + 3]}; "
        "fc_u32x4 r = fc_philox4x32_10(c, k0, k1); "
        "out[4 * i] = r.x; out[4 * i + 1] = r.y; out[4 * i + 2] = r.z; out[4 * i + 3] = r.w",
        "fcgpu_test_philox",
        preamble=kernel_sources.preamble(),
    )
    for counter, key, rounds, expected in PHILOX_KAT:
        if rounds != 10:
            continue
        out = kernel_module.zeros(4, np.uint32)
        kernel(kernel_module.asarray(np.array(counter, np.uint32)), np.uint32(key[0]), np.uint32(key[1]), out, size=1)
        assert [int(w) for w in kernel_module.asnumpy(out)] == list(expected)


def test_kernel_stream_matches_numpy_across_the_high_counter_words(kernel_module) -> None:
    kernel = kernel_module.ElementwiseKernel(
        "uint64 seed, uint64 step, int64 start", "uint32 w",
        "w = fc_philox_word(seed, step, (unsigned long long)(start + i))", "fcgpu_test_stream",
        preamble=kernel_sources.preamble(),
    )  # fmt: skip
    for seed, step, start in [(0, 0, 0), (2**64 - 1, 2**40 + 3, 2**34 - 5), (12345, 7, 3)]:
        w = kernel(np.uint64(seed), np.uint64(step), np.int64(start), kernel_module.empty(37, np.uint32))
        np.testing.assert_array_equal(kernel_module.asnumpy(w), philox.stream_words(seed, step, start, 37))


def test_stream_layout_is_four_words_per_counter() -> None:
    """Element e of (seed, step) is word e % 4 of the block for counter (e // 4, step), key seed."""
    seed, step = 0x0123456789ABCDEF, 2**33 + 9
    words = philox.stream_words(seed, step, 0, 12)
    for e in range(12):
        block = philox.philox4x32(np.array([[e // 4, 0, step & 0xFFFFFFFF, step >> 32]], np.uint32),
                                  (seed & 0xFFFFFFFF, seed >> 32))  # fmt: skip
        assert words[e] == block[0, e % 4]
    np.testing.assert_array_equal(philox.stream_words(seed, step, 5, 6), words[5:11])


def test_dropout_constants() -> None:
    assert philox.dropout_constants(0.0) == (0, 1.0)
    assert philox.dropout_constants(0.5) == (2**31, 2.0)
    assert philox.dropout_constants(np.nextafter(1.0, 0.0))[0] == 2**32 - 1


# -- the dropout kernel against the NumPy backend ----------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["float32", "float64", "float16"])
def test_masks_and_values_identical_on_numpy_and_the_kernel(kernel_module, dtype, rng) -> None:
    """Bit for bit, one multiply by the scale in the arithmetic type (no FMA to contract); the
    denormal input only on the host (the device flushes it to zero, -ftz=true)."""
    from fcgpu.backends.cupy.backend import CupyBackend

    cp = CupyBackend(kernel_module)
    x = rng.normal(size=(33, 17)).astype(dtype)
    tiny = (1e-40 if dtype != np.float16 else 1e-7) if kernel_module is fake_cupy else 0.5
    x.flat[:8] = [np.inf, -np.inf, np.nan, -0.0, 0.0, tiny, 3.0, -3.0]
    for seed, step, rate, offset in [(0, 0, 0.5, 0), (2**64 - 1, 2**32 + 1, 0.1, 2**35), (99, 3, 0.9, 17)]:
        want = NP.dropout_forward(x, np.empty_like(x), seed, step, rate, offset)
        got = cp.to_numpy(cp.dropout_forward(cp.from_numpy(x), cp.empty(x.shape, dtype), seed, step, rate, offset))
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))  # bit for bit, NaN included
        back = cp.to_numpy(cp.dropout_backward(cp.from_numpy(x), cp.empty(x.shape, dtype), seed, step, rate, offset))
        np.testing.assert_array_equal(back.view(np.uint8), want.view(np.uint8))
        drop = philox.dropped(seed, step, offset, x.shape, philox.dropout_constants(rate)[0])
        assert np.all(want[drop] == 0)
        kept = (x.astype(np.float32 if dtype == np.float16 else dtype) * (1 / (1 - rate))).astype(dtype)
        np.testing.assert_array_equal(want[~drop], kept[~drop])


def test_offset_makes_a_shard_draw_its_rows_of_the_whole_batch_mask(backend) -> None:
    x = backend.from_numpy(np.ones((8, 5), np.float32))
    whole = fc.to_numpy(backend.dropout_forward(x, backend.empty((8, 5), np.float32), 11, 4, 0.5))
    shard = fc.to_numpy(backend.dropout_forward(x[3:], backend.empty((5, 5), np.float32), 11, 4, 0.5, offset=3 * 5))
    np.testing.assert_array_equal(shard, whole[3:])


def test_dropout_keeps_the_mean_and_drops_the_rate(backend) -> None:
    n, rate = 200_000, 0.3
    layer = fc.Dropout(rate, seed=2024)
    y = fc.to_numpy(layer.forward(np.ones((200, n // 200), np.float32), TRAINING))
    dropped = float(np.mean(y == 0))
    assert set(np.unique(y)) == {np.float32(0), np.float32(1 / (1 - rate))}
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    assert abs(float(y.mean()) - 1.0) < 5 * np.sqrt(rate / (1 - rate) / n)


# -- the Dropout layer ----------------------------------------------------------------------------
def test_dropout_is_the_identity_outside_training_with_no_device_operation() -> None:
    with fc.use_backend(stand_in_backend()) as b:
        layer = fc.Dropout(0.5)
        x = b.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))
        layer.build(4)
        with count_device_ops() as ops:
            assert layer(x) is x and layer.infer(x) is x and layer.forward(x) is x
            assert layer.backward(x) is x
        assert ops.total == 0 and layer.step == 0
        with count_device_ops() as ops:
            layer.forward(x, TRAINING)
            layer.backward(x)
        assert ops.names == {"fcgpu_dropout": 2} and ops.total == 2 and layer.step == 1


def test_a_model_infers_through_dropout_as_without_it(rng) -> None:
    """model(x), predict and evaluate: the same numbers and the same device operations as the
    model without its Dropout layers."""
    with fc.use_backend(stand_in_backend()):
        plain = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(7, activation="relu"), fc.Dense(3)])
        dropped = fc.Sequential([fc.Input(shape=(5,)), fc.Dropout(0.5), fc.Dense(7, activation="relu"),
                                 fc.Dropout(0.3), fc.Dense(3), fc.Dropout(0.1)])  # fmt: skip
        dropped.set_weights(plain.get_weights())
        x, y = rng.normal(size=(9, 5)).astype(np.float32), rng.integers(0, 3, 9)
        counts = []
        for model in (plain, dropped):
            model.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"])
            with count_device_ops() as ops:
                out = fc.to_numpy(model(x)).copy(), model.predict(x), model.evaluate(x, y, return_dict=True)
            counts.append(ops.names)
            if model is plain:
                want = out
        np.testing.assert_array_equal(out[0], want[0])
        np.testing.assert_array_equal(out[1], want[1])
        assert out[2] == want[2] and counts[0] == counts[1]
        assert all(layer.step == 0 for layer in dropped.layers if isinstance(layer, fc.Dropout))


def test_rate_zero_is_the_identity_in_training_too(backend) -> None:
    x = backend.from_numpy(np.ones((2, 3), np.float32))
    layer = fc.Dropout(0)
    assert layer.forward(x, TRAINING) is x and layer.step == 0


def test_the_step_advances_once_per_training_forward_and_backward_reuses_its_mask(backend, rng) -> None:
    layer = fc.Dropout(0.5, seed=7)
    x = rng.normal(size=(16, 32)).astype(np.float32)
    first = fc.to_numpy(layer.forward(x, TRAINING)).copy()
    layer.infer(x), layer.forward(x)  # inference forwards draw nothing
    second = fc.to_numpy(layer.forward(x, TRAINING)).copy()
    assert layer.step == 2 and not np.array_equal(first == 0, second == 0)
    dx = fc.to_numpy(layer.backward(np.ones_like(x)))
    np.testing.assert_array_equal(dx == 0, second == 0)
    assert np.all(dx[dx != 0] == np.float32(2.0))
    assert layer.backward(np.ones_like(x), input_grad=False) is None


def test_dropout_gradient_against_central_differences(backend, rng) -> None:
    """Float64, the mask held fixed (the step set back before every forward)."""
    layer = fc.Dropout(0.4, seed=5, dtype="float64")
    x, w = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))

    def value(a: np.ndarray) -> float:
        layer.step = 3
        return float(np.sum(fc.to_numpy(layer.forward(a, TRAINING)) * w))

    value(x)
    dx = fc.to_numpy(layer.backward(w))
    h = 1e-6
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        assert (value(up) - value(down)) / (2 * h) == pytest.approx(dx[idx], rel=1e-7, abs=1e-9)


def test_model_gradient_through_dropout_against_central_differences(backend, rng) -> None:
    model = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(6, activation="tanh", dtype="float64"),
                           fc.Dropout(0.5, seed=1), fc.Dense(3, dtype="float64")])  # fmt: skip
    dropout = model.layers[1]
    x, w = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))

    def value() -> float:
        dropout.step = 0
        return float(np.sum(fc.to_numpy(model.forward(x, TRAINING)) * w))

    value()
    model.backward(w)
    h = 1e-6
    for name, param, grad in model.parameters():
        analytic = fc.to_numpy(grad).copy()
        for idx in list(np.ndindex(param.shape))[:6]:
            original = float(fc.to_numpy(param)[idx])
            param[idx] = original + h
            up = value()
            param[idx] = original - h
            down = value()
            param[idx] = original
            assert (up - down) / (2 * h) == pytest.approx(analytic[idx], rel=1e-6, abs=1e-9), name


def test_seed_none_is_drawn_from_fcgpus_seeded_generator_at_build() -> None:
    def drawn(seed: int) -> int:
        fc.set_seed(seed)
        layer = fc.Dropout(0.5)
        assert layer.seed is None
        layer.build(3)
        return layer.seed

    assert drawn(3) == drawn(3) != drawn(4)


@pytest.mark.parametrize("kwargs, words", [
    ({"rate": 1.0}, "rate: expected a number in [0, 1)"), ({"rate": -0.1}, "rate"), ({"rate": float("nan")}, "rate"),
    ({"rate": True}, "rate"), ({"rate": "0.5"}, "rate"), ({"rate": 0.5, "seed": -1}, "seed"),
    ({"rate": 0.5, "seed": 2**64}, "seed"), ({"rate": 0.5, "seed": 1.5}, "seed"),
])  # fmt: skip
def test_dropout_arguments_are_checked(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace(")", r"\)")):
        fc.Dropout(**kwargs)
    with pytest.raises(TypeError, match="dtype"):
        fc.Dropout(0.5, dtype="int32")


def test_layers_without_a_dtype_take_the_one_before_them() -> None:
    model = fc.Sequential([fc.Dense(3, dtype="float64"), fc.Dropout(0.5), fc.Activation("relu")])
    assert [layer.dtype for layer in model.layers] == [np.float64] * 3
    assert fc.Dropout(0.5).dtype == np.float32 and fc.Dropout(0.5, dtype="float16").dtype == np.float16
    first = fc.Sequential([fc.Input(shape=(2,), dtype="float64"), fc.Dropout(0.5), fc.Dense(2, dtype="float64")])
    assert first.layers[0].dtype == np.float64
    assert first.predict(np.ones((3, 2))).dtype == np.float64


# -- the Activation layer ---------------------------------------------------------------------------
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activation_layer_equals_the_dense_activation(backend, act, rng) -> None:
    fused = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(4, activation=act, dtype="float64")])
    split = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(4, dtype="float64"), fc.Activation(act)])
    split.set_weights(fused.get_weights())
    x, dy = rng.normal(size=(6, 5)), rng.normal(size=(6, 4))
    np.testing.assert_allclose(fc.to_numpy(split(x)), fc.to_numpy(fused(x)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fc.to_numpy(split.predict(x)), fc.to_numpy(fused.predict(x)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fc.to_numpy(split.backward(dy)), fc.to_numpy(fused.backward(dy)), rtol=1e-10, atol=1e-13)
    for (_, _, a), (_, _, b) in zip(split.parameters(), fused.parameters()):
        np.testing.assert_allclose(fc.to_numpy(a), fc.to_numpy(b), rtol=1e-10, atol=1e-13)
    assert split.layers[1].count_params() == 0 and split.layers[1].activation.name == ACTIVATIONS[act].name


def test_activation_last_fuses_with_its_loss_as_dense_does(backend, rng) -> None:
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    fused = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(1, activation="sigmoid")])
    split = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(1), fc.Activation("sigmoid")])
    split.set_weights(fused.get_weights())
    for model in (fused, split):
        model.compile(loss="binary_crossentropy", optimizer=fc.optimizers.SGD(lr=0.5), metrics=["accuracy"])
        assert model.output_loss()[1]  # computed from the logits
        model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(split.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    z = backend.from_numpy(x[:3, :1])
    assert split.layers[1].forward(z, ForwardContext(logits=True)) is z


# -- Input, input_shape / input_dim, pop ----------------------------------------------------------
@pytest.mark.parametrize("first", [
    lambda: [fc.Input(shape=(4,)), fc.Dense(5)], lambda: [fc.Dense(5, input_dim=4)], lambda: [fc.Dense(5, input_shape=(4,))],
], ids=["Input", "input_dim", "input_shape"])  # fmt: skip
def test_a_declared_input_builds_the_model_as_it_is_created(first) -> None:
    fc.set_seed(0)
    model = fc.Sequential([*first(), fc.Dense(2)])
    assert model.built and len(model.layers) == 2 and model.input_features == 4  # the Input is not a layer
    fc.set_seed(0)
    lazy = fc.Sequential([fc.Dense(5), fc.Dense(2)])
    assert not lazy.built
    lazy.build((None, 4))
    for a, b in zip(model.get_weights(), lazy.get_weights()):
        np.testing.assert_array_equal(a, b)  # the same draws, in the same order
    added = fc.Sequential()
    added.add(fc.Input(shape=(4,)))
    added.add(fc.Dense(3))
    assert added.built and added.layers[0].in_features == 4


@pytest.mark.parametrize("make, error, words", [
    (lambda: fc.Input(shape=(28, 0)), ValueError, "shape: expected a tuple of positive ints"),
    (lambda: fc.Sequential([fc.Input(shape=(28, 28)), fc.Dense(3)]), ValueError, "add a Flatten"),
    (lambda: fc.Input(shape=None), ValueError, "shape"),
    (lambda: fc.Input(shape=(4,), batch_size=0), ValueError, "batch_size"),
    (lambda: fc.Dense(3, input_shape=(0,)), ValueError, "input_shape"),
    (lambda: fc.Dense(3, input_dim=4, input_shape=(4,)), ValueError, "not both"),
    (lambda: fc.Dense(3, input_dim=True), ValueError, "input_dim"),
    (lambda: fc.Sequential([fc.Dense(3), fc.Input(shape=(4,))]), ValueError, "only be the first entry"),
    (lambda: fc.Sequential([fc.Input(shape=(4,)), fc.Input(shape=(4,))]), ValueError, "already has an input"),
    (lambda: fc.Sequential([fc.Input(shape=(4,)), fc.Dense(2, input_dim=5)]), ValueError, "declares input_shape"),
    (lambda: fc.Sequential([fc.Input(shape=(4,)), fc.Dense(2)]).build((None, 5)), ValueError, "its Input"),
])  # fmt: skip
def test_input_declarations_are_checked(make, error, words) -> None:
    with pytest.raises(error, match=words):
        make()


def test_pop_removes_the_last_layer_and_keeps_the_input(backend, rng) -> None:
    model = fc.Sequential([fc.Input(shape=(4,)), fc.Dense(3), fc.Dropout(0.1), fc.Dense(2)])
    last = model.layers[-1]
    assert model.pop() is last and [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout"]
    assert model.output_features == 3
    model.add(fc.Dense(5, activation="softmax"))
    assert model.built and model.layers[-1].name == "dense_1" and model.count_params() == 15 + 20
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    model.fit(rng.normal(size=(16, 4)), rng.integers(0, 5, 16), epochs=1, batch_size=8, verbose=0)
    model.pop(), model.pop(), model.pop()
    assert model.layers == [] and model.input_features == 4
    with pytest.raises(TypeError, match="no layers to remove"):
        model.pop()
    model.add(fc.Dense(2))
    assert model.built and model.layers[0].in_features == 4


# -- summary, config, saving, training --------------------------------------------------------------
def test_summary_has_a_keras_row_for_every_layer_and_none_for_the_input() -> None:
    model = fc.Sequential([fc.Input(shape=(784,)), fc.Dense(512, activation="relu"), fc.Dropout(0.2),
                           fc.Dense(10), fc.Activation("softmax")], name="mlp")  # fmt: skip
    assert summary_text(model) == SUMMARY
    batched = fc.Sequential([fc.Input(shape=(3,), batch_size=32), fc.Dropout(0.5)])
    assert "dropout (Dropout)            (32, 3)                   0" in summary_text(batched)


def test_model_with_the_new_layers_trains(backend, rng) -> None:
    fc.set_seed(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    model = fc.Sequential([fc.Input(shape=(8,)), fc.Dense(32), fc.Activation("relu"), fc.Dropout(0.2),
                           fc.Dense(4), fc.Activation("softmax")])  # fmt: skip
    model.compile(loss="sparse_categorical_crossentropy", optimizer=fc.optimizers.Adam(lr=0.01),
                  metrics=["accuracy"])  # fmt: skip
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.4 * history.history["loss"][0]
    assert model.layers[2].step == 15 * 8
    assert model.evaluate(x, y, return_dict=True)["accuracy"] > 0.85


def test_same_seed_same_training_on_numpy_and_the_stand_in(rng) -> None:
    x, y = rng.normal(size=(64, 6)), rng.integers(0, 3, 64)
    runs = []
    for backend in (NP, stand_in_backend()):
        with fc.use_backend(backend):
            fc.set_seed(5)
            model = fc.Sequential([fc.Dense(16, activation="tanh", input_dim=6, dtype="float64"), fc.Dropout(0.5),
                                   fc.Dense(3, dtype="float64")])  # fmt: skip
            model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1))
            model.fit(x, y, epochs=2, batch_size=16, verbose=0)
            runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_config_round_trips_every_new_layer() -> None:
    for layer in (fc.Dropout(0.25, seed=3, name="drop"), fc.Dropout(0.1, dtype="float16"), fc.Activation("tanh"),
                  fc.Dense(4, input_dim=7), fc.Dense(4, input_shape=[7])):  # fmt: skip
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config
    assert fc.Dense(4, input_dim=7).get_config()["input_shape"] == [7] and "input_shape" not in fc.Dense(4).get_config()
    model = fc.Sequential([fc.Input(shape=(7,), batch_size=2, name="x"), fc.Dense(4), fc.Dropout(0.5)])
    again = fc.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config() and again.built
    # Keras lists its InputLayer among the layers: an Input config there is the model's input.
    config = model.get_config()
    config["layers"].insert(0, config.pop("input"))
    assert fc.Sequential.from_config(config).get_config() == model.get_config()


def test_save_and_load_round_trip_every_new_layer(backend, tmp_path, rng) -> None:
    model = fc.Sequential([fc.Input(shape=(6,)), fc.Dense(8), fc.Activation("relu"), fc.Dropout(0.25),
                           fc.Dense(3, input_dim=8), fc.Activation("softmax")], name="keras_mlp")  # fmt: skip
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    x, y = rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, 32)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.fcgpu")
    loaded = fc.load_model(tmp_path / "m.fcgpu")
    assert loaded.get_config() == model.get_config()
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Activation", "Dropout", "Dense", "Activation"]
    assert loaded.layers[2].seed == model.layers[2].seed is not None and loaded.layers[2].rate == 0.25
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert summary_text(loaded) == summary_text(model)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # the optimizer state came back with it


def test_compile_gate_traces_the_dropout_kernel() -> None:
    from fcgpu.backends.cupy.backend import KERNEL_SPECS
    from support import cuda_compile as cc

    assert "random.cuh" in kernel_sources.HEADERS and "fc_dropout" in kernel_sources.preamble()
    calls = [c for c in cc.trace_backend_calls() if c.name == "fcgpu_dropout"]
    assert calls and "fcgpu_dropout" in KERNEL_SPECS
    assert {c.kinds for c in calls} == {("a", "s", "s", "s", "s", "s", "a")}
    variants = cc.sweep_variants({"fcgpu_dropout": KERNEL_SPECS["fcgpu_dropout"]}, calls=calls)
    assert {v.dtype for v in variants} == set(cc.DTYPES)


def test_a_dense_runs_the_dropout_after_it_in_its_own_pass(backend, rng, monkeypatch) -> None:
    """Dense + Dropout in training: one kernel forward and one backward for the pair on CuPy (two
    device operations fewer than apart), with exactly the numbers the two layers give apart."""
    x, y = rng.normal(size=(24, 5)).astype(np.float32), rng.integers(0, 3, 24)

    def train(fuse: bool):
        if not fuse:
            monkeypatch.setattr(fc.config.settings, "fusion", False)
        fc.set_seed(11)
        model = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(8, activation="tanh"), fc.Dropout(0.4),
                               fc.Dense(6, activation="relu"), fc.Dropout(0.2), fc.Dense(3)])
        model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1), metrics=["accuracy"])
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        monkeypatch.undo()
        return model.get_weights(), history.history["loss"]

    fused, apart = train(True), train(False)
    for a, b in zip(fused[0], apart[0]):
        np.testing.assert_array_equal(a, b)
    assert fused[1] == apart[1]
    if backend.name == "cupy":
        counts = []
        for fuse in (True, False):
            if not fuse:
                monkeypatch.setattr(fc.config.settings, "fusion", False)
            model = fc.Sequential([fc.Input(shape=(5,)), fc.Dense(8, activation="tanh"), fc.Dropout(0.4), fc.Dense(3)])
            model.compile(loss="softmax_cross_entropy", optimizer="sgd")
            xd, yd = model.prepare_data(x, y)
            model.train_batch(xd, yd)
            with count_device_ops() as ops:
                model.train_batch(xd, yd)
            counts.append(ops.total)
            monkeypatch.undo()
        assert counts[0] == counts[1] - 2
