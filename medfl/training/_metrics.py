"""Binary classification metrics; an undefined metric is None, never an exception."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

METRICS = ("loss", "accuracy", "auc", "sensitivity", "specificity", "f1")
# Confusion-matrix counts travel with the metrics (aggregates, not rows), so the
# federation's accuracy, sensitivity, specificity and F1 are those of the pooled counts.
COUNTS = ("tp", "fp", "tn", "fn")
_FROM_COUNTS = ("accuracy", "sensitivity", "specificity", "f1")
Metrics = dict[str, float | None]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half; None when only one class is present."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(y: np.ndarray, prob: np.ndarray, loss: float, threshold: float) -> Metrics:
    if not np.isfinite(prob).all():  # a model that outputs NaN has no metrics here
        return dict.fromkeys(METRICS)
    pred = prob >= threshold
    truth = y == 1
    counts = {
        "tp": float(np.sum(pred & truth)),
        "fp": float(np.sum(pred & ~truth)),
        "tn": float(np.sum(~pred & ~truth)),
        "fn": float(np.sum(~pred & truth)),
    }
    return {
        "loss": loss if math.isfinite(loss) else None,
        "auc": roc_auc(y, prob),
        **_from_counts(counts),
        **counts,
    }


def _from_counts(c: Mapping[str, float]) -> Metrics:
    tp, fp, tn, fn = (c[k] for k in COUNTS)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def weighted(per_site: list[tuple[Metrics, int]]) -> Metrics:
    """The federation's figure. Loss and AUC: the example-weighted mean over the sites
    where they are defined. Accuracy, sensitivity, specificity, F1: from the summed
    confusion counts, i.e. each site weighted by the examples that metric counts (its
    positives for sensitivity); sites that sent no counts by example-weighted mean."""
    out: Metrics = {}
    for name in METRICS:
        pairs = [(m[name], n) for m, n in per_site if m.get(name) is not None and n > 0]
        total = sum(n for _, n in pairs)
        out[name] = sum(float(v) * n for v, n in pairs if v is not None) / total if total else None
    counted = [m for m, n in per_site if n > 0 and all(m.get(k) is not None for k in COUNTS)]
    if counted:
        sums = {k: sum(float(m[k] or 0.0) for m in counted) for k in COUNTS}
        out |= _from_counts(sums) | sums
    return out


def unweighted(per_site: list[Metrics]) -> Metrics:
    """Plain mean over sites (FLamby's 'mean over hospitals')."""
    out: Metrics = {}
    for name in METRICS:
        values = [m[name] for m in per_site if m.get(name) is not None]
        out[name] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return out
