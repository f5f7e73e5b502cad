"""Keras 3 model configs <-> fcgpu model configs: Sequential and Functional (a graph of layer calls),
nested in one another as Keras's format allows.

``model_from_keras`` turns the ``config.json`` of a ``.keras`` archive into the fcgpu config that
``fcgpu.saving.serialization.deserialize`` builds (every layer through ``keras_layers``); ``model_to_keras``
turns an fcgpu model's ``get_config()`` into what Keras's ``serialize_keras_object`` writes (for a
functional model the ``inbound_nodes`` of each layer, whose ``__keras_tensor__`` arguments name the
layer that made them in ``keras_history``). A graph is checked as data before anything is built:
every inbound reference names a layer of the graph, each layer is called once (fcgpu shares no
layer between calls), the graph has no cycle, each output is named once (a list of them, or a dict
by key, kept as ``output_keys``), and a model of several outputs is not used as a layer (its call
is one tensor in fcgpu). The parameters a config implies are
counted (``parameter_count``) so that the caller can hold them against the bytes of the weights.
"""
from __future__ import annotations


import math
import warnings
from typing import Any, Callable, Mapping

from .keras_common import UnsupportedKeras, compute_dtype, inner, policy_to_keras
from .keras_compile import compile_to_keras
from .keras_layers import MERGES, layer_from_keras, layer_to_keras, output_shape, parameter_count as layer_parameters

__all__ = ["MODELS", "model_from_keras", "model_to_keras", "parameter_count"]

MODELS = ("Sequential", "Functional", "Model")
_FUNCTIONAL_MODULE = "keras.src.models.functional"
_DEPTH = 16  # models nested deeper than this are refused (a config cannot recurse without end)
Converters = Mapping[str, Callable[[dict[str, Any]], Any]]


# -- Keras -> fcgpu ------------------------------------------------------------------------------
def model_from_keras(config: Any, custom_objects: Converters | None = None
                     ) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    """(the fcgpu config of a Keras model config, (name, Keras class) of each of the model's layers in
    the order Keras stores them: a Sequential's layers (name None: by position), or a Functional's
    layers as its config lists them, inputs included). Every unsupported part is named in one ``UnsupportedKeras``."""
    return _model(config, custom_objects, 0)


def _model(config: Any, custom_objects: Converters | None, depth: int) -> tuple[dict[str, Any], list[Any]]:
    cls, inner_config = inner(config, "model")
    if depth > _DEPTH:
        raise UnsupportedKeras(f"model: models nested more than {_DEPTH} deep")
    if cls == "Sequential":
        return _sequential(config, inner_config, custom_objects, depth)
    if cls in ("Functional", "Model"):
        return _functional(inner_config, custom_objects, depth)
    raise UnsupportedKeras(f"model: fcgpu reads Keras Sequential and functional models, this one is a {cls}")


def _layer(entry: Any, custom_objects: Converters | None, depth: int) -> Any:
    """The fcgpu config (or converted layer) of one Keras layer entry, a nested model included."""
    if isinstance(entry, dict) and entry.get("class_name") in MODELS and not (custom_objects or {}).get(entry["class_name"]):
        return _model(entry, custom_objects, depth + 1)[0]
    return layer_from_keras(entry, custom_objects)


def _sequential(config: dict[str, Any], inner_config: dict[str, Any], custom_objects: Converters | None,
                depth: int) -> tuple[dict[str, Any], list[Any]]:
    entries = inner_config.get("layers")
    if not isinstance(entries, list):
        raise UnsupportedKeras("model: its config has no list of layers")
    model: dict[str, Any] = {"class_name": "Sequential", "name": inner_config.get("name") or None, **_frozen(inner_config)}
    layers, classes, problems = [], [], []
    shape, policy = None, "float32"
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("class_name") == "InputLayer" and i == 0:
            model["input"] = _input_from_keras(entry)
            shape, policy = [None, *model["input"]["shape"]], model["input"]["dtype"] or policy
            continue
        try:
            layer = _layer(entry, custom_objects, depth)
        except UnsupportedKeras as e:
            problems.append(str(e))
            continue
        if isinstance(layer, dict) and layer["class_name"] == "Dense":
            policy = layer["dtype"] or policy
        elif isinstance(layer, dict) and layer["class_name"] not in MODELS and (
                layer.get("dtype") == policy or str(layer.get("dtype")).startswith("mixed")):
            _follows_the_layer_before(layer, policy)
        layers.append(layer)
        classes.append((None, entry["class_name"]))
    if problems:
        raise UnsupportedKeras("; ".join(problems))
    if shape is None:
        given = inner_config.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
        if isinstance(given, list) and len(given) >= 2 and all(type(d) is int and d > 0 for d in given[1:]):
            shape = [None, *given[1:]]
            if len(given) > 2:
                model["input"] = {"class_name": "InputLayer", "shape": given[1:], "batch_size": None, "dtype": None,
                                  "name": None}
    if shape is None:
        raise UnsupportedKeras("model: the Keras model was saved unbuilt (no input shape, so no weights)")
    model["input_features"] = math.prod(shape[1:])
    model["layers"] = layers
    return model, classes


