"""Philox4x32-10 and the dropout mask in vectorised NumPy: the host reference of kernels/random.cuh.

Written from the published algorithm (Salmon et al., SC 2011, with Random123's constants), not
from the kernel, so that the tests comparing the two compare independent implementations. The
stream of a (seed, step) is laid out as the kernel lays it out: element e is word e % 4 of the
Philox block for counter (e // 4 split into two 32-bit words, step split likewise) under the key
(seed's low 32 bits, seed's high 32 bits). ``dropout_constants`` turns a rate into the kernel's
integer threshold and scale; both backends use it, so they drop exactly the same elements.
"""
from __future__ import annotations

import numpy as np

__all__ = ["MULTIPLIERS", "WEYL", "philox4x32", "stream_words", "dropout_constants", "dropped", "normals"]

_WORD = 0xFFFFFFFF
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)  # PHILOX_M4x32_0, PHILOX_M4x32_1
WEYL = (0x9E3779B9, 0xBB67AE85)  # the key schedule's increments: golden ratio, sqrt(3) - 1


def philox4x32(counters: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """Philox4x32-``rounds`` of ``counters`` (n, 4) uint32 under ``key`` (k0, k1): (n, 4) uint32.

    Each round multiplies words 0 and 2 by the two multipliers (64-bit products, exact in
    uint64), then the new words are (hi(w2 * M1) ^ w1 ^ k0, lo(w2 * M1), hi(w0 * M0) ^ w3 ^ k1,
    lo(w0 * M0)); the key grows by the Weyl increments between rounds.
    """
    words = np.asarray(counters, dtype=np.uint32).reshape(-1, 4)
    w0, w1, w2, w3 = words.T.astype(np.uint64)  # one contiguous row per word
    p0, p1 = np.empty_like(w0), np.empty_like(w0)
    k0, k1 = int(key[0]) & _WORD, int(key[1]) & _WORD
    m0, m1, low, shift = np.uint64(MULTIPLIERS[0]), np.uint64(MULTIPLIERS[1]), np.uint64(_WORD), np.uint64(32)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + WEYL[0]) & _WORD, (k1 + WEYL[1]) & _WORD
        # In place, in an order that reads each old word before it is overwritten.
        np.multiply(w0, m0, out=p0)
        np.multiply(w2, m1, out=p1)
        np.right_shift(p1, shift, out=w0)
        w0 ^= w1
        w0 ^= np.uint64(k0)
        np.bitwise_and(p1, low, out=w1)
        np.right_shift(p0, shift, out=w2)
        w2 ^= w3
        w2 ^= np.uint64(k1)
        np.bitwise_and(p0, low, out=w3)
    out = np.empty((4, words.shape[0]), np.uint32)
    for j, w in enumerate((w0, w1, w2, w3)):
        out[j] = w
    return out.T


def stream_words(seed: int, step: int, start: int, count: int) -> np.ndarray:
    """Words ``start`` .. ``start + count - 1`` of the stream of (seed, step), as uint32 (count,)."""
    if count <= 0:
        return np.empty(0, np.uint32)
    first, last = start // 4, (start + count - 1) // 4
    blocks = np.arange(first, last + 1, dtype=np.uint64)
    counters = np.empty((blocks.size, 4), np.uint32)
    counters[:, 0] = blocks & np.uint64(_WORD)
    counters[:, 1] = blocks >> np.uint64(32)
    counters[:, 2] = step & _WORD
    counters[:, 3] = (step >> 32) & _WORD
    words = philox4x32(counters, (seed & _WORD, (seed >> 32) & _WORD)).reshape(-1)
    begin = start - 4 * first
    return words[begin : begin + count]


def dropout_constants(rate: float) -> tuple[int, float]:
    """(threshold, scale) of a dropout ``rate`` in [0, 1): an element is dropped where its word is
    below threshold = floor(rate * 2**32), and a kept one is multiplied by scale = 1 / (1 - rate)."""
    return min(int(rate * 2.0**32), _WORD), 1.0 / (1.0 - rate)


def dropped(seed: int, step: int, offset: int, shape: tuple[int, ...], threshold: int) -> np.ndarray:
    """The dropout mask of an array of ``shape`` whose first element is word ``offset`` of the
    stream of (seed, step): True where the element is dropped (C order, as the kernel's index)."""
    count = int(np.prod(shape, dtype=np.int64))
    return (stream_words(seed, step, offset, count) < np.uint32(threshold)).reshape(shape)


def normals(seed: int, step: int, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normals (float64) of an array of ``shape`` whose first element is element ``offset``:
    element e from words 2e and 2e + 1 of the stream of (seed, step) by Box-Muller, u1 = (w0 + 1) / 2**32
    in (0, 1], u2 = w1 / 2**32, z = sqrt(-2 log u1) cos(2 pi u2) (GaussianNoise)."""
    count = int(np.prod(shape, dtype=np.int64))
    words = stream_words(seed, step, 2 * offset, 2 * count).reshape(-1, 2)
    u1 = (words[:, 0].astype(np.float64) + 1.0) * 2.0**-32
    u2 = words[:, 1].astype(np.float64) * 2.0**-32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(shape)
