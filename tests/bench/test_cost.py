"""fcgpu.bench.cost against counts worked out by hand."""
from __future__ import annotations

import pytest

import fcgpu as fc
from fcgpu.bench import cost


def test_four_by_four_linear_layer_batch_one():
    c = cost.dense_cost(1, 4, 4, use_bias=False)
    assert c.forward.flops == 2 * 4 * 4  # 2·M·N
    assert c.params == 4 * 4  # weights M·N
    # x (4) + W (16) read, y (4) written, float32
    assert c.forward.bytes == 4 * (4 + 16 + 4)
    # dx = dy @ W.T and dW = x.T @ dy: 2·M·N each
    assert c.backward.flops == 2 * 16 + 2 * 16
    # dy (4), W (16), x (4) read; dx (4), dW (16) written
    assert c.backward.bytes == 4 * (4 + 16 + 4 + 4 + 16)


def test_four_by_four_with_bias_and_relu():
    c = cost.dense_cost(1, 4, 4, use_bias=True, activation="relu")
    assert c.params == 16 + 4  # bias N
    assert c.forward.flops == 32 + 4 + 4  # GEMM, bias add, activation
    assert c.forward.bytes == 4 * (4 + 16 + 4 + 4)  # the bias read once too
    assert c.backward.flops == 4 + 32 + 32 + 4  # act', dx, dW, db
    # dy and y read for act', W read, dx written, x read, dW and db written
    assert c.backward.bytes == 4 * (4 + 4 + 16 + 4 + 4 + 16 + 4)
    assert c.forward_backward == c.forward + c.backward


def test_batch_and_dtype_scale_the_counts():
    one = cost.dense_cost(1, 784, 512, dtype="float32", activation="sigmoid")
    big = cost.dense_cost(128, 784, 512, dtype="float64", activation="sigmoid")
    assert big.forward.flops == 128 * one.forward.flops
    b, m, n = 128, 784, 512
    assert big.forward.bytes == 8 * (b * m + m * n + n + b * n)
    assert big.itemsize == 8


def test_no_input_gradient_drops_the_dx_gemm():
    full = cost.dense_cost(32, 64, 16, activation="tanh")
    first = cost.dense_cost(32, 64, 16, activation="tanh", input_grad=False)
    assert first.backward_input == cost.Cost()
    assert full.backward.flops - first.backward.flops == 2 * 32 * 64 * 16
    # W is no longer read and dx (32 x 64) no longer written
    assert full.backward.bytes - first.backward.bytes == 4 * (64 * 16 + 32 * 64)
    assert first.forward == full.forward


def test_gemm_cost():
    g = cost.gemm_cost(2, 3, 4, "float32")
    assert g.flops == 2 * 2 * 3 * 4
    assert g.bytes == 4 * (2 * 3 + 3 * 4 + 2 * 4)


def test_model_sums_its_layers():
    model = fc.Sequential([fc.Dense(512, activation="relu"), fc.Dense(10)])
    model.build((None, 784))
    b = 128
    step = cost.model_cost(model, b)
    gemm_flops = 2 * b * (784 * 512 + 512 * 10)
    assert step.forward.flops == gemm_flops + b * 512 + b * 512 + b * 10  # biases, one relu
    assert step.backward.flops == 2 * gemm_flops + b * 512 + b * 512 + b * 10  # dx, dW; act'; db
    assert step.params == model.count_params() == 784 * 512 + 512 + 512 * 10 + 10
    assert cost.layer_flops(model, b) == [c.forward.flops for c in step.layers]
    assert step.total == step.forward + step.backward


def test_layer_spec_of_a_dense_and_specs_cost_as_the_model():
    model = fc.Sequential([fc.Dense(6, activation="tanh", name="hidden"), fc.Dense(3, use_bias=False, dtype="float64")])
    model.build((None, 5))
    specs = cost.layer_specs(model)
    assert specs == [cost.LayerSpec(5, 6, "tanh", True, "float32", "hidden"),
                     cost.LayerSpec(6, 3, "linear", False, "float64", model.layers[1].name)]
    assert cost.LayerSpec.of(model.layers[0]) == specs[0]
    assert cost.model_cost(specs, 4) == cost.model_cost(model, 4)
    assert cost.train_step_cost(specs, 4) == cost.train_step_cost(model, 4)
    with pytest.raises(ValueError, match="at least one layer"):
        cost.model_cost([], 4)


def test_model_cost_needs_a_built_model():
    with pytest.raises(ValueError, match="not built"):
        cost.model_cost(fc.Sequential([fc.Dense(3)]), 4)


def test_training_step_adds_loss_and_optimizer_and_skips_the_input_gradient():
    model = fc.Sequential([fc.Dense(8, activation="relu"), fc.Dense(3)])
    model.build((None, 5))
    b = 4
    p = model.count_params()
    step = cost.train_step_cost(model, b)
    assert step.layers[0].backward_input == cost.Cost()
    assert step.optimizer == cost.Cost(2 * p, 4 * 3 * p)  # p -= lr g: read p, g; write p
    assert step.loss == cost.Cost(6 * b * 3, 2 * 4 * b * 3 + 8 * b)
    assert step.total == step.forward + step.backward + step.loss + step.optimizer
    with_dx = cost.train_step_cost(model, b, input_grad=True)
    assert with_dx.total.flops - step.total.flops == 2 * b * 5 * 8


def test_optimizer_state_bytes():
    assert cost.optimizer_cost(10, optimizer="sgd", momentum=0.9) == cost.Cost(40, 4 * 10 * 5)
    assert cost.optimizer_cost(10, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.1).flops == 80
    assert cost.optimizer_cost(10, "float64", optimizer="adam").bytes == 8 * 10 * 7
    with pytest.raises(ValueError, match="optimizer"):
        cost.optimizer_cost(10, optimizer="lbfgs")


def test_roofline_and_intensity():
    c = cost.Cost(flops=1000, bytes=100)
    assert c.intensity == 10.0
    assert cost.roofline_time(c, peak_flops=100.0, bandwidth=100.0) == 10.0  # compute bound
    assert cost.roofline_time(c, peak_flops=1e6, bandwidth=10.0) == 10.0  # memory bound
    assert c.roofline_time(1e6, 1e6) == pytest.approx(1e-3)
    assert cost.Cost(5, 0).intensity == float("inf")
    with pytest.raises(ValueError):
        cost.roofline_time(c, 0.0, 1.0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_rejects_non_positive_sizes(bad):
    with pytest.raises(ValueError, match="batch"):
        cost.dense_cost(bad, 4, 4)
