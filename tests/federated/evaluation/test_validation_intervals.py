"""Intervals and validation metrics from pooled histograms, checked against reference implementations
(statsmodels for proportions and meta-analysis, scikit-learn for PR/AP and operating points, DeLong
written from the paper for the AUROC variance) on the concatenated records."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.proportion import proportion_confint

from federated.evaluation.intervals import auroc_interval, auroc_variance, clopper_pearson, mean_interval, wilson
from federated.evaluation.meta_analysis import dersimonian_laird
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.evaluation.validation import (
    calibration_in_the_large,
    calibration_slope_intercept,
    net_benefit,
    precision_recall,
    sensitivity_at_specificity,
    threshold_metrics,
    validation_summary,
)
from federated.study import ValidationSettings

BINS = 1000


def _records(seed: int, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = 1.3 * (labels - 0.5) * 2 + rng.normal(0, 1.2, n)
    return 1 / (1 + np.exp(-logits)), labels


def _binned_statistics(scores: np.ndarray, labels: np.ndarray, bins: int = BINS):
    layout = StatisticsLayout(num_classes=2, score_bins=bins, subgroup_levels=())
    probabilities = np.column_stack([1 - scores, scores])
    return compute_statistics(probabilities, labels, None, layout)


def _bin_index(scores: np.ndarray, bins: int = BINS) -> np.ndarray:
    return np.minimum((scores * bins).astype(int), bins - 1)


def _reference_delong_variance(scores: np.ndarray, labels: np.ndarray) -> float:
    """DeLong, DeLong & Clarke-Pearson (1988): placement values with ties counted one half."""
    x, y = scores[labels == 1], scores[labels == 0]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(v10.var(ddof=1) / x.size + v01.var(ddof=1) / y.size)


@pytest.mark.parametrize("k,n", [(0, 20), (3, 20), (17, 20), (20, 20), (412, 500)])
def test_wilson_interval_equals_statsmodels(k: int, n: int) -> None:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    interval = wilson(k, n)
    assert interval.low == pytest.approx(low, abs=1e-12) and interval.high == pytest.approx(high, abs=1e-12)


@pytest.mark.parametrize("k,n", [(0, 20), (3, 20), (20, 20), (412, 500)])
def test_clopper_pearson_equals_statsmodels_beta(k: int, n: int) -> None:
    low, high = proportion_confint(k, n, alpha=0.05, method="beta")
    interval = clopper_pearson(k, n)
    assert interval.low == pytest.approx(low, abs=1e-10) and interval.high == pytest.approx(high, abs=1e-10)


def test_dp_noise_widens_the_wilson_interval_and_stays_in_range() -> None:
    plain, noisy = wilson(45, 50), wilson(45, 50, noise_variance=0.002)
    assert noisy.low < plain.low and noisy.high >= plain.high and 0 <= noisy.low and noisy.high <= 1


def test_binned_delong_variance_equals_reference_delong_on_binned_scores() -> None:
    scores, labels = _records(1)
    stats = _binned_statistics(scores, labels)
    binned_scores = _bin_index(scores).astype(float)  # the histogram sees each score only through its bin
    expected = _reference_delong_variance(binned_scores, labels)
    assert auroc_variance(stats["hist_pos"][0], stats["hist_neg"][0]) == pytest.approx(expected, rel=1e-10)


def test_auroc_interval_covers_the_exact_auroc_when_widened_by_the_binning_bound() -> None:
    scores, labels = _records(2)
    stats = _binned_statistics(scores, labels, bins=20)
    summary = validation_summary(stats, ValidationSettings())
    exact = roc_auc_score(labels, scores)
    widened = summary["auroc_ci_with_binning"]
    assert widened["low"] <= exact <= widened["high"]
    assert summary["auroc_ci"]["high"] - summary["auroc_ci"]["low"] < widened["high"] - widened["low"]


def test_auroc_interval_coverage_by_simulation_is_near_nominal() -> None:
    rng = np.random.default_rng(7)
    covered, runs = 0, 300
    truth_scores, truth_labels = _records(99, n=200_000)
    truth = roc_auc_score(truth_labels, _bin_index(truth_scores))
    for _ in range(runs):
        pick = rng.integers(0, truth_scores.size, 300)
        stats = _binned_statistics(truth_scores[pick], truth_labels[pick])
        pos, neg = stats["hist_pos"][0], stats["hist_neg"][0]
        auroc = roc_auc_score(truth_labels[pick], _bin_index(truth_scores[pick]))
        interval, _ = auroc_interval(auroc, pos, neg)
        covered += interval.covers(truth)
    assert 0.92 <= covered / runs <= 0.98


def test_average_precision_equals_scikit_learn_on_binned_scores() -> None:
    scores, labels = _records(3)
    stats = _binned_statistics(scores, labels)
    _, _, average_precision = precision_recall(stats["hist_pos"][0], stats["hist_neg"][0])
    assert average_precision == pytest.approx(average_precision_score(labels, _bin_index(scores)), rel=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.71])
def test_operating_points_at_bin_edges_equal_the_confusion_of_the_records(threshold: float) -> None:
    scores, labels = _records(4)
    stats = _binned_statistics(scores, labels)
    (row,) = threshold_metrics(stats["hist_pos"][0], stats["hist_neg"][0], [threshold])
    called = _bin_index(scores) >= round(threshold * BINS)
    tp, fp = (called & (labels == 1)).sum(), (called & (labels == 0)).sum()
    tn, fn = (~called & (labels == 0)).sum(), (~called & (labels == 1)).sum()
    assert row["sensitivity"] == pytest.approx(tp / (tp + fn)) and row["specificity"] == pytest.approx(tn / (tn + fp))
    assert row["ppv"] == pytest.approx(tp / (tp + fp)) and row["npv"] == pytest.approx(tn / (tn + fn))
    assert row["sensitivity_ci"]["low"] <= row["sensitivity"] <= row["sensitivity_ci"]["high"]


def test_sensitivity_at_fixed_specificity_meets_the_target() -> None:
    scores, labels = _records(5)
    stats = _binned_statistics(scores, labels)
    point = sensitivity_at_specificity(stats["hist_pos"][0], stats["hist_neg"][0], 0.9)
    assert point["specificity"] >= 0.9
    called = _bin_index(scores) >= round(point["threshold_used"] * BINS)
    assert point["sensitivity"] == pytest.approx((called & (labels == 1)).sum() / (labels == 1).sum())


def test_calibration_in_the_large_is_exact() -> None:
    scores, labels = _records(6)
    stats = _binned_statistics(scores, labels)
    value = calibration_in_the_large(stats["hist_pos"][0], stats["hist_neg"][0], stats["score_sum"][0])
    assert value == pytest.approx(labels.mean() - scores.mean(), abs=1e-12)


def test_binned_calibration_slope_is_close_to_the_per_record_fit() -> None:
    """The approximation is stated and measured: with 1000 bins the slope and intercept are within 0.01
    of the per-record logistic recalibration (statsmodels GLM, the reference)."""
    import statsmodels.api as sm

    scores, labels = _records(8, n=3000)
    scores = np.clip(scores * 0.8 + 0.1, 0, 1)  # a miscalibrated model: slope away from 1
    stats = _binned_statistics(scores, labels)
    slope, intercept = calibration_slope_intercept(stats["hist_pos"][0], stats["hist_neg"][0], stats["score_sum"][0])
    x = np.log(scores / (1 - scores))
    fit = sm.GLM(labels, sm.add_constant(x), family=sm.families.Binomial()).fit()
    assert slope == pytest.approx(fit.params[1], abs=0.01) and intercept == pytest.approx(fit.params[0], abs=0.01)


def test_net_benefit_equals_the_decision_curve_formula() -> None:
    scores, labels = _records(9)
    stats = _binned_statistics(scores, labels)
    (row,) = net_benefit(stats["hist_pos"][0], stats["hist_neg"][0], [0.2])
    called = _bin_index(scores) >= 200
    n = labels.size
    expected = (called & (labels == 1)).sum() / n - (called & (labels == 0)).sum() / n * 0.25
    assert row["net_benefit"] == pytest.approx(expected) and row["treat_all"] == pytest.approx(labels.mean() - (1 - labels.mean()) * 0.25)


def test_mean_interval_from_sum_and_sum_of_squares() -> None:
    values = np.random.default_rng(10).normal(0.2, 0.1, 500)
    interval = mean_interval(values.sum(), (values**2).sum(), values.size)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert interval.low == pytest.approx(values.mean() - 1.959963984540054 * se)


def test_multiclass_summary_reports_every_class_auroc() -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3)) + 2 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    stats = compute_statistics(probabilities, labels, None, StatisticsLayout(num_classes=3, score_bins=BINS, subgroup_levels=()))
    summary = validation_summary(stats, ValidationSettings())
    for cls in range(3):
        exact = roc_auc_score(labels == cls, probabilities[:, cls])
        entry = summary["per_class_auroc"][str(cls)]
        assert abs(entry["auroc"] - exact) <= 0.002
        assert entry["auroc_ci_with_binning"]["low"] <= exact <= entry["auroc_ci_with_binning"]["high"]


def test_random_effects_equal_statsmodels_dersimonian_laird() -> None:
    estimates = [0.81, 0.88, 0.74, 0.92, 0.85]
    variances = [0.0021, 0.0015, 0.0030, 0.0011, 0.0018]
    ours = dersimonian_laird(estimates, variances)
    reference = combine_effects(np.array(estimates), np.array(variances), method_re="dl")
    assert ours.estimate == pytest.approx(reference.mean_effect_re, rel=1e-10)
    assert ours.tau2 == pytest.approx(reference.tau2, rel=1e-10)
    assert ours.i2 == pytest.approx(reference.i2, rel=1e-10)
    assert ours.standard_error == pytest.approx(reference.sd_eff_w_re, rel=1e-10)


def test_random_effects_refuse_a_single_partner() -> None:
    with pytest.raises(ValueError, match="at least 2 partners"):
        dersimonian_laird([0.8], [0.01])


def test_net_benefit_and_calibration_in_the_large_can_be_negative() -> None:
    pos, neg = np.array([5.0, 5.0]), np.array([0.0, 90.0])  # the model calls 95 records positive, 5 are
    (row,) = net_benefit(pos, neg, [0.5])
    assert row["net_benefit"] < 0 and row["treat_all"] < 0
    assert calibration_in_the_large(pos, neg, np.array([2.0, 80.0])) < 0


def test_rates_from_noisy_counts_stay_in_range() -> None:
    (row,) = threshold_metrics(np.array([-2.0, 30.0]), np.array([40.0, -1.5]), [0.5])
    assert all(0.0 <= row[m] <= 1.0 for m in ("sensitivity", "specificity", "ppv", "npv"))
