"""fcgpu.ops against PyTorch's autograd in float64, on NumPy and the stand-in: every op's value and
its gradient (a random cotangent, so each vector-Jacobian product is checked whole), broadcasting,
ties and boundaries; plain arrays outside tracing; no gradient through integers and booleans; the
errors for an unknown op and for NumPy on a traced tensor."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import ops

torch = pytest.importorskip("torch")

R = np.random.default_rng(7)


def _rand(shape, low=-2.0, high=2.0):
    return R.uniform(low, high, shape)


def _pos(shape):
    return R.uniform(0.2, 3.0, shape)


def _ties(shape):
    """Values with repeats (ties for max/min/maximum) and exact zeros (abs, relu)."""
    return R.integers(-2, 3, shape).astype(np.float64)


# (id, fcgpu function of ops and the inputs, torch function of torch and the inputs, inputs)
CASES = [
    ("add_broadcast", lambda o, a, b: o.add(a, b), lambda t, a, b: a + b, [_rand((3, 4)), _rand((4,))]),
    ("add_operator_col", lambda o, a, b: a + b, lambda t, a, b: a + b, [_rand((3, 1)), _rand((1, 4))]),
    ("subtract", lambda o, a, b: o.subtract(a, b), lambda t, a, b: a - b, [_rand((3, 4)), _rand((3, 1))]),
    ("subtract_operator", lambda o, a, b: a - b, lambda t, a, b: a - b, [_rand((2, 3)), _rand((2, 3))]),
    ("rsub_scalar", lambda o, a: 2.5 - a, lambda t, a: 2.5 - a, [_rand((2, 3))]),
    ("multiply", lambda o, a, b: o.multiply(a, b), lambda t, a, b: a * b, [_rand((2, 3, 4)), _rand((3, 1))]),
    ("multiply_operator_scalar", lambda o, a: 3.0 * a * 0.5, lambda t, a: 3.0 * a * 0.5, [_rand((5,))]),
    ("divide", lambda o, a, b: o.divide(a, b), lambda t, a, b: a / b, [_rand((3, 4)), _pos((4,))]),
    ("divide_operators", lambda o, a, b: 1.0 / b + a / 2.0, lambda t, a, b: 1.0 / b + a / 2.0, [_rand((3,)), _pos((3,))]),
    ("power", lambda o, a, b: o.power(a, b), lambda t, a, b: a ** b, [_pos((3, 4)), _rand((4,))]),
    ("power_operator_int", lambda o, a: a ** 3, lambda t, a: a ** 3, [_rand((3, 4))]),
    ("power_zero_base", lambda o, a, b: a ** b, lambda t, a, b: a ** b,
     [np.array([0.0, 0.0, 1.5, 0.0]), np.array([0.0, 1.0, 2.0, 2.0])]),
    ("rpow", lambda o, a: 2.0 ** a, lambda t, a: 2.0 ** a, [_rand((4,))]),
    ("negative", lambda o, a: o.negative(a) + (-a), lambda t, a: -a + (-a), [_rand((3,))]),
    ("abs_with_zeros", lambda o, a: o.abs(a) + abs(a), lambda t, a: t.abs(a) * 2, [_ties((4, 5))]),
    ("square", lambda o, a: o.square(a), lambda t, a: t.square(a), [_rand((3, 4))]),
    ("sqrt", lambda o, a: o.sqrt(a), lambda t, a: t.sqrt(a), [_pos((3, 4))]),
    ("exp", lambda o, a: o.exp(a), lambda t, a: t.exp(a), [_rand((3, 4))]),
    ("log", lambda o, a: o.log(a), lambda t, a: t.log(a), [_pos((3, 4))]),
    ("log1p", lambda o, a: o.log1p(a), lambda t, a: t.log1p(a), [_rand((3, 4), -0.9, 3.0)]),
    ("maximum_ties", lambda o, a, b: o.maximum(a, b), lambda t, a, b: t.maximum(a, b), [_ties((4, 5)), _ties((4, 5))]),
    ("maximum_broadcast", lambda o, a, b: o.maximum(a, b), lambda t, a, b: t.maximum(a, b), [_ties((4, 5)), _ties((5,))]),
    ("minimum_ties", lambda o, a, b: o.minimum(a, b), lambda t, a, b: t.minimum(a, b), [_ties((4, 5)), _ties((4, 1))]),
    ("maximum_scalar", lambda o, a: o.maximum(a, 0.0), lambda t, a: t.clamp(a, min=0.0), [_rand((6,))]),
    ("clip_boundaries", lambda o, a: o.clip(a, -1.0, 1.0), lambda t, a: t.clamp(a, -1.0, 1.0), [_ties((4, 5))]),
    ("where", lambda o, c, a, b: o.where(c > 0, a, b), lambda t, c, a, b: t.where(c > 0, a, b),
     [_rand((3, 4)), _rand((3, 4)), _rand((4,))]),
    ("where_scalar", lambda o, a: o.where(a > 0, a, 0.0), lambda t, a: t.where(a > 0, a, t.zeros((), dtype=a.dtype)),
     [_rand((3, 4))]),
    ("sigmoid", lambda o, a: o.sigmoid(a), lambda t, a: t.sigmoid(a), [_rand((3, 4), -40, 40)]),
    ("relu_zeros", lambda o, a: o.relu(a), lambda t, a: t.relu(a), [_ties((4, 5))]),
    ("softmax", lambda o, a: o.softmax(a), lambda t, a: t.softmax(a, dim=-1), [_rand((3, 5), -30, 30)]),
    ("softmax_axis0", lambda o, a: o.softmax(a, axis=0), lambda t, a: t.softmax(a, dim=0), [_rand((3, 5))]),
    ("log_softmax", lambda o, a: o.log_softmax(a), lambda t, a: t.log_softmax(a, dim=-1), [_rand((3, 5), -30, 30)]),
    ("log_softmax_axis0", lambda o, a: o.log_softmax(a, axis=0), lambda t, a: t.log_softmax(a, dim=0), [_rand((3, 5))]),
    ("mean_all", lambda o, a: o.mean(a), lambda t, a: a.mean(), [_rand((3, 4))]),
    ("mean_last", lambda o, a: o.mean(a, axis=-1), lambda t, a: a.mean(dim=-1), [_rand((3, 4))]),
    ("mean_tuple_keepdims", lambda o, a: o.mean(a, axis=(0, 2), keepdims=True),
     lambda t, a: a.mean(dim=(0, 2), keepdim=True), [_rand((2, 3, 4))]),
    ("sum_all", lambda o, a: o.sum(a), lambda t, a: a.sum(), [_rand((3, 4))]),
    ("sum_axis0_keepdims", lambda o, a: o.sum(a, axis=0, keepdims=True), lambda t, a: a.sum(dim=0, keepdim=True),
     [_rand((3, 4))]),
    ("max_all_ties", lambda o, a: o.max(a), lambda t, a: t.max(a), [_ties((4, 5))]),
    ("max_axis_ties", lambda o, a: o.max(a, axis=1), lambda t, a: t.amax(a, dim=1), [_ties((4, 5))]),
    ("min_axis_keepdims_ties", lambda o, a: o.min(a, axis=0, keepdims=True), lambda t, a: t.amin(a, dim=0, keepdim=True),
     [_ties((4, 5))]),
    ("cast_round_trip", lambda o, a: o.cast(o.cast(a, "float32"), "float64") * a,
     lambda t, a: a.to(t.float32).to(t.float64) * a, [_rand((3, 4))]),
    ("reshape", lambda o, a: o.reshape(a, (4, -1)) * o.reshape(a, (4, 3)), lambda t, a: a.reshape(4, -1) ** 2,
     [_rand((3, 4))]),
    ("expand_dims", lambda o, a, b: o.expand_dims(a, 1) * b, lambda t, a, b: a.unsqueeze(1) * b, [_rand((3,)), _rand((3, 4))]),
    ("expand_dims_last", lambda o, a: o.expand_dims(a, -1), lambda t, a: a.unsqueeze(-1), [_rand((3, 2))]),
    ("squeeze_axis", lambda o, a: o.squeeze(a, axis=-1), lambda t, a: a.squeeze(-1), [_rand((3, 1))]),
    ("squeeze_all", lambda o, a: o.squeeze(a), lambda t, a: a.squeeze(), [_rand((1, 3, 1))]),
    ("stack", lambda o, a, b: o.stack([a, b], axis=1), lambda t, a, b: t.stack([a, b], dim=1), [_rand((3, 2)), _rand((3, 2))]),
    ("concatenate", lambda o, a, b: o.concatenate([a, b], axis=-1), lambda t, a, b: t.cat([a, b], dim=-1),
     [_rand((3, 2)), _rand((3, 4))]),
    ("getitem", lambda o, a: a[:, 1:3] * a[0, :2] + a[..., None, 2], lambda t, a: a[:, 1:3] * a[0, :2] + a[..., None, 2],
     [_rand((3, 3))]),
    ("convert_to_tensor", lambda o, a: o.convert_to_tensor(a) * 2, lambda t, a: a * 2, [_rand((3,))]),
    ("mse_composite", lambda o, a, b: o.mean(o.square(a - b), axis=-1), lambda t, a, b: ((a - b) ** 2).mean(dim=-1),
     [_rand((5, 3)), _rand((5, 3))]),
    ("crossentropy_composite",
     lambda o, y, p: -o.sum(y * o.log(o.clip(o.softmax(p), 1e-7, 1.0)), axis=-1),
     lambda t, y, p: -(y * t.log(t.clamp(t.softmax(p, dim=-1), 1e-7, 1.0))).sum(dim=-1),
     [np.eye(4)[[0, 2, 1]], _rand((3, 4))]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_value_and_gradient_match_torch(backend, case):
    _, fn, torch_fn, inputs = case
    out_shape = tuple(torch_fn(torch, *[torch.from_numpy(a) for a in inputs]).shape)
    cotangent = R.standard_normal(out_shape)

    tensors = [torch.from_numpy(a.copy()).requires_grad_() for a in inputs]
    expected = torch_fn(torch, *tensors)
    (expected * torch.from_numpy(cotangent)).sum().backward()

    w = backend.from_numpy(cotangent)
    arrays = [backend.from_numpy(a) for a in inputs]
    argnums = tuple(range(len(inputs)))
    value, grads = ops.value_and_grad(lambda *xs: ops.sum(fn(ops, *xs) * w), argnums)(*arrays)
    plain = fn(ops, *arrays)  # outside tracing: a plain array of the backend
    assert backend.owns(backend.xp.asarray(plain)) and not isinstance(plain, ops.Tensor)
    np.testing.assert_allclose(backend.to_numpy(backend.xp.asarray(plain)), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(float(backend.to_numpy(value)), float((expected.detach() * torch.from_numpy(cotangent)).sum()), rtol=1e-12)
    for g, t, a in zip(grads, tensors, inputs):
        assert g.shape == a.shape and g.dtype == np.float64
        want = np.zeros_like(a) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(backend.to_numpy(g), want, rtol=1e-12, atol=1e-12)


def test_results_without_gradient(backend):
    x = np.array([[0.5, -1.0, 2.0], [3.0, 3.0, -0.5]])
    xd = backend.from_numpy(x)
    np.testing.assert_array_equal(backend.to_numpy(ops.argmax(xd, axis=-1)), [2, 0])
    assert ops.argmax(xd, axis=-1).dtype == np.int32
    assert backend.to_numpy(ops.argmax(xd)) == 3
    np.testing.assert_array_equal(backend.to_numpy(ops.argmax(xd, axis=0, keepdims=True)), [[1, 1, 0]])
    hot = ops.one_hot(backend.from_numpy(np.array([2, 0, 5])), 3)
    np.testing.assert_array_equal(backend.to_numpy(hot), [[0, 0, 1], [1, 0, 0], [0, 0, 0]])
    assert hot.dtype == np.float32
    hot0 = ops.one_hot(backend.from_numpy(np.array([1, 0])), 3, axis=0, dtype="float64")
    np.testing.assert_array_equal(backend.to_numpy(hot0), np.eye(3)[[1, 0]].T)
    for op, want in [(ops.equal, x == 0.5), (ops.not_equal, x != 0.5), (ops.less, x < 0.5), (ops.less_equal, x <= 0.5),
                     (ops.greater, x > 0.5), (ops.greater_equal, x >= 0.5)]:
        np.testing.assert_array_equal(backend.to_numpy(op(xd, 0.5)), want)
    assert ops.shape(xd) == (2, 3)
    np.testing.assert_array_equal(backend.to_numpy(ops.ones_like(xd, dtype="int32")), np.ones((2, 3), np.int32))
    np.testing.assert_array_equal(backend.to_numpy(ops.zeros_like(xd)), np.zeros((2, 3)))
    assert isinstance(ops.convert_to_numpy(xd), np.ndarray)
    assert ops.convert_to_tensor([1.0, 2.0]).dtype == np.float32 and ops.convert_to_tensor([1, 2]).dtype == np.int32
    assert ops.mean(backend.from_numpy(np.array([1, 2]))).dtype == np.float32  # Keras: the mean of integers is float32
    assert ops.sum(backend.from_numpy(np.array([True, True]))).dtype == np.int32

    def loss(p):
        hits = ops.cast(ops.greater(p, 0.0), "float64")  # a boolean result: no gradient through it
        picked = ops.cast(ops.argmax(p, axis=-1), "float64")
        zeros = ops.zeros_like(p)
        assert not hits.requires_grad and not picked.requires_grad and not zeros.requires_grad
        return ops.sum(hits * p) + ops.sum(picked) + ops.sum(zeros)

    value, grad = ops.value_and_grad(loss)(xd)
    np.testing.assert_array_equal(backend.to_numpy(grad), (x > 0).astype(np.float64))


def test_outside_tracing_results_are_backend_arrays(backend):
    x = backend.from_numpy(np.array([[1.0, -2.0], [0.5, 4.0]]))
    for result in (ops.exp(x), ops.add(x, 1.0), ops.mean(ops.square(x), axis=-1), ops.softmax(x),
                   ops.where(x > 0, x, 0.0), ops.stack([x, x]), ops.one_hot(ops.argmax(x, axis=1), 2)):
        assert not isinstance(result, ops.Tensor)
        assert backend.owns(backend.xp.asarray(result))
    host = np.array([1.0, 2.0])  # host data is moved to the active backend, as Keras converts it
    assert backend.owns(backend.xp.asarray(ops.exp(host)))


def test_unknown_op_is_named():
    with pytest.raises(AttributeError, match="fcgpu.ops has no 'logsumexp'.*mean"):
        ops.logsumexp  # noqa: B018


def test_numpy_on_a_traced_tensor_is_named(backend):
    x = backend.from_numpy(np.array([1.0, 2.0]))

    def with_ufunc(p):
        return ops.sum(np.exp(p))

    with pytest.raises(TypeError, match=r"NumPy \(or CuPy\) function was called.*np\.exp\(p\)"):
        ops.value_and_grad(with_ufunc)(x)
    with pytest.raises(TypeError, match="numpy.mean was called on a fcgpu.ops.Tensor.*fcgpu.ops.mean"):
        ops.value_and_grad(lambda p: np.mean(p))(x)
    with pytest.raises(TypeError, match="cannot become a NumPy array"):
        ops.value_and_grad(lambda p: ops.sum(np.asarray(p)))(x)
    with pytest.raises(TypeError, match="no Python value"):
        ops.value_and_grad(lambda p: ops.sum(p) if p[0] > 0 else p)(x)
    with pytest.raises(ValueError, match="does not depend on the traced input"):
        ops.value_and_grad(lambda p: ops.convert_to_tensor(ops.convert_to_numpy(p).sum()))(x)
