"""Dtype policies with Keras 3's names: what a layer stores its variables in and what it computes in.

``Policy('mixed_float16')`` keeps float32 variables (master weights) and computes in float16;
``'mixed_bfloat16'`` computes in bfloat16 (NumPy through the ``ml_dtypes`` package); 'float16',
'float32' (the default) and 'float64' store and compute in one type. ``set_global_policy`` sets
what a layer built without ``dtype=`` takes, as Keras's ``keras.mixed_precision`` does.

``set_tf32`` (or ``FCGPU_TF32=1``) lets cuBLAS run float32 GEMMs on tensor cores in TF32; it maps
to CuPy's ``CUPY_TF32`` variable, which CuPy reads once, so it cannot change after a GEMM ran.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .optimizers.loss_scale import LossScaleOptimizer  # Keras's keras.mixed_precision.LossScaleOptimizer

__all__ = [
    "LossScaleOptimizer",
    "check_policies",
    "with_loss_scaling",
    "POLICY_NAMES",
    "Policy",
    "bfloat16",
    "global_policy",
    "get_policy",
    "set_global_policy",
    "set_tf32",
    "tf32_enabled",
]

POLICY_NAMES = ("float32", "float64", "float16", "mixed_float16", "mixed_bfloat16")


def bfloat16() -> np.dtype:
    """NumPy's bfloat16 dtype (from ``ml_dtypes``), imported on first use."""
    try:
        import ml_dtypes  # noqa: PLC0415 - only for the bfloat16 policies
    except ImportError:
        raise ImportError(
            "the 'mixed_bfloat16' policy needs the ml_dtypes package (NumPy has no bfloat16): pip install ml_dtypes"
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


def cupy_bfloat16_problem() -> str | None:
    """Why CuPy would not know bfloat16 in this environment, or None. CuPy 14 registers the type only
    when ``ml_dtypes`` imports and NumPy is 2.1.2 or newer (``cupy/_core/_scalar.pyx``,
    ``_setup_type_dict``, and ``cupy/_core/_util.pyx``): older NumPy crashes on its bfloat16 loops."""
    missing = []
    if np.lib.NumpyVersion(np.__version__) < "2.1.2":
        missing.append(f"NumPy >= 2.1.2 (this is NumPy {np.__version__})")
    try:
        import ml_dtypes  # noqa: F401, PLC0415
    except ImportError:
        missing.append("the ml_dtypes package")
    if not missing:
        return None
    return (
        "bfloat16 on the cupy backend ('mixed_bfloat16') needs " + " and ".join(missing)
        + ", without which CuPy has no bfloat16 type: pip install 'fcgpu[cuda13]' (or [cuda12]), "
        "or pip install 'numpy>=2.1.2' ml_dtypes"
    )


class Policy:
    """A dtype policy (Keras 3's ``keras.DTypePolicy``): ``name``, ``compute_dtype``, ``variable_dtype``.

    Names: 'float32', 'float64', 'float16', 'mixed_float16' (variables float32, computation
    float16) and 'mixed_bfloat16' (variables float32, computation bfloat16). The dtypes are
    NumPy dtypes; ``str(policy.compute_dtype)`` is Keras's string.
    """

    def __init__(self, name: str) -> None:
        if isinstance(name, Policy):
            name = name.name
        if isinstance(name, np.dtype) or (isinstance(name, type) and issubclass(name, np.generic)):
            name = np.dtype(name).name
        if not isinstance(name, str) or name not in POLICY_NAMES:
            raise ValueError(f"dtype policy: expected one of {list(POLICY_NAMES)}, got {name!r}")
        self.name = name
        if name == "mixed_float16":
            self._compute: np.dtype | None = np.dtype(np.float16)
        elif name == "mixed_bfloat16":
            self._compute = None  # bfloat16, looked up when first asked for (ml_dtypes)
        else:
            self._compute = np.dtype(name)
        self.variable_dtype = np.dtype(np.float32) if name.startswith("mixed_") else np.dtype(name)

    @property
    def compute_dtype(self) -> np.dtype:
        if self._compute is None:
            self._compute = bfloat16()
        return self._compute

    @property
    def mixed(self) -> bool:
        """Whether variables and computation have different dtypes."""
        return self.name.startswith("mixed_")

    @property
    def needs_loss_scaling(self) -> bool:
        """float16 computation only: bfloat16 has float32's exponent range, so its gradients do not
        underflow (PyTorch's and Keras's loss scaling skip it too)."""
        return self.name == "mixed_float16"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<Policy "{self.name}">'


class _Global:
    """The global policy (Keras's ``set_global_policy``)."""

    policy = Policy("float32")


_global = _Global()


def get_policy(value: Any) -> Policy:
    """A Policy from a Policy, a policy name or a NumPy dtype (None: the global policy)."""
    if value is None:
        return _global.policy
    if isinstance(value, Policy):
        return value
    return Policy(value)


def set_global_policy(policy: str | Policy) -> None:
    """The policy of every layer built afterwards without ``dtype=`` (Keras's name)."""
    _global.policy = get_policy(policy) if policy is not None else Policy("float32")


def global_policy() -> Policy:
    """The current global policy ('float32' unless set)."""
    return _global.policy


# -- TF32 ------------------------------------------------------------------------------
class _Tf32:
    """Whether CuPy has read CUPY_TF32 in this process (it does once, when its core is loaded)."""

    locked = False


_tf32 = _Tf32()


def note_gemm() -> None:
    """Called by the CuPy backend when it starts on the real CuPy: from then on CUPY_TF32 is read."""
    _tf32.locked = True


def tf32_enabled() -> bool:
    """Whether float32 GEMMs may use TF32 tensor cores (CUPY_TF32 as CuPy will read it)."""
    return os.environ.get("CUPY_TF32", os.environ.get("FCGPU_TF32", "0")) == "1"


def set_tf32(enabled: bool) -> None:
    """Allow (True) or forbid (False, the default) TF32 for float32 GEMMs on the CuPy backend: sets
    CuPy's CUPY_TF32 variable. CuPy reads it once, before its first GEMM, so a change after GEMMs
    ran is refused rather than silently ignored."""
    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_tf32: expected True or False, got {enabled!r}")
    if bool(enabled) == tf32_enabled():
        os.environ["CUPY_TF32"] = "1" if enabled else "0"
        return
    if _tf32.locked:
        raise RuntimeError(
            "set_tf32: GEMMs already ran in this process, and CuPy reads CUPY_TF32 once before its first "
            "GEMM, so the change would not take effect; call set_tf32 (or set FCGPU_TF32=1) before any training"
        )
    os.environ["CUPY_TF32"] = "1" if enabled else "0"


def _apply_env() -> None:
    """FCGPU_TF32=1 at import maps to CUPY_TF32=1 (an explicit CUPY_TF32 wins)."""
    if os.environ.get("FCGPU_TF32") == "1" and "CUPY_TF32" not in os.environ:
        os.environ["CUPY_TF32"] = "1"


_apply_env()


def check_policies(what: str, name: str, layers: Any) -> None:
    """Refuse a model whose mixed layers compute in two half types (one half copy buffer per model)."""
    halves = {layer.dtype_policy.name for layer in layers if layer.mixed}
    if len(halves) > 1:
        raise ValueError(
            f"{what}: model '{name}' mixes the policies {sorted(halves)}; give its mixed layers one policy "
            f"(fcgpu keeps one buffer of half copies per model)"
        )


def with_loss_scaling(opt: Any, layers: Any) -> Any:
    """``opt`` wrapped in a LossScaleOptimizer where a layer computes in float16 (as Keras under
    'mixed_float16'), else ``opt`` itself. An optimizer that reduces the gradients over ranks first
    (``fcgpu.distributed.AllReduceOptimizer``) puts the loss scaling inside itself
    (``with_loss_scaling``), so that the overflow check reads the reduced gradients."""
    scaled = any(layer.dtype_policy is not None and layer.dtype_policy.needs_loss_scaling for layer in layers)
    if not scaled or isinstance(opt, LossScaleOptimizer):
        return opt
    inside = getattr(type(opt), "with_loss_scaling", None)
    return inside(opt) if inside is not None else LossScaleOptimizer(opt)
