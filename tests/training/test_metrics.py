"""Binary metrics by hand; undefined metrics are None and left out of aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from medfl.training import binary_metrics, roc_auc, weighted
from medfl.training._metrics import unweighted


def test_roc_auc_counts_ties_as_half() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])
    # positives 0.4, 0.8, 0.9 against negatives 0.1, 0.4, 0.8:
    # 0.4 -> 1 + 0.5 + 0 ; 0.8 -> 1 + 1 + 0.5 ; 0.9 -> 3  = 7 of 9 pairs
    assert roc_auc(y, score) == pytest.approx(7 / 9, abs=1e-15)


@pytest.mark.parametrize(
    ("y", "score", "expected"),
    [
        ([0, 1], [0.2, 0.8], 1.0),
        ([0, 1], [0.8, 0.2], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
    ],
)
def test_roc_auc_simple_cases(y, score, expected) -> None:
    assert roc_auc(np.array(y), np.array(score)) == expected


@pytest.mark.parametrize("label", [0, 1])
def test_roc_auc_of_a_single_class_is_none(label: int) -> None:
    assert roc_auc(np.full(5, label), np.linspace(0, 1, 5)) is None


def test_binary_metrics_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0])
    prob = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    # threshold 0.5: tp 2, fn 1, fp 1, tn 1
    m = binary_metrics(y, prob, loss=0.4, threshold=0.5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(4 / 6)
    assert m["auc"] == pytest.approx(4 / 6)  # pairs won: 0.9 -> 2, 0.6 -> 1, 0.2 -> 1
    assert m["loss"] == 0.4


def test_binary_metrics_without_positives_leave_sensitivity_undefined() -> None:
    m = binary_metrics(np.zeros(3), np.array([0.1, 0.2, 0.9]), loss=float("nan"), threshold=0.5)
    assert (m["sensitivity"], m["auc"], m["loss"]) == (None, None, None)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["f1"] == 0.0


def test_weighted_aggregate_ignores_none_and_weights_by_examples() -> None:
    sites = [
        ({"auc": None, "accuracy": 0.5, "loss": 1.0}, 10),
        ({"auc": 0.8, "accuracy": 0.9, "loss": 0.5}, 30),
        ({"auc": 0.6, "accuracy": 0.7, "loss": None}, 10),
        ({"auc": 0.1, "accuracy": 0.1, "loss": 9.0}, 0),  # no examples: no weight
    ]
    out = weighted(sites)
    assert out["auc"] == pytest.approx((0.8 * 30 + 0.6 * 10) / 40)
    assert out["accuracy"] == pytest.approx((0.5 * 10 + 0.9 * 30 + 0.7 * 10) / 50)
    assert out["loss"] == pytest.approx((1.0 * 10 + 0.5 * 30) / 40)
    assert out["f1"] is None


def test_unweighted_mean_over_sites_ignores_none() -> None:
    out = unweighted([{"auc": None, "accuracy": 0.5}, {"auc": 0.8, "accuracy": 0.9}])
    assert out["auc"] == pytest.approx(0.8)
    assert out["accuracy"] == pytest.approx(0.7)


def test_non_finite_predictions_have_no_metrics() -> None:
    prob = np.array([0.9, np.nan, 0.2])
    m = binary_metrics(np.array([1, 0, 1]), prob, loss=float("nan"), threshold=0.5)
    assert m == dict.fromkeys(("loss", "accuracy", "auc", "sensitivity", "specificity", "f1"))
    # so one such site leaves the federation's figures to the others
    assert weighted([(m, 10), ({"auc": 0.7}, 5)])["auc"] == pytest.approx(0.7)


def test_federation_sensitivity_comes_from_pooled_confusion_counts() -> None:
    # site A: 9 positives, 8 found; 1 negative, 0 right. Site B: 1 positive, 0 found;
    # 9 negatives, 9 right. Same size, so a plain example-weighted mean of the sites'
    # sensitivities would say (8/9 + 0/1) / 2 = 0.44; the pooled truth is 8/10.
    a = binary_metrics(np.array([1] * 9 + [0]), np.array([0.9] * 8 + [0.1, 0.9]), 0.3, 0.5)
    b = binary_metrics(np.array([1] + [0] * 9), np.array([0.1] * 10), 0.3, 0.5)
    out = weighted([(a, 10), (b, 10)])
    assert out["sensitivity"] == pytest.approx(8 / 10)
    assert out["specificity"] == pytest.approx(9 / 10)
    assert out["accuracy"] == pytest.approx(17 / 20)
    assert (out["tp"], out["fp"], out["tn"], out["fn"]) == (8.0, 1.0, 9.0, 2.0)
