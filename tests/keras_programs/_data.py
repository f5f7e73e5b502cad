"""Small deterministic data sets the programs share (NumPy only, the same on both libraries)."""
import numpy as np


def classes(n, features=20, k=4, seed=0):
    """x (n, features) and class ids from one fixed linear rule (``seed`` draws other samples)."""
    w = np.random.default_rng(1000 + features * k).normal(size=(features, k))
    x = np.random.default_rng(seed).normal(size=(n, features)).astype("float32")
    return x, (x @ w).argmax(1)


def regression(n, features=8, seed=0):
    """x (n, features) and noisy targets (n, 1) of one fixed linear rule."""
    w = np.random.default_rng(2000 + features).normal(size=(features, 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, (x @ w + 0.1 * rng.normal(size=(n, 1))).astype("float32")