def _frozen(config: dict[str, Any]) -> dict[str, Any]:
    """A frozen model's flag (``trainable`` False), as fcgpu's model configs carry it."""
    if config.get("trainable", True) not in (True, False):
        raise UnsupportedKeras(f"model {config.get('name')!r}: trainable {config.get('trainable')!r} is not true or false")
    return {"trainable": False} if config.get("trainable", True) is False else {}


def _input_from_keras(entry: dict[str, Any]) -> dict[str, Any]:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if (not isinstance(shape, list) or not 2 <= len(shape) <= 8 or not all(type(d) is int and d > 0 for d in shape[1:])
            or not (shape[0] is None or (type(shape[0]) is int and shape[0] > 0)) or math.prod(shape[1:]) > 2**31):
        raise UnsupportedKeras(f"model: input shape {shape!r} is not (batch, *sample) of known sizes")
    if config.get("sparse") or config.get("ragged"):
        raise UnsupportedKeras("model: sparse or ragged inputs are not supported")
    dtype = config.get("dtype")
    if dtype is not None and dtype not in ("float16", "float32", "float64"):
        raise UnsupportedKeras(f"model: input dtype {dtype!r} is not supported")
    name = config.get("name")
    return {"class_name": "InputLayer", "shape": shape[1:], "batch_size": shape[0], "dtype": dtype,
            "name": name if isinstance(name, str) and name else None}


def _history(value: Any, names: set[str] | dict[str, int], what: str) -> str:
    """The layer a ``__keras_tensor__`` argument (or a [name, node, tensor] triple) comes from;
    ``names`` maps each layer to the index of its one call (Keras counts a nested functional
    model's own node first in ``output_layers``: its call there is 1)."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__" and isinstance(value.get("config"), dict):
        value = value["config"].get("keras_history")
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
        raise UnsupportedKeras(f"{what}: an argument {str(value)[:80]!r} is not a tensor of the graph")
    name, node, tensor = value
    if name not in names:
        raise UnsupportedKeras(f"{what}: it reads the output of {name!r}, which is no layer of the graph")
    if node != (names.get(name, 0) if isinstance(names, dict) else 0) or tensor != 0:
        raise UnsupportedKeras(f"{what}: it reads call {node!r} (output {tensor!r}) of {name!r}; fcgpu calls each layer "
                               f"once and each call has one output")
    return name


def _inbound(entry: dict[str, Any], names: set[str], what: str) -> list[str] | None:
    """The names of the layers an entry's one call reads; None for an input layer."""
    nodes = entry.get("inbound_nodes", [])
    if not isinstance(nodes, list):
        raise UnsupportedKeras(f"{what}: its inbound_nodes are not a list")
    if not nodes:
        return None
    if len(nodes) > 1:
        raise UnsupportedKeras(f"{what}: the layer is called {len(nodes)} times in the graph; fcgpu does not share a "
                               f"layer between calls")
    node = nodes[0]
    if not isinstance(node, dict) or not isinstance(node.get("args"), list) or len(node["args"]) != 1:
        raise UnsupportedKeras(f"{what}: its call is not one tensor or one list of tensors (Keras 3's inbound_nodes)")
    kwargs = node.get("kwargs", {})
    if not isinstance(kwargs, dict) or any(v is not None for k, v in kwargs.items() if k not in ("training",)):
        raise UnsupportedKeras(f"{what}: its call passes arguments fcgpu does not take ({sorted(kwargs)})")
    arg = node["args"][0]
    return [_history(a, names, what) for a in arg] if isinstance(arg, list) and not (
        len(arg) == 3 and isinstance(arg[0], str)) else [_history(arg, names, what)]


def _is_tensor(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)) or (
        isinstance(value, dict) and value.get("class_name") == "__keras_tensor__")


