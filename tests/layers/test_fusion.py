"""The fusion planner (``fcgpu.layers.fusion``), the switch that turns it off (``fcgpu.config``), the
forward's context (``fcgpu.layers.context``) and the penalty's gradient scale as backward's argument."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu.layers.context import INFERENCE, TRAINING, ForwardContext
from fcgpu.layers.fusion import MASK, Group, Plan, plan_chain
from fcgpu.models.sequential import backward_chain, forward_chain
from fcgpu.testing import count_device_ops, stand_in_backend


@pytest.fixture
def fusion_on():
    """Restores the switch whatever a test leaves it at."""
    yield
    fc.config.set_fusion(True)


def dropout_mlp(seed: int = 11) -> fc.Sequential:
    fc.set_seed(seed)
    return fc.Sequential([fc.Input(shape=(5,)), fc.Dense(8, activation="tanh"), fc.Dropout(0.4),
                          fc.Dense(6, activation="relu"), fc.Dropout(0.2), fc.Dense(3)])  # fmt: skip


def dropout_graph(seed: int = 11) -> fc.Model:
    fc.set_seed(seed)
    x = fc.Input(shape=(5,))
    h = fc.Dropout(0.3)(fc.Dense(7, activation="sigmoid")(x))
    return fc.Model(x, fc.Dense(3)(h))


def kinds(plan: Plan) -> list[tuple[str, int]]:
    return [(group.kind, len(group.layers)) for group in plan.groups]


# -- the plan -------------------------------------------------------------------------------------
def test_the_planner_groups_a_dense_with_the_active_dropout_after_it_in_training_only(fusion_on) -> None:
    model = dropout_mlp()
    assert kinds(model.fusion_plan(True)) == [("epilogue", 2), ("epilogue", 2), ("layer", 1)]
    assert kinds(model.fusion_plan(False)) == [("layer", 1)] * 5
    fc.config.set_fusion(False)
    assert not fc.config.fusion_enabled()
    assert kinds(model.fusion_plan(True)) == [("layer", 1)] * 5


def test_layers_declare_what_they_fuse_as_data() -> None:
    dropout = fc.Dropout(0.5)
    assert dropout.fusion_kind(True) == MASK and dropout.fusion_kind(False) is None
    assert fc.Dropout(0.0).fusion_kind(True) is None
    assert MASK in fc.Dense(4, activation="relu").epilogue_kinds
    # softmax acts on rows; gelu's backward reads z: neither takes a mask in its epilogue
    assert not fc.Dense(4, activation="softmax").epilogue_kinds
    assert not fc.Dense(4, activation="gelu").epilogue_kinds
    assert not fc.ReLU().epilogue_kinds and fc.ReLU().fusion_kind(True) is None
    plan = plan_chain([fc.Dense(4, activation="softmax"), fc.Dropout(0.5)], True)
    assert kinds(plan) == [("layer", 1), ("layer", 1)]


def test_the_plan_is_cached_and_made_again_when_what_it_read_changes(fusion_on) -> None:
    model = dropout_mlp()
    plan = model.fusion_plan(True)
    assert model.fusion_plan(True) is plan
    model.layers[1].rate = 0.0  # the Dropout is the identity now: nothing to fuse
    changed = model.fusion_plan(True)
    assert changed is not plan and kinds(changed)[0] == ("layer", 1)
    model.layers[1].rate = 0.4
    model.layers[0].activation = fc.activations.get_activation("softmax")
    assert kinds(model.fusion_plan(True))[:2] == [("layer", 1), ("layer", 1)]
    before = model.fusion_plan(True)
    model.pop()
    assert model.fusion_plan(True) is not before and len(model.fusion_plan(True).layers) == 4
    fc.config.set_fusion(False)
    assert all(group.kind == "layer" for group in model.fusion_plan(True).groups)


def test_the_step_binding_takes_the_plan_and_binds_again_when_the_switch_changes(fusion_on, rng) -> None:
    model = dropout_mlp()
    model.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"])
    x, y = model.prepare_data(rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8))
    model.train_batch(x, y)
    binding = model.bound_step()
    assert binding.plan is model.forward_plan and kinds(binding.plan)[0] == ("epilogue", 2)
    model.train_batch(x, y)
    assert model.bound_step() is binding and list(binding.contexts) == [0]  # one context, made once
    fc.config.set_fusion(False)
    model.train_batch(x, y)
    assert model.bound_step() is not binding and kinds(model.forward_plan) == [("layer", 1)] * 5


def test_a_forward_context_derives_its_chain_contexts_once() -> None:
    ctx = ForwardContext(training=True, logits=True, row_offset=4, input_owned=False, output_private=False)
    only, first, middle, last = ctx.links
    assert ctx.links is ctx.links and ctx.variant(True, True, False) is middle
    assert (first.input_owned, first.output_private, first.logits) == (False, True, False)
    assert (middle.input_owned, middle.output_private, middle.logits) == (True, True, False)
    assert (last.input_owned, last.output_private, last.logits) == (True, False, True)
    assert (only.input_owned, only.output_private, only.logits) == (False, False, True)
    assert all(c.training and c.row_offset == 4 and c.plan is None for c in (only, first, middle, last))
    with pytest.raises(AttributeError):
        ctx.training = False  # type: ignore[misc]
    assert TRAINING.training and not INFERENCE.training


# -- fused and unfused: the same numbers, fewer operations ----------------------------------------
@pytest.mark.parametrize("make", [dropout_mlp, dropout_graph], ids=["sequential", "functional-chain"])
def test_fused_and_unfused_training_give_the_same_losses_and_weights(backend, rng, fusion_on, make) -> None:
    """The Philox mask is keyed by the global row, so the fused pass draws the Dropout's own masks."""
    x, y = rng.normal(size=(24, 5)).astype(np.float32), rng.integers(0, 3, 24)

    def train(fuse: bool):
        fc.config.set_fusion(fuse)
        model = make()
        model.compile(loss="softmax_cross_entropy", optimizer=fc.optimizers.SGD(lr=0.1), metrics=["accuracy"])
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        assert any(group.kind == "epilogue" for group in model.forward_plan.groups) == fuse
        return model.get_weights(), history.history["loss"], fc.to_numpy(model(x, training=True)).copy()

    fused, apart = train(True), train(False)
    for a, b in zip(fused[0], apart[0]):
        np.testing.assert_array_equal(a, b)
    assert fused[1] == apart[1]
    np.testing.assert_array_equal(fused[2], apart[2])


