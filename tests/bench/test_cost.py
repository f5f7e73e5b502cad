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


def test_step_paths_model_captured_below_step_by_step_for_784_512_10():
    for device in ("H100", "H200"):
        for optimizer in ("sgd", "adam"):
            paths = cost.step_paths_model([784, 512, 10], 128, "float32", optimizer, device)
            today, captured = paths["step_by_step"], paths["captured"]
            assert today.launches == 12 and today.bound == "host"
            assert captured.step_s < today.step_s
            assert captured.host_s == cost.STEP_MODEL_ASSUMPTIONS["graph_launch_s"] + cost.STEP_MODEL_ASSUMPTIONS[
                "python_replay_s"]
            assert paths["torch_eager"].launches == 15
            assert paths["torch_reduce_overhead"].step_s < paths["torch_eager"].step_s


def test_step_paths_model_floors_scale():
    a = cost.STEP_MODEL_ASSUMPTIONS
    small = cost.step_paths_model([784, 512, 10], 128)["step_by_step"]
    big = cost.step_paths_model([784, 512, 10], 4096)["step_by_step"]
    # the host's part does not depend on the batch; the compute bound grows with it
    assert small.host_s == big.host_s == 12 * a["launch_s"] + a["python_step_s"]
    assert 20 < big.compute_s / small.compute_s <= 32
    h100 = cost.step_paths_model([784, 512, 10], 128, device="H100")["step_by_step"]
    h200 = cost.step_paths_model([784, 512, 10], 128, device="H200")["step_by_step"]
    assert h200.memory_s == pytest.approx(h100.memory_s * 3.35 / 4.8)  # HBM bandwidth only
    assert h200.compute_s == h100.compute_s
    adam = cost.step_paths_model([784, 512, 10], 128, optimizer="adam")["step_by_step"]
    assert adam.memory_s > h100.memory_s  # two more state slots per parameter
    mixed = cost.step_paths_model([784, 512, 10], 128, dtype="mixed_float16")["step_by_step"]
    assert mixed.compute_s < h100.compute_s  # tensor cores
    assert mixed.launches == 14  # the input's cast and the overflow check
    assert mixed.host_s == 14 * a["launch_s"] + a["python_step_s"] + a["sync_read_s"]
    three = cost.step_paths_model([64, 256, 256, 10], 256, optimizer="adam")
    assert three["step_by_step"].launches == 18 and three["torch_eager"].launches == 22
    assert three["step_by_step"].kernel_floors_s == 18 * a["kernel_floor_s"]


@pytest.mark.parametrize("kwargs, name", [
    ({"widths": [784]}, "widths"),
    ({"widths": [784, 0]}, "widths"),
    ({"batch": 0}, "batch"),
    ({"batch": True}, "batch"),
    ({"dtype": "float64"}, "dtype"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"device": "A100"}, "device"),
])
def test_step_paths_model_refuses_bad_arguments_by_name(kwargs, name):
    args = {"widths": [784, 512, 10], "batch": 128, **kwargs}
    with pytest.raises(ValueError, match=f"^{name}:"):
        cost.step_paths_model(**args)
