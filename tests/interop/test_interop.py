"""PyTorch nn.Linear state dicts to and from fcgpu models (fcgpu.interop)."""
from __future__ import annotations

import numpy as np
import pytest

import fcgpu as fc
from fcgpu import interop


def test_torch_state_dict_export_and_import(backend, rng):
    model = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dense(4, activation="tanh"), fc.Dense(2)])
    model.build(3)
    state = interop.export_torch_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert state["0.weight"].shape == (5, 3) and state["4.weight"].shape == (2, 4)
    x = rng.normal(size=(7, 3)).astype(np.float32)
    # nn.Linear computes x @ weight.T + bias.
    h = np.maximum(x @ state["0.weight"].T + state["0.bias"], 0)
    h = np.tanh(h @ state["2.weight"].T + state["2.bias"])
    np.testing.assert_allclose(model.predict(x), h @ state["4.weight"].T + state["4.bias"], rtol=1e-5, atol=1e-6)
    other = fc.Sequential([fc.Dense(5, activation="relu"), fc.Dense(4, activation="tanh"), fc.Dense(2)])
    interop.import_torch_state_dict(other, state)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_torch_import_checks_shapes_before_changing_anything():
    model = fc.Sequential([fc.Dense(3), fc.Dense(2)])
    model.build(4)
    before = model.get_weights()
    bad = {"a.weight": np.zeros((3, 4)), "a.bias": np.zeros(3), "b.weight": np.zeros((2, 5)), "b.bias": np.zeros(2)}
    with pytest.raises(ValueError, match=r"b\.weight.*3 inputs"):
        interop.import_torch_state_dict(model, bad)
    with pytest.raises(ValueError, match="2 linear layers"):
        interop.import_torch_state_dict(fc.Sequential([fc.Dense(3)]), bad)
    with pytest.raises(ValueError, match="neither"):
        interop.import_torch_state_dict(model, {"a.running_mean": np.zeros(3)})
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_torch_round_trip_when_installed(rng):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    model = fc.Sequential([fc.Dense(5, activation="relu", dtype="float64"), fc.Dense(2, dtype="float64")])
    interop.import_torch_state_dict(model, net.state_dict())
    x = rng.normal(size=(4, 3))
    with torch.no_grad():
        expected = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    net2.load_state_dict({k: torch.from_numpy(v) for k, v in interop.export_torch_state_dict(model).items()})
    with torch.no_grad():
        np.testing.assert_allclose(net2(torch.tensor(x)).numpy(), expected, rtol=1e-12)


def test_torch_round_trip_with_dropout_and_activation_layers(rng):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(5, 4),
                              torch.nn.Tanh(), torch.nn.Linear(4, 2)).double().eval()
    model = fc.Sequential([fc.Dense(5, activation="relu", dtype="float64"), fc.Dropout(0.5),
                           fc.Dense(4, dtype="float64"), fc.Activation("tanh"), fc.Dense(2, dtype="float64")])
    sd = interop.export_torch_state_dict  # exported keys follow the modules: 0, 3, 5
    interop.import_torch_state_dict(model, net.state_dict())
    assert sorted(sd(model)) == ["0.bias", "0.weight", "3.bias", "3.weight", "5.bias", "5.weight"]
    x = rng.normal(size=(4, 3))
    with torch.no_grad():
        expected = net(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-12)