def test_a_fused_step_makes_fewer_device_operations(rng, fusion_on) -> None:
    """On the CuPy stand-in: each Dense + Dropout pair saves the Dropout's forward and backward kernels."""
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    counts = {}
    with fc.use_backend(stand_in_backend()):
        for fuse in (True, False):
            fc.config.set_fusion(fuse)
            model = dropout_mlp()
            model.compile(loss="softmax_cross_entropy", optimizer="sgd", metrics=["accuracy"])
            xd, yd = model.prepare_data(x, y)
            model.train_batch(xd, yd)
            with count_device_ops() as ops:
                model.train_batch(xd, yd)
            counts[fuse] = ops.total
    assert counts[True] == counts[False] - 4


# -- the plan type is open to other group kinds ----------------------------------------------------
def test_the_chain_functions_run_any_group_by_its_callables(rng) -> None:
    """A group of a kind the chain functions do not know (two layers run by callables of its own, as
    a whole-MLP kernel would be) runs through them unchanged, with the layers' own numbers."""
    layers = [fc.Dense(6, activation="relu", dtype="float64"), fc.Dense(3, dtype="float64")]
    layers[0].build(4), layers[1].build(6)
    x, dy = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    ctx = ForwardContext(training=True, input_owned=True, output_private=True)

    def both_forward(h, c):
        first, _, last = c.links[1:]
        return layers[1].forward(layers[0].forward(h, first), last)

    def both_backward(g, *, input_grad=True, scale=1.0):
        return layers[0].backward(layers[1].backward(g, scale=scale), input_grad=input_grad, scale=scale)

    mlp = Plan(tuple(layers), (Group("mlp", tuple(layers), both_forward, both_backward),), True, True, ())
    y = fc.to_numpy(forward_chain(mlp, x, ctx)).copy()
    dx = fc.to_numpy(backward_chain(mlp, dy)).copy()
    grads = [fc.to_numpy(layer.kernel_grad).copy() for layer in layers]
    plain = plan_chain(layers, True)
    np.testing.assert_array_equal(fc.to_numpy(forward_chain(plain, x, ctx)), y)
    np.testing.assert_array_equal(fc.to_numpy(backward_chain(plain, dy)), dx)
    for layer, grad in zip(layers, grads):
        np.testing.assert_array_equal(fc.to_numpy(layer.kernel_grad), grad)


# -- the penalty's gradient scale: backward's argument --------------------------------------------
def test_the_penalty_gradient_scale_is_an_argument_not_a_layer_attribute(rng) -> None:
    layer = fc.Dense(3, kernel_regularizer=fc.regularizers.L2(0.5), use_bias=False, dtype="float64")
    layer.build(4)
    assert not hasattr(layer, "gradient_scale") and not hasattr(fc.PReLU(), "gradient_scale")
    x, dy = rng.normal(size=(2, 4)), np.zeros((2, 3))
    grads = []
    for scale in (1.0, 8.0):
        layer.forward(x, TRAINING)
        layer.backward(dy, scale=scale)
        grads.append(fc.to_numpy(layer.kernel_grad).copy())
    kernel = fc.to_numpy(layer.kernel)
    np.testing.assert_allclose(grads[0], 2 * 0.5 * kernel)
    np.testing.assert_allclose(grads[1], 8 * grads[0])