def _ends(value: Any, names: dict[str, int], what: str) -> tuple[list[str], list[str] | None]:
    """(the layer names of ``input_layers`` / ``output_layers``: one [name, call, output], a list of
    them or a dict of them by key; the dict's keys, else None). Each layer is named once."""
    keys = None
    if _is_tensor(value):
        value = [value]
    elif isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, str) and k for k in keys):
            raise UnsupportedKeras(f"model: its {what} are a dict whose keys are not all names")
        value = list(value.values())
    if not isinstance(value, list) or not value:
        raise UnsupportedKeras(f"model: its {what} are not a list of tensors")
    out: list[str] = []
    for i, v in enumerate(value):
        entry = f"model's {what}[{keys[i] if keys is not None else i!r}]"
        if not _is_tensor(v):
            raise UnsupportedKeras(f"{entry}: {str(v)[:80]!r} is not one tensor [layer, call, output] (fcgpu reads a "
                                   f"flat list or dict of them)")
        name = _history(v, names, entry)
        if name in out:
            raise UnsupportedKeras(f"{entry}: the output of {name!r} is given twice")
        out.append(name)
    return out, keys


def _functional(config: dict[str, Any], custom_objects: Converters | None, depth: int) -> tuple[dict[str, Any], list[Any]]:
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UnsupportedKeras("model: its config has no list of layers")
    names = [e.get("name", (e.get("config") or {}).get("name") if isinstance(e.get("config"), dict) else None)
             for e in entries]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise UnsupportedKeras("model: its layers do not have distinct names")
    known = set(names)
    inbound, problems, made = {}, [], {}
    for name, entry in zip(names, entries):
        what = f"layer {name!r} ({entry.get('class_name')})"
        try:
            inbound[name] = _inbound(entry, known, what)
            if inbound[name] is None:
                if entry.get("class_name") != "InputLayer":
                    raise UnsupportedKeras(f"{what}: it is never called in the graph")
                made[name] = {**_input_from_keras(entry), "name": name}
            else:
                made[name] = _layer(entry, custom_objects, depth)
                _one_output(made[name], what)
        except UnsupportedKeras as e:
            problems.append(str(e))
    if problems:
        raise UnsupportedKeras("; ".join(problems))
    calls = {n: 1 if e.get("class_name") in ("Functional", "Model") else 0 for n, e in zip(names, entries)}
    inputs, _ = _ends(config.get("input_layers"), calls, "input_layers")
    outputs, keys = _ends(config.get("output_layers"), calls, "output_layers")
    if any(inbound[n] is not None for n in inputs):
        raise UnsupportedKeras("model: its input_layers name layers that are not inputs")
    _all_read(names, inbound, outputs)
    order = _topological(names, inbound)
    layers = []
    for name in order:
        layer = made[name]
        if isinstance(layer, dict) and layer.get("name") is None:
            layer["name"] = name
        elif not isinstance(layer, dict) and not layer.name_is_set:
            layer.name = name
        layers.append({"config": layer, "inbound": inbound[name] or []})
    fc = {"class_name": "Functional", "name": config.get("name") or None, "layers": layers, "input_layers": inputs,
          "output_layers": outputs, **({"output_keys": keys} if keys is not None else {}), **_frozen(config)}
    _policies_from_keras(fc)
    return fc, [(n, e["class_name"]) for n, e in zip(names, entries)]


def _all_read(names: list[str], inbound: dict[str, list[str] | None], outputs: list[str]) -> None:
    """Refuses a layer that no output reads (an output left out of ``output_layers``): the model
    would lack its weights."""
    read, pending = set(), list(outputs)
    while pending:
        name = pending.pop()
        if name not in read:
            read.add(name)
            pending.extend(inbound.get(name) or [])
    unread = [n for n in names if n not in read and inbound[n] is not None]
    if unread:
        raise UnsupportedKeras(f"model: no output in its output_layers reads layer(s) {unread[:8]}")


def _one_output(layer: Any, what: str) -> None:
    """Refuses a model of several outputs used as a layer: Keras gives the next layers each output as
    a tensor of its own, fcgpu's call of a model is one tensor."""
    if isinstance(layer, dict) and layer.get("class_name") == "Functional" and len(layer["output_layers"]) > 1:
        raise UnsupportedKeras(f"{what}: a model of {len(layer['output_layers'])} outputs used as a layer; fcgpu "
                               f"calls models of one output as layers (use its outputs in the outer model instead)")


def _topological(names: list[str], inbound: dict[str, list[str] | None]) -> list[str]:
    """The layer names with every layer after those it reads (the config's order among equals)."""
    done: set[str] = set()
    order: list[str] = []
    pending = list(names)
    while pending:
        ready = [n for n in pending if all(p in done for p in inbound[n] or [])]
        if not ready:
            raise UnsupportedKeras(f"model: its graph has a cycle through {sorted(pending)[:8]}")
        for n in ready:
            done.add(n)
            order.append(n)
        pending = [n for n in pending if n not in done]
    return order


