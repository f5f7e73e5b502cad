"""erfc on NumPy arrays (NumPy has none), for the gelu entries of ``fcgpu.activations``.

A vectorised port of fdlibm's ``s_erf.c`` (the C library's erfc, under 1 ulp in double): every
branch's rational approximation is evaluated over the whole array and selected by masks, in
float64 whatever the input's type, and rounded once into ``out``. Scratch arrays come from the
caller's ``work`` (the NumPy backend's reused buffers), so a training step allocates nothing.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# work(shape, dtype, tag) -> the same scratch array on every call with the same arguments.
Work = Callable[[tuple[int, ...], np.dtype, str], np.ndarray]

_F8 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)
_HIGH_WORD = np.uint64(0xFFFFFFFF00000000)

_ERX = 8.45062911510467529297e-01
# |x| < 0.84375: erf(x) = x + x * pp(x^2) / qq(x^2)
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
# 0.84375 <= |x| < 1.25: erf(|x|) = erx + pa(|x| - 1) / qa(|x| - 1)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
# 1.25 <= |x| < 1/0.35: erfc(|x|) = exp(-x^2 - 0.5625 + ra(1/x^2) / sa(1/x^2)) / |x|
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
# 1/0.35 <= |x| < 28: the same with rb / sb
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(z: np.ndarray, coeffs: tuple[float, ...], out: np.ndarray) -> np.ndarray:
    """out = c0 + z * (c1 + z * (... + z * cn)), in fdlibm's order of operations."""
    np.multiply(z, coeffs[-1], out=out)
    for c in coeffs[-2:0:-1]:
        np.add(out, c, out=out)
        np.multiply(out, z, out=out)
    np.add(out, coeffs[0], out=out)
    return out


def _rational(z: np.ndarray, num: tuple[float, ...], den: tuple[float, ...], out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    _poly(z, num, out)
    _poly(z, den, tmp)
    return np.divide(out, tmp, out=out)


def erfc(x: np.ndarray, out: np.ndarray, work: Work) -> np.ndarray:
    """out = erfc(x) elementwise (out may be x); NaN stays NaN, erfc(-inf) = 2, erfc(inf) = 0."""
    shape = x.shape
    if x.dtype == _F8:
        xs = x
    else:
        xs = work(shape, _F8, "erfc_x")
        np.copyto(xs, x)
    a = work(shape, _F8, "erfc_abs")
    res = work(shape, _F8, "erfc_res")
    p = work(shape, _F8, "erfc_p")
    q = work(shape, _F8, "erfc_q")
    t = work(shape, _F8, "erfc_t")
    u = work(shape, _F8, "erfc_u")
    mask = work(shape, _BOOL, "erfc_mask")
    with np.errstate(all="ignore"):  # every branch runs on every element; the masks pick
        np.abs(xs, out=a)

        # 1.25 <= |x| < 28: exp(-z^2 - 0.5625) * exp((z - |x|)(z + |x|) + R/S) / |x|, z being |x|
        # with its low 32 bits cleared, R/S = ra/sa below 1/0.35 and rb/sb above, of s = 1/x^2.
        np.multiply(a, a, out=t)
        np.divide(1.0, t, out=t)
        _rational(t, _RB, _SB, p, q)
        _rational(t, _RA, _SA, q, u)
        np.copyto(p, q, where=np.less(a, 1 / 0.35, out=mask))
        np.bitwise_and(a.view(np.uint64), _HIGH_WORD, out=t.view(np.uint64))  # t = z
        np.subtract(t, a, out=q)
        np.add(t, a, out=u)
        np.multiply(q, u, out=q)
        np.add(q, p, out=q)
        np.exp(q, out=q)
        np.multiply(t, t, out=p)
        np.negative(p, out=p)
        np.subtract(p, 0.5625, out=p)
        np.exp(p, out=p)
        np.multiply(p, q, out=p)
        np.divide(p, a, out=p)  # erfc(|x|)
        np.subtract(2.0, p, out=q)  # erfc(-|x|)
        np.copyto(p, q, where=np.less(xs, 0, out=mask))
        # |x| >= 28 (and +-inf): 0 above, 2 below.
        np.copyto(res, 0.0)
        np.copyto(res, 2.0, where=mask)  # (a bool * float ufunc would cast through an allocated buffer)
        np.copyto(res, p, where=np.less(a, 28.0, out=mask))

        # 0.84375 <= |x| < 1.25: 1 - erx - P/Q above, 1 + erx + P/Q below.
        np.subtract(a, 1.0, out=t)
        _rational(t, _PA, _QA, p, q)
        np.add(p, _ERX, out=q)
        np.add(q, 1.0, out=q)  # below
        np.subtract(1.0 - _ERX, p, out=p)  # above
        np.copyto(p, q, where=np.less(xs, 0, out=mask))
        np.copyto(res, p, where=np.less(a, 1.25, out=mask))

        # |x| < 0.84375: y = pp(x^2) / qq(x^2); 1 - (x + x y) for x < 1/4, else 0.5 - (x y + (x - 0.5)).
        np.multiply(xs, xs, out=t)
        _rational(t, _PP, _QQ, p, q)
        np.multiply(p, xs, out=p)  # x y
        np.subtract(xs, 0.5, out=t)
        np.add(t, p, out=t)
        np.subtract(0.5, t, out=t)
        np.add(xs, p, out=q)
        np.subtract(1.0, q, out=q)
        np.copyto(q, t, where=np.greater_equal(xs, 0.25, out=mask))
        np.copyto(res, q, where=np.less(a, 0.84375, out=mask))

        np.copyto(res, xs, where=np.isnan(xs, out=mask))
        np.copyto(out, res, casting="same_kind")
    return out
