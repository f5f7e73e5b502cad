"""Confusion metrics with Keras 3's names and numbers: ``TruePositives``, ``FalsePositives``,
``TrueNegatives``, ``FalseNegatives`` (``thresholds``), ``Precision``, ``Recall`` (``thresholds``,
``top_k``, ``class_id``) and ``AUC`` (ROC or PR, ``num_thresholds``, ``from_logits``).

As Keras's: predictions and labels are flattened (every output of every row is one decision),
a label counts as positive when it is non-zero, a prediction is positive at a threshold when it is
strictly above it, and a row's weight applies to each of its outputs. The state is the weighted
counts per threshold (float64), added on the device with a matrix product a batch; ``AUC``
keeps weighted histograms of the predictions over its ``num_thresholds`` evenly spaced buckets
(Keras's bucketed update: a prediction counts above threshold i when it is above i/(T-1), clipped
to [0, 1]) and forms the curve when it is read.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend
from ..backends.base import Array
from .base import EPSILON, Metric, add_into, divide_no_nan

__all__ = ["TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives", "Precision", "Recall", "AUC"]

#: Keras's NEG_INF: the threshold with top_k and the value of predictions outside the top k.
NEG_INF = -1e10


def parse_thresholds(thresholds: Any, default: float | None) -> tuple[list[float], bool]:
    """(the thresholds as a list, whether one was given as a number): Keras's parse_init_thresholds."""
    if thresholds is None:
        return [default], True
    if isinstance(thresholds, (int, float, np.floating, np.integer)) and not isinstance(thresholds, bool):
        values, single = [float(thresholds)], True
    else:
        values, single = [float(t) for t in thresholds], False
    for t in values:
        if not 0 <= t <= 1:
            raise ValueError(f"thresholds: expected values in [0, 1], got {thresholds!r}")
    return values, single


def flat(backend: Backend, y_pred: Array, y_true: Array, sample_weight: Array | None, top_k: int | None = None,
         class_id: int | None = None, name: str = "metric") -> tuple[Array, Array, Array | None]:
    """(predictions (N,), labels as 0/1 (N,), weights (N,) or None), float64, as Keras flattens them."""
    xp = backend.xp
    p = y_pred.astype(np.float64)
    if p.ndim == 1:
        p = p.reshape(-1, 1)
    y = y_true
    if y.shape != p.shape:
        if y.size != p.size:
            raise ValueError(f"metrics: '{name}' expects labels of the predictions' shape {tuple(p.shape)}; got "
                             f"labels of shape {tuple(y.shape)}")
        y = y.reshape(p.shape)
    y = (y != 0).astype(np.float64)
    if top_k is not None:
        order = xp.argsort(-p, axis=1, kind="stable")[:, :top_k]
        kept = xp.full(p.shape, NEG_INF, np.float64)
        rows = xp.arange(p.shape[0])[:, None]
        kept[rows, order] = p[rows, order]
        p = kept
    w = None if sample_weight is None else xp.broadcast_to(sample_weight[:, None], p.shape)
    if class_id is not None:
        if not 0 <= class_id < p.shape[1]:
            raise ValueError(f"class_id: {class_id} is outside the {p.shape[1]} outputs")
        p, y = p[:, class_id], y[:, class_id]
        w = None if w is None else w[:, class_id]
    return p.reshape(-1), y.reshape(-1), None if w is None else xp.ascontiguousarray(w).reshape(-1)


def on_backend(metric: Metric, key: str, backend: Backend, make: Any) -> Array:
    """A constant array of ``metric`` on ``backend`` (``make(backend)``), made once per backend, not
    at every reset."""
    cache = metric.__dict__.setdefault("_constants", {})
    if (key, id(backend)) not in cache:
        cache[(key, id(backend))] = make(backend)
    return cache[(key, id(backend))]


def device_thresholds(metric: Metric, backend: Backend) -> Array:
    """``metric.thresholds`` on ``backend``."""
    return on_backend(metric, "thresholds", backend, lambda b: b.from_numpy(np.asarray(metric.thresholds, np.float64)))