def _policies_from_keras(fc: dict[str, Any]) -> None:
    """Layers without parameters whose policy is their input's take it from there (dtype None)."""
    policy: dict[str, str] = {}
    for entry in fc["layers"]:
        layer = entry["config"]
        if not isinstance(layer, dict):
            continue
        name = layer["name"]
        if layer.get("class_name") == "InputLayer":
            policy[name] = layer.get("dtype") or "float32"
            continue
        before = policy.get(entry["inbound"][0], "float32") if entry["inbound"] else "float32"
        if layer.get("class_name") in MODELS:
            policy[name] = before
            continue
        own = layer.get("dtype")
        if layer["class_name"] != "Dense" and (own == before or str(own).startswith("mixed")):
            _follows_the_layer_before(layer, before)
        policy[name] = own or before


def _follows_the_layer_before(layer: dict[str, Any], before: str) -> None:
    """A layer other than Dense takes the dtype of the layer before it in fcgpu (its config's dtype
    None); where Keras's policy for it is a mixed one the layer before does not have, Keras computes
    it in half and fcgpu does not: said, not silently changed."""
    own = layer.get("dtype")
    if own != before and str(own).startswith("mixed"):
        warnings.warn(f"layer {layer.get('name')!r} ({layer['class_name']}): Keras computes it under {own!r}; "
                      f"fcgpu computes it in the dtype of the layer before it ({before!r}), so its outputs "
                      f"differ by that rounding", stacklevel=4)
    layer["dtype"] = None


# -- shapes and parameter counts of fcgpu configs ---------------------------------------------------
def _walk(config: dict[str, Any], shapes: list[list[Any]] | None, visit: Callable[..., None] | None = None) -> list[Any]:
    """The output shape of fcgpu config ``config`` (a model or a leaf layer) on inputs of ``shapes``;
    ``visit(config, input shapes, output shape)`` is called for every leaf layer, nested ones too."""
    cls = config.get("class_name")
    what = f"layer {config.get('name')!r} ({cls})"
    if cls == "Sequential":
        given = config.get("input")
        shape = [None, *given["shape"]] if given is not None else [None, config.get("input_features")]
        if shapes is not None and math.prod(shapes[0][1:]) != math.prod(shape[1:]):
            raise UnsupportedKeras(f"{what}: takes {math.prod(shape[1:])} features, its input has {shapes[0]}")
        for layer in config["layers"]:
            shape = _walk(layer, [shape], visit) if isinstance(layer, dict) else _converted(layer, [shape])
        return shape
    if cls == "Functional":
        out: dict[str, list[Any]] = {}
        for i, entry in enumerate(config["layers"]):
            layer = entry["config"]
            if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
                k = config["input_layers"].index(layer["name"])
                out[layer["name"]] = shapes[k] if shapes is not None else [None, *layer["shape"]]
                continue
            args = [out[n] for n in entry["inbound"]]
            out[layer["name"] if isinstance(layer, dict) else layer.name] = (
                _walk(layer, args, visit) if isinstance(layer, dict) else _converted(layer, args))
        return out[config["output_layers"][0]]
    result = output_shape(config, shapes, what)
    if visit is not None:
        visit(config, shapes, result)
    return result


def _converted(layer: Any, shapes: list[list[Any]]) -> list[Any]:
    """The output shape of a layer a caller's converter made (its input's where it cannot say)."""
    try:
        return list(layer.compute_output_shape(shapes[0] if len(shapes) == 1 else shapes))
    except Exception:
        return list(shapes[0])


def parameter_count(config: dict[str, Any]) -> int:
    """The values the weights of the fcgpu model ``config`` hold (layers a caller converted count 0)."""
    total = [0]
    _walk(config, None, lambda c, shapes, _: total.__setitem__(0, total[0] + layer_parameters(c, shapes)))
    return total[0]


# -- fcgpu -> Keras ------------------------------------------------------------------------------
def model_to_keras(model_config: dict[str, Any], compile_config: dict[str, Any] | None) -> dict[str, Any]:
    """What Keras writes as ``config.json`` for the fcgpu model ``model_config`` (Sequential or
    functional); the compile config is included where it translates (see ``compile_to_keras``)."""
    if model_config.get("class_name") not in ("Sequential", "Functional"):
        raise UnsupportedKeras(f"model: {model_config.get('class_name')} models are not written as .keras")
    out, _, _ = _to_keras(model_config, None, None)
    if compile_config is not None:
        translated, _ = compile_to_keras(compile_config, model_config.get("output_keys"))
        if translated is not None:
            out["compile_config"] = translated
    return out


