"""The dtype rules the backends and the checks share: which dtypes are floats, numbers and halves
(bfloat16, ml_dtypes' type in NumPy, has NumPy kind 'V', so NumPy's kinds alone do not say)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_bfloat16", "is_float_dtype", "is_numeric_dtype", "is_half_dtype"]


def is_bfloat16(dtype: Any) -> bool:
    """Whether ``dtype`` is bfloat16 (ml_dtypes' type in NumPy, CuPy's where it has one): a float
    type whose NumPy kind is 'V', not 'f'."""
    return np.dtype(dtype).name == "bfloat16"


def is_float_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating type the layers compute in: NumPy kind 'f', or bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or is_bfloat16(dtype)


def is_numeric_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` is bool, an integer or a float type (bfloat16 included)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "biuf" or is_bfloat16(dtype)


def is_half_dtype(dtype: Any) -> bool:
    """float16 or bfloat16: the 16-bit types that the kernels (and the NumPy backend) compute in float32."""
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and is_float_dtype(dtype)
