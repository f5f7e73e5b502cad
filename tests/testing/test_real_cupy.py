"""The real-CuPy tier: the shipped code and the stand-in held to CuPy 14.2 itself, without a GPU.

The ``verify`` extra installs ``cupy-cuda13x``, which imports without a driver: everything up to
the first device call can be checked against it. Each check runs in a fresh interpreter where
the state of ``sys.modules`` matters (a submodule imported once is an attribute from then on).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="the real-CuPy tier needs CuPy installed (the 'verify' extra)")


def run_fresh(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "FCGPU_BACKEND"}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_nccl_is_a_submodule_that_import_cupy_does_not_load():
    # The crash of issue 18 (1): self.cp.cuda.nccl after a plain import cupy.
    out = run_fresh(
        """
        import cupy
        from fcgpu.testing import fake_cupy
        print(hasattr(cupy.cuda, "nccl"), hasattr(fake_cupy.cuda, "nccl"))
        from fcgpu.backends.cupy.backend import CupyBackend
        for module in (cupy, fake_cupy):
            nccl = CupyBackend(module).nccl_module()
            print(nccl is module.cuda.nccl, hasattr(nccl, "NcclCommunicator") or not nccl.available)
        """
    )
    assert out.split() == ["False", "False", "True", "True", "True", "True"]


class _Buffer:
    """A contiguous float32 device buffer as far as the backend looks before NCCL takes it."""

    dtype = np.dtype(np.float32)
    size = 6
    strides = (4,)

    class flags:  # noqa: N801 - the attribute CuPy arrays have
        c_contiguous = True

    __cuda_array_interface__ = {"data": (0x7F0000000000, False)}


def test_allreduce_on_real_cupy_reaches_nccl_with_cupys_constants(monkeypatch):
    """allreduce_sum and broadcast on the real module, up to the NCCL call (a recorder stands in for
    the communicator, whose construction needs a device)."""
    from fcgpu.backends.cupy.backend import CupyBackend

    backend = CupyBackend(cupy)
    nccl = backend.nccl_module()
    calls = []

    class Recorder:
        def allReduce(self, *args):  # noqa: N802 - NCCL's name
            calls.append(("allReduce", args))

        def broadcast(self, *args):
            calls.append(("broadcast", args))

    class Comm:
        rank, size = 0, 1
        attachments = {("nccl", id(backend)): Recorder()}

    monkeypatch.setattr(backend, "_stream", lambda: 0)  # the current stream needs a driver
    backend.allreduce_sum(_Buffer(), Comm())
    backend.broadcast(_Buffer(), Comm())
    if nccl.available:  # with libnccl (nvidia-nccl-cu13) the real constants
        assert calls == [
            ("allReduce", (0x7F0000000000, 0x7F0000000000, 6, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)),
            ("broadcast", (0x7F0000000000, 0x7F0000000000, 6, nccl.NCCL_FLOAT32, 0, 0)),
        ]


# -- every CuPy attribute chain of the shipped code resolves after a plain ``import cupy`` -------
_ROOTS = {"cp", "xp", "cupy"}  # the CuPy module's names in the shipped code (xp: NumPy or CuPy)


def _dotted(node) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _from_cupy(parts: list[str], aliases: dict[str, list[str]]) -> list[str] | None:
    """The chain below the CuPy module that ``parts`` names, or None: rooted at cp/xp/cupy (also as
    ``self.cp``), or at a local alias of such a chain (``cuda = self.cp.cuda``)."""
    for k, p in enumerate(parts):
        if p in _ROOTS and (k == 0 or parts[k - 1] in ("self", "backend")):
            return parts[k + 1 :]
    if parts[0] in aliases:
        return aliases[parts[0]] + parts[1:]
    return None


def _chains(path) -> set[str]:
    tree = ast.parse(path.read_text())
    aliases: dict[str, list[str]] = {}
    for _ in range(3):  # aliases of aliases
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target, value = node.targets[0], node.value
            pairs = (zip(target.elts, value.elts) if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                     else [(target, value)])
            for t, v in pairs:
                parts = _dotted(v) if isinstance(t, ast.Name) else None
                chain = _from_cupy(parts, aliases) if parts else None
                if chain and t.id not in _ROOTS:
                    aliases[t.id] = chain
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            parts = _dotted(node)
            chain = _from_cupy(parts, aliases) if parts else None
            if chain:
                found.add(".".join(chain))
    return found


def shipped_cupy_chains() -> dict[str, list[str]]:
    """Attribute chains taken from the CuPy module (``cp.X.Y``, ``self.xp.X``, ``cupy.X``) in the
    package, by chain; the NumPy backend (whose xp is NumPy) and the stand-ins are left out."""
    import pathlib

    import fcgpu

    root = pathlib.Path(fcgpu.__file__).parent
    chains: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("testing/") or rel == "backends/numpy_backend.py":
            continue
        for chain in _chains(path):
            chains.setdefault(chain, []).append(rel)
    return chains


def test_the_chain_walker_finds_the_backends_cupy_calls():
    chains = shipped_cupy_chains()
    assert {"cuda.runtime.deviceSynchronize", "ElementwiseKernel", "matmul", "sum", "cuda.Device",
            "cuda.cublas.gemmEx", "cuda.runtime.CUDA_R_32F", "cuda.device.get_cublas_handle"} <= set(chains)


def test_constants_the_backend_looks_up_by_name_exist_on_real_cupy():
    from fcgpu.backends.cupy import backend as cupy_backend

    for name in cupy_backend._CUDA_TYPES.values():
        assert isinstance(getattr(cupy.cuda.runtime, name), int), name
    from cupy.cuda import nccl

    if nccl.available:
        for name in cupy_backend._NCCL_TYPES.values():
            assert isinstance(getattr(nccl, name), int), name


def test_every_cupy_attribute_chain_of_the_shipped_code_resolves_on_real_cupy():
    chains = sorted(shipped_cupy_chains())
    out = run_fresh(
        f"""
        import cupy
        missing, unloadable = [], []
        for chain in {chains!r}:
            obj = cupy
            for part in chain.split("."):
                try:
                    obj = getattr(obj, part)
                except AttributeError:
                    missing.append(chain)
                    break
                except ImportError:  # cupy.cuda.cublas is served lazily and needs libcublas
                    unloadable.append(chain)
                    break
        print(missing)
        print(unloadable)
        """
    )
    missing, unloadable = out.strip().splitlines()
    assert missing == "[]", f"chains the real CuPy module lacks after import cupy: {missing}"
    if unloadable != "[]":
        pytest.skip(f"resolved all but these, whose library is not installed (nvidia-cublas): {unloadable}")


# -- the stand-in exposes nothing that CuPy lacks at the same path ------------------------------
def _public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_stand_in_module_names_are_cupys():
    from fcgpu.testing import fake_cupy

    extra = {n for n in _public(fake_cupy) - fake_cupy.STAND_IN_TOOLS if not hasattr(cupy, n)}
    assert not extra, f"the stand-in offers names real CuPy lacks: {sorted(extra)}"
    assert not {n for n in fake_cupy.STAND_IN_TOOLS if hasattr(cupy, n)}


def test_stand_in_serves_only_the_numpy_names_cupy_has():
    from fcgpu.testing import fake_cupy
    from fcgpu.testing.fake_cupy.cupy_names import CUPY_NUMPY_NAMES

    assert not {n for n in CUPY_NUMPY_NAMES if not hasattr(cupy, n)}
    for name in ("insert", "block", "geomspace", "nditer"):  # NumPy's, not CuPy 14.2's
        assert not hasattr(cupy, name)
        with pytest.raises(AttributeError, match="CuPy 14.2 does not"):
            getattr(fake_cupy, name)
    assert fake_cupy.cumsum(fake_cupy.ones(3))[-1] == 3  # a name both have is forwarded


def _has(module, name):
    """Whether ``module`` has ``name``; a lazily served submodule whose library is not installed
    (cupy.cuda.cublas without nvidia-cublas raises ImportError) is there all the same."""
    try:
        getattr(module, name)
    except AttributeError:
        return False
    except ImportError:
        return True
    return True


def test_stand_in_cuda_and_nccl_names_are_cupys():
    from cupy.cuda import nccl

    from fcgpu.testing import fake_cupy
    from fcgpu.testing.fake_cupy.cuda import nccl as fake_nccl

    pairs = [
        (fake_cupy.cuda, cupy.cuda),
        (fake_cupy.cuda.runtime, cupy.cuda.runtime),
        (fake_cupy.cuda.Device, cupy.cuda.Device),
        (fake_cupy.cuda.Stream, cupy.cuda.Stream),
        (fake_cupy.cuda.Graph, cupy.cuda.Graph),
        (fake_cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.runtime.CUDARuntimeError),
        (fake_nccl, nccl),
        (fake_cupy.cuda.device, cupy.cuda.device),
    ]
    try:
        pairs.append((fake_cupy.cuda.cublas, cupy.cuda.cublas))
    except Exception:  # noqa: BLE001 - served lazily; loads only with libcublas (nvidia-cublas), and
        pass  # CuPy's library finder raises its own DynamicLibNotFoundError when it is missing
    if nccl.available:  # the names below are in the compiled module, loaded with libnccl only
        pairs.append((fake_nccl.NcclCommunicator, nccl.NcclCommunicator))
    for stand_in, real in pairs:
        extra = {n for n in _public(stand_in) if not _has(real, n)}
        assert not extra, f"{stand_in!r} offers names {real.__name__} lacks: {sorted(extra)}"


def test_stand_in_arrays_have_no_attribute_cupy_arrays_lack():
    from fcgpu.testing import fake_cupy

    a = fake_cupy.zeros((2, 2))
    extra = {n for n in _public(type(a)) if not hasattr(cupy.ndarray, n) and hasattr(a, n)}
    assert not extra, f"stand-in arrays offer attributes cupy.ndarray lacks: {sorted(extra)}"


# -- kernel scalar arguments: CuPy's CScalar decides what a scalar is and how it converts --------
_SCALARS = [1, -3, 1.5, True, 2**63, 2**64, 1j, np.float32(2.5), np.float16(1), np.int8(-1), np.uint64(2**63),
            np.bool_(True), np.float64(1e10), np.float64("nan"), np.float64("inf"), np.int64(2**40), np.float32(-1.5),
            float("nan"), 1e300, np.asarray(1.0), np.asarray(3), [1.0], (1,), None, "1", b"1"]
_TARGETS = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint32", "uint64", "bool"]


def _accepts(fn) -> bool:
    try:
        fn()
    except (TypeError, ValueError, OverflowError):
        return False
    return True


@pytest.mark.parametrize("value", _SCALARS, ids=repr)
def test_kernel_scalar_arguments_are_taken_as_cupy_takes_them(value):
    from cupy._core import _scalar

    from fcgpu.testing import fake_cupy

    real = _accepts(lambda: _scalar.CScalar(value).apply_dtype("float64"))
    k = fake_cupy.ElementwiseKernel("T x, float64 s", "T y", "y = x", "fcgpu_scalar_probe")
    fake = _accepts(lambda: k(fake_cupy.zeros(2, np.float32), value))
    assert fake == real, f"{value!r}: CuPy {'takes' if real else 'refuses'} it as float64, the stand-in does not"
    if _accepts(lambda: _scalar.CScalar(value)):
        for target in _TARGETS:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                real_cast = _accepts(lambda: _scalar.CScalar(value).apply_dtype(target))
                probe = fake_cupy.ElementwiseKernel(f"T x, {target} s", "T y", "y = x", "fcgpu_scalar_cast_probe")
                fake_cast = _accepts(lambda: probe(fake_cupy.zeros(1, np.float32), value))
            assert fake_cast == real_cast, f"{value!r} as {target}: CuPy {'casts' if real_cast else 'refuses'} it"


# -- ElementwiseKernel type resolution: the stand-in's against CuPy's own resolver --------------
def test_stand_in_resolves_kernel_types_as_cupy_for_every_backend_call():
    from support.compile_gate.layouts import trace_backend_calls
    from fcgpu.testing.fake_cupy.params import deciding_dtypes, get_param_info, resolve_types

    checked = 0
    for call in trace_backend_calls():
        for dtype in ("float32", "float64", "float16"):
            dtypes = [dtype if d in ("float32",) else d for d in call.dtypes]
            k = cupy.ElementwiseKernel(call.in_params, call.out_params, call.operation, call.name)
            deciding = deciding_dtypes(call.kinds, dtypes, len(k.in_params))
            try:
                real = k._decide_params_type(*deciding)
            except TypeError as e:
                real = e
            ins, outs = get_param_info(call.in_params, True), get_param_info(call.out_params, False)
            try:
                fake = resolve_types(ins, outs, call.kinds, dtypes)
            except TypeError as e:
                fake = e
            if isinstance(real, Exception) or isinstance(fake, Exception):
                assert type(real) is type(fake) and str(real) == str(fake), (call.name, dtypes, real, fake)
                continue
            assert fake[0] == tuple(real[0]) and fake[1] == tuple(real[1]), (call.name, dtypes)
            assert fake[2] == tuple(sorted(real[2]._pairs)), (call.name, dtypes)
            checked += 1
    assert checked > 50


# -- result types the code relies on, where CuPy decides them only on a device: pinned to its source --
def test_stand_in_sums_half_into_a_float32_out_as_cupy_does():
    """The mixed-precision bias gradient: ``cupy.sum(half, axis=0, out=float32)``. CuPy 14.2 reduces
    float16 with a float accumulator (``_core/_routines_math.pyx``, ``_sum_auto_dtype``: ``('e->e',
    (None, None, None, 'float'))``) and writes ``out`` in its own type (``_core/_reduction.pyx``,
    ``_get_expressions_and_types``: ``type_out0_raw`` is ``out_args[0].dtype``): no half rounding,
    so 4096 x 20 = 81920 is finite. With no ``out``, the result is float16 (81920 overflows)."""
    from fcgpu.testing import fake_cupy

    half = fake_cupy.full((4096, 3), 20.0, np.float16)
    out = fake_cupy.empty(3, np.float32)
    fake_cupy.sum(half, axis=0, out=out)
    np.testing.assert_array_equal(out.get(), np.full(3, 81920.0, np.float32))
    with np.errstate(over="ignore"):
        assert fake_cupy.sum(half, axis=0).dtype == np.float16 and np.isinf(fake_cupy.sum(half, axis=0).get()).all()
    assert fake_cupy.sum(fake_cupy.full(4096, 1.0, np.float16)).get() == 4096  # float accumulation