class ConfusionCounts(Metric):
    """Weighted confusion counts per threshold; ``kinds`` says which of 'tp', 'fp', 'tn', 'fn' it keeps."""

    kinds: tuple[str, ...] = ()
    labels_kind = "same"

    def __init__(self, thresholds: Any = None, name: str | None = None, dtype: Any = None, top_k: int | None = None,
                 class_id: int | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k: expected a positive integer, got {top_k!r}")
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) or class_id < 0):
            raise ValueError(f"class_id: expected a non-negative integer, got {class_id!r}")
        self.init_thresholds = thresholds
        self.top_k = None if top_k is None else int(top_k)
        self.class_id = None if class_id is None else int(class_id)
        default = NEG_INF if top_k is not None else 0.5
        self.thresholds, self.single = parse_thresholds(thresholds, default)
        self._thr: Array | None = None

    def state_size(self, outputs: int) -> int:
        return len(self.kinds) * len(self.thresholds)

    def bind(self, state, backend, outputs=None):
        super().bind(state, backend, outputs)
        n = len(self.thresholds)
        self._views = {kind: state[i * n : (i + 1) * n] for i, kind in enumerate(self.kinds)}
        self._thr = device_thresholds(self, backend)

    def update(self, backend, y_pred, y_true, sample_weight=None):
        xp = backend.xp
        p, y, w = flat(backend, y_pred, y_true, sample_weight, self.top_k, self.class_id, self.name)
        pos = (p[None, :] > self._thr[:, None]).astype(np.float64)  # (T, N)
        wt = y if w is None else y * w
        wf = (1.0 - y) if w is None else (1.0 - y) * w
        if "tp" in self.kinds or "fn" in self.kinds:
            tp = pos @ wt
            if "tp" in self.kinds:
                add_into(self._views["tp"], tp)
            if "fn" in self.kinds:
                add_into(self._views["fn"], xp.sum(wt) - tp)
        if "fp" in self.kinds or "tn" in self.kinds:
            fp = pos @ wf
            if "fp" in self.kinds:
                add_into(self._views["fp"], fp)
            if "tn" in self.kinds:
                add_into(self._views["tn"], xp.sum(wf) - fp)

    def counts(self, state: np.ndarray) -> dict[str, np.ndarray]:
        n = len(self.thresholds)
        return {kind: np.asarray(state[i * n : (i + 1) * n], np.float64) for i, kind in enumerate(self.kinds)}

    def shaped(self, value: np.ndarray) -> Any:
        return float(value[0]) if self.single else np.asarray(value, np.float64)

    def result_from(self, state):
        return self.shaped(self.counts(state)[self.kinds[0]])

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(ConfusionCounts):
    """The weighted count of positive labels predicted above each threshold (default 0.5)."""

    kinds = ("tp",)

    def __init__(self, thresholds: Any = None, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(thresholds, name, dtype)


class FalsePositives(TruePositives):
    """The weighted count of negative labels predicted above each threshold."""

    kinds = ("fp",)


class TrueNegatives(TruePositives):
    """The weighted count of negative labels predicted at or below each threshold."""

    kinds = ("tn",)


class FalseNegatives(TruePositives):
    """The weighted count of positive labels predicted at or below each threshold."""

    kinds = ("fn",)


class Precision(ConfusionCounts):
    """tp / (tp + fp) per threshold (0 where nothing was predicted positive)."""

    kinds = ("tp", "fp")

    def __init__(self, thresholds: Any = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(thresholds, name, dtype, top_k, class_id)

    def result_from(self, state):
        c = self.counts(state)
        return self.shaped(divide_no_nan(c["tp"], c["tp"] + c["fp"]))

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """tp / (tp + fn) per threshold (0 where there was no positive label)."""

    kinds = ("tp", "fn")

    def result_from(self, state):
        c = self.counts(state)
        return self.shaped(divide_no_nan(c["tp"], c["tp"] + c["fn"]))


class AUC(Metric):
    """The area under the ROC or precision-recall curve over ``num_thresholds`` thresholds
    (Keras's ``AUC``: 0 - eps, i/(T-1) for i in 1..T-2, 1 + eps), with Keras's default
    'interpolation' summation (trapezoids for ROC, Davis & Goadrich's interpolation for PR), or
    'minoring' / 'majoring'. ``from_logits``: the predictions are logits (a sigmoid first)."""

    labels_kind = "same"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype: Any = None, thresholds: Any = None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights: Any = None, from_logits: bool = False) -> None:
        super().__init__(name=name, dtype=dtype)
        if multi_label or label_weights is not None:
            raise ValueError("AUC: multi_label and label_weights are not supported by fcgpu (every output is one "
                             "decision, Keras's default)")
        curve, summation_method = str(curve).upper(), str(summation_method).lower()
        if curve not in ("ROC", "PR"):
            raise ValueError(f"curve: expected 'ROC' or 'PR', got {curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"summation_method: expected 'interpolation', 'minoring' or 'majoring', got {summation_method!r}")
        self.curve, self.summation_method, self.from_logits = curve, summation_method, bool(from_logits)
        self.multi_label, self.num_labels, self.label_weights = False, num_labels, None
        if thresholds is not None:
            inner, _ = parse_thresholds(thresholds, None)
            self._given = sorted(inner)
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ValueError(f"num_thresholds: expected an integer > 1, got {num_thresholds!r}")
            self._given = None
            self.num_thresholds = int(num_thresholds)
        n = self.num_thresholds
        inner = self._given if self._given is not None else [(i + 1) / (n - 1) for i in range(n - 2)]
        self.thresholds = [0.0 - EPSILON] + list(inner) + [1.0 + EPSILON]

    def state_size(self, outputs: int) -> int:
        return 2 * self.num_thresholds

    def bind(self, state, backend, outputs=None):
        super().bind(state, backend, outputs)
        n = self.num_thresholds
        self._hist = state.reshape(2, n)
        self._thr = device_thresholds(self, backend)
        self._buckets = on_backend(self, "buckets", backend, lambda b: b.xp.arange(n)[None, :])

    def update(self, backend, y_pred, y_true, sample_weight=None):
        xp = backend.xp
        p, y, w = flat(backend, y_pred, y_true, sample_weight, name=self.name)
        if self.from_logits:
            p = 1.0 / (1.0 + xp.exp(-p))
        n = self.num_thresholds
        if self._given is None:  # Keras's bucketed update: ceil(p (T-1)) - 1, at least 0
            bucket = xp.maximum(xp.ceil(xp.clip(p, 0.0, 1.0) * (n - 1)) - 1, 0).astype(np.int64)
        else:  # the last threshold at or below p, by search
            bucket = xp.searchsorted(self._thr, p, side="left").astype(np.int64) - 1
            bucket = xp.maximum(bucket, 0)
        wt = y if w is None else y * w
        wf = (1.0 - y) if w is None else (1.0 - y) * w
        # One matrix product of the weights with the buckets' one-hot rows (no scatter, no bincount:
        # CuPy's reads the largest index back to the host).
        onehot = (bucket[:, None] == self._buckets).astype(np.float64)
        add_into(self._hist, xp.stack([wt, wf]) @ onehot)

    def confusion(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tp, fp, tn, fn) per threshold from the histograms."""
        n = self.num_thresholds
        hist_t, hist_f = np.asarray(state[:n], np.float64), np.asarray(state[n : 2 * n], np.float64)
        tp = np.cumsum(hist_t[::-1])[::-1]
        fp = np.cumsum(hist_f[::-1])[::-1]
        return tp, fp, hist_f.sum() - fp, hist_t.sum() - tp

    def result_from(self, state):
        tp, fp, tn, fn = self.confusion(state)
        n = self.num_thresholds
        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[: n - 1] - tp[1:]
            pos = tp + fp
            dp = pos[: n - 1] - pos[1:]
            slope = divide_no_nan(dtp, np.maximum(dp, 0))
            intercept = tp[1:] - slope * pos[1:]
            both = (pos[: n - 1] > 0) & (pos[1:] > 0)
            ratio = np.where(both, divide_no_nan(pos[: n - 1], np.maximum(pos[1:], 0)), 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = divide_no_nan(slope * (dtp + intercept * np.log(ratio)), np.maximum(tp[1:] + fn[1:], 0))
            return float(np.sum(terms))
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[: n - 1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[: n - 1], y[1:])
        else:
            heights = np.maximum(y[: n - 1], y[1:])
        return float(np.sum((x[: n - 1] - x[1:]) * heights))

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "thresholds": self._given, "from_logits": self.from_logits}
