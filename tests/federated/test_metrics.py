"""Pooled metrics from summed statistics equal scikit-learn's on the concatenated data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from federated.evaluation.metrics import class_curve, compute_metrics, subgroup_metrics
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)


def _binary_partners(rng, sizes=(120, 75, 40)):
    parts = []
    for size in sizes:
        labels = rng.integers(0, 2, size)
        score = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
        probabilities = np.column_stack([1 - score, score])
        groups = rng.choice(["f", "m"], size)
        parts.append((probabilities, labels, groups))
    return parts


LAYOUT = StatisticsLayout(num_classes=2, score_bins=1000, subgroup_levels=("f", "m"))


def test_pooled_count_metrics_equal_sklearn_exactly():
    parts = _binary_partners(np.random.default_rng(1))
    pooled = EvaluationStatistics.total([compute_statistics(p, y, g, LAYOUT) for p, y, g in parts])
    metrics = compute_metrics(pooled, calibration_bins=10)
    probabilities = np.concatenate([p for p, _, _ in parts])
    labels = np.concatenate([y for _, y, _ in parts])
    predicted = (probabilities[:, 1] >= 0.5).astype(int)
    assert metrics["count"] == labels.size
    assert metrics["accuracy"] == skm.accuracy_score(labels, predicted)
    assert metrics["precision"] == pytest.approx(skm.precision_score(labels, predicted), rel=1e-15)
    assert metrics["recall"] == pytest.approx(skm.recall_score(labels, predicted), rel=1e-15)
    assert metrics["f1"] == pytest.approx(skm.f1_score(labels, predicted), rel=1e-15)


def test_pooled_losses_equal_sklearn():
    parts = _binary_partners(np.random.default_rng(2))
    pooled = EvaluationStatistics.total([compute_statistics(p, y, g, LAYOUT) for p, y, g in parts])
    metrics = compute_metrics(pooled, calibration_bins=10)
    probabilities = np.concatenate([p for p, _, _ in parts])
    labels = np.concatenate([y for _, y, _ in parts])
    assert metrics["brier"] == pytest.approx(skm.brier_score_loss(labels, probabilities[:, 1]), rel=1e-12)
    assert metrics["log_loss"] == pytest.approx(skm.log_loss(labels, probabilities), rel=1e-9)


@pytest.mark.parametrize("bins", [10, 100, 1000])
def test_binned_auroc_is_within_its_stated_bound(bins):
    layout = StatisticsLayout(num_classes=2, score_bins=bins, subgroup_levels=())
    parts = _binary_partners(np.random.default_rng(bins))
    pooled = EvaluationStatistics.total([compute_statistics(p, y, None, layout) for p, y, _ in parts])
    metrics = compute_metrics(pooled, calibration_bins=10)
    probabilities = np.concatenate([p for p, _, _ in parts])
    labels = np.concatenate([y for _, y, _ in parts])
    exact = skm.roc_auc_score(labels, probabilities[:, 1])
    assert abs(metrics["auroc"] - exact) <= metrics["auroc_bound"] + 1e-12
    assert metrics["auroc_bound"] < 0.5 / bins * 10  # coarse bins give a coarse bound


def test_auroc_is_exact_when_no_bin_holds_both_classes():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1, 1])
    stats = compute_statistics(probabilities, labels, None, StatisticsLayout(2, 100, ()))
    metrics = compute_metrics(stats, calibration_bins=10)
    assert metrics["auroc_bound"] == 0
    assert metrics["auroc"] == skm.roc_auc_score(labels, probabilities[:, 1])


def test_ece_matches_direct_computation():
    rng = np.random.default_rng(5)
    score = rng.random(500)
    labels = (rng.random(500) < score**2).astype(int)
    stats = compute_statistics(np.column_stack([1 - score, score]), labels, None, StatisticsLayout(2, 1000, ()))
    curve = class_curve(stats, 1, calibration_bins=10)
    bins = np.minimum((score * 10).astype(int), 9)
    expected = sum(
        (bins == b).sum() * abs(score[bins == b].mean() - labels[bins == b].mean()) for b in range(10) if (bins == b).any()
    ) / score.size
    assert curve.ece == pytest.approx(expected, rel=1e-12)


def test_multiclass_macro_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    layout = StatisticsLayout(num_classes=4, score_bins=500, subgroup_levels=())
    parts = []
    for size in (90, 60):
        labels = rng.integers(0, 4, size)
        logits = rng.normal(size=(size, 4)) + 1.5 * np.eye(4)[labels]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        parts.append((probabilities, labels))
    pooled = EvaluationStatistics.total([compute_statistics(p, y, None, layout) for p, y in parts])
    metrics = compute_metrics(pooled, calibration_bins=10)
    probabilities = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    predicted = probabilities.argmax(axis=1)
    assert metrics["accuracy"] == skm.accuracy_score(labels, predicted)
    assert metrics["f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"), rel=1e-12)
    exact = skm.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert abs(metrics["auroc"] - exact) <= metrics["auroc_bound"] + 1e-12


def test_subgroup_rates_count_each_level():
    probabilities = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    labels = np.array([1, 1, 0, 0])
    stats = compute_statistics(probabilities, labels, np.array(["f", "f", "m", "m"]), LAYOUT)
    groups = subgroup_metrics(stats)
    assert groups["f"] == {"count": 2, "accuracy": 0.5, "true_positive_rate": 0.5, "false_positive_rate": pytest.approx(float("nan"), nan_ok=True), "selection_rate": 0.5}
    assert groups["m"]["false_positive_rate"] == 0.5 and groups["m"]["accuracy"] == 0.5