def _first_policy(model_config: dict[str, Any]) -> str:
    """The policy of the model's first Dense layer (float32 without one): what its input is read in."""
    entries = model_config["layers"]
    configs = [e["config"] for e in entries] if model_config["class_name"] == "Functional" else entries
    return next((c["dtype"] for c in configs if c.get("class_name") == "Dense" and c.get("dtype")), "float32")


def _input_entry(given: dict[str, Any], sample: list[int], dtype: str, name: str) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [given.get("batch_size"), *sample], "dtype": dtype, "sparse": False,
                       "ragged": False, "name": name},
            "registered_name": None}


def _to_keras(config: dict[str, Any], shapes: list[list[Any]] | None, policy: str | None
              ) -> tuple[dict[str, Any], list[Any], str]:
    """(the Keras entry of fcgpu config ``config`` on inputs of ``shapes`` computed in ``policy``,
    its output shape, the policy of its output)."""
    cls = config.get("class_name")
    if cls == "Sequential":
        return _sequential_to_keras(config)
    if cls == "Functional":
        return _functional_to_keras(config)
    own = config.get("dtype") or policy or "float32"
    shape = output_shape(config, shapes, f"layer {config.get('name')!r} ({cls})")
    return layer_to_keras(config, own, shapes if cls in MERGES else shapes[0]), shape, own


def _sequential_to_keras(config: dict[str, Any]) -> tuple[dict[str, Any], list[Any], str]:
    given = config.get("input") or {}
    sample = list(given.get("shape") or [config["input_features"]])
    policy = _first_policy(config)
    input_dtype = given.get("dtype") or ("float32" if policy.startswith("mixed") else policy)
    layers = [_input_entry(given, sample, input_dtype, given.get("name") or "input_layer")]
    shape, current = [None, *sample], policy
    for layer in config["layers"]:
        entry, shape, current = _to_keras(layer, [shape], current)
        layers.append(entry)
    build = [None, *sample]
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": config["name"], "trainable": config.get("trainable", True) is not False,
                   "dtype": policy_to_keras(policy if not policy.startswith("mixed") else "float32"),
                   "layers": layers, "build_input_shape": build},
        "registered_name": None,
        "build_config": {"input_shape": build},
    }, shape, current


def _tensor(shape: list[Any], policy: str, name: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": compute_dtype(policy), "keras_history": [name, 0, 0]}}


def _functional_to_keras(config: dict[str, Any]) -> tuple[dict[str, Any], list[Any], str]:
    first = _first_policy(config)
    tensors: dict[str, tuple[list[Any], str, bool]] = {}  # name -> (shape, policy, a functional model's)
    layers = []
    for entry in config["layers"]:
        layer = entry["config"]
        name = layer["name"]
        if layer.get("class_name") == "InputLayer":
            dtype = layer.get("dtype") or ("float32" if first.startswith("mixed") else first)
            tensors[name] = ([None, *layer["shape"]], dtype, False)
            layers.append({**_input_entry(layer, list(layer["shape"]), dtype, name), "name": name, "inbound_nodes": []})
            continue
        inbound = entry["inbound"]
        _one_output(layer, f"layer {name!r} (Functional)")
        shapes = [tensors[n][0] for n in inbound]
        keras_entry, shape, policy = _to_keras(layer, shapes, tensors[inbound[0]][1])
        args = [_tensor(tensors[n][0], tensors[n][1], n) for n in inbound]
        merge = layer.get("class_name") in MERGES
        keras_entry["name"] = name
        keras_entry["inbound_nodes"] = [{"args": [args] if merge else [args[0]], "kwargs": {}}]
        layers.append(keras_entry)
        tensors[name] = (shape, policy, layer.get("class_name") == "Functional")
    inputs = [[n, 0, 0] for n in config["input_layers"]]
    outputs = [[n, 1 if tensors[n][2] else 0, 0] for n in config["output_layers"]]
    keys = config.get("output_keys")
    written = dict(zip(keys, outputs)) if keys is not None else outputs[0] if len(outputs) == 1 else outputs
    output = config["output_layers"][0]
    return {
        "module": _FUNCTIONAL_MODULE,
        "class_name": "Functional",
        "config": {"name": config["name"], "trainable": config.get("trainable", True) is not False, "layers": layers,
                   "input_layers": inputs[0] if len(inputs) == 1 else inputs,
                   "output_layers": written},
        "registered_name": "Functional",
        "build_config": {"input_shape": None},
    }, tensors[output][0], tensors[output][1]
