"""Consistent DP histograms (non-negative, totals kept) and the recommended number of score bins."""

from __future__ import annotations

import numpy as np
import pytest

from federated.evaluation.dp_release import (
    consistent,
    consistent_histogram,
    privatize,
    recommended_score_bins,
)
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.study import EvaluationPrivacy

LAYOUT = StatisticsLayout(num_classes=2, score_bins=100, subgroup_levels=(), loss_bound=10.0)


def _noisy(seed: int, epsilon: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    stats = compute_statistics(np.column_stack([1 - score, score]), labels, None, LAYOUT)
    return privatize({"m": stats}, EvaluationPrivacy(enabled=True, epsilon=epsilon), rng=rng)[0]["m"]


@pytest.mark.parametrize("seed", range(20))
def test_consistent_histogram_is_non_negative_and_keeps_the_noisy_total(seed):
    values = np.random.default_rng(seed).normal(2.0, 10.0, 50)
    fitted = consistent_histogram(values)
    assert np.all(fitted >= 0)
    assert fitted.sum() == pytest.approx(max(values.sum(), 0.0), abs=1e-9)


def test_a_negative_noisy_total_becomes_an_empty_histogram():
    assert np.all(consistent_histogram(np.array([-5.0, 1.0, -2.0])) == 0)


def test_a_histogram_that_is_already_consistent_is_unchanged():
    values = np.array([0.0, 3.0, 5.0, 0.0, 2.0])
    assert consistent_histogram(values) == pytest.approx(values)


def test_consistent_histogram_sums_to_a_given_total():
    values = np.random.default_rng(1).normal(2.0, 10.0, 50)
    fitted = consistent_histogram(values, total=120.0)
    assert np.all(fitted >= 0) and fitted.sum() == pytest.approx(120.0)
    assert np.all(consistent_histogram(values, total=-3.0) == 0)


def test_consistent_sums_agree_with_the_shared_label_counts_and_hold_their_score_sums():
    noisy = _noisy(seed=3)
    fixed = consistent(noisy)
    negatives, positives = noisy["label_counts"]  # positive_class = 1
    assert np.all(fixed["hist_pos"] >= 0) and np.all(fixed["hist_neg"] >= 0)
    assert fixed["hist_pos"].sum() == pytest.approx(positives)
    assert fixed["hist_neg"].sum() == pytest.approx(negatives)
    assert fixed["confusion"].sum(axis=1) == pytest.approx(noisy["label_counts"])  # rows moved evenly, not clamped
    assert fixed["confusion"][1, 1] - fixed["confusion"][1, 0] == pytest.approx(
        noisy["confusion"][1, 1] - noisy["confusion"][1, 0])
    assert fixed.records == noisy.records
    records = fixed["hist_pos"] + fixed["hist_neg"]
    edges = np.arange(LAYOUT.score_bins + 1) / LAYOUT.score_bins
    assert np.all(fixed["score_sum"] >= records * edges[:-1] - 1e-12)
    assert np.all(fixed["score_sum"] <= records * edges[1:] + 1e-12)


def test_recommended_bins_grow_with_records_and_epsilon_and_shrink_with_partners():
    def bins(**kw):
        return recommended_score_bins(**({"epsilon": 1.0, "delta": 1e-6, "records": 100_000, "partners": 10} | kw))

    assert bins(records=1_000_000) > bins()
    assert bins(epsilon=3.0) > bins()
    assert bins(partners=100) < bins(records=1_000_000, partners=3)


def test_recommended_bins_at_the_issues_setting_are_the_coarsest():
    # ε = 1, 10 partners of 500 records: AUROC error 0.18 with 10 bins and 0.57 with 1000 (issue 13).
    assert recommended_score_bins(epsilon=1.0, delta=1e-6, records=5000, partners=10) == 10


@pytest.mark.parametrize("calibration_bins", [2, 10, 20, 25])
def test_recommended_bins_are_a_valid_study_setting(calibration_bins):
    for records in (10, 10_000, 10**9):
        bins = recommended_score_bins(epsilon=1.0, delta=1e-6, records=records, partners=3,
                                      calibration_bins=calibration_bins)
        assert bins % calibration_bins == 0 and 10 <= bins <= 1000
