"""DP evaluation: calibrated noise with the stated σ, in-range post-processing, standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federated.errors import MessageError
from federated.evaluation.dp_release import (
    ECE_MAX_NOISE_SHARE,
    array_scales,
    calibrate,
    consistent,
    coordinates_per_record,
    debiased_ece,
    ece_estimable,
    ece_noise_share,
    noisy_metrics,
    privatize,
    shared_coordinates_per_record,
    standard_errors,
)
from federated.evaluation.metrics import compute_metrics
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.study import EvaluationPrivacy
from privacy.gaussian import gaussian_sigma
from privacy.release import add_gaussian_noise, calibrate_release

LAYOUT = StatisticsLayout(num_classes=2, score_bins=20, subgroup_levels=("a", "b"), loss_bound=10.0)
SETTINGS = EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6, loss_bound=10.0)


def _stats(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    return compute_statistics(np.column_stack([1 - score, score]), labels, rng.choice(["a", "b"], n), LAYOUT)


def test_one_record_touches_the_documented_coordinates():
    one = compute_statistics(np.array([[0.3, 0.7]]), np.array([1]), np.array(["a"]), LAYOUT)
    scales = array_scales(LAYOUT)
    touched = sum(int(np.count_nonzero(value)) for name, value in one.arrays.items())
    # per model 8 (one histogram row: binary), plus its label count, released once per round
    assert touched == coordinates_per_record(LAYOUT) + shared_coordinates_per_record(LAYOUT) == 8 + 1
    for name, value in one.arrays.items():
        assert np.all(np.abs(value) <= scales[name])


def test_release_is_calibrated_to_the_study_epsilon():
    # two models: each model's own 8 coordinates, and the label count once for both
    release = calibrate(LAYOUT, SETTINGS, 2)
    assert release.l2_sensitivity == pytest.approx(math.sqrt(2 * 8 + 1))
    assert release.sigma == pytest.approx(gaussian_sigma(epsilon=1.0, delta=1e-6, l2_sensitivity=math.sqrt(17)))


def test_a_binary_study_sends_one_score_histogram_row():
    stats = _stats()
    assert stats["hist_pos"].shape == stats["hist_neg"].shape == stats["score_sum"].shape == (1, LAYOUT.score_bins)
    multiclass = StatisticsLayout(num_classes=3, score_bins=20, subgroup_levels=(), loss_bound=10.0)
    assert multiclass.shapes()["hist_pos"] == (3, 20)
    assert coordinates_per_record(multiclass) == 3 + 2 * 3 + 2  # every class's histograms (and the squares)


def test_two_models_carry_one_noisy_label_count_and_the_ledger_is_charged_for_all_coordinates():
    stats = {"m1": _stats(), "m2": _stats(seed=0)}
    noisy, release = privatize(stats, SETTINGS, rng=np.random.default_rng(0))
    assert np.array_equal(noisy["m1"]["label_counts"], noisy["m2"]["label_counts"])  # drawn once, sent with both
    assert not np.array_equal(noisy["m1"]["label_counts"], stats["m1"]["label_counts"])
    assert not np.array_equal(noisy["m1"]["confusion"], noisy["m2"]["confusion"])  # each model's own noise
    # the reported release is the study's ε with the sensitivity of every coordinate one record touches
    assert release.epsilon == SETTINGS.epsilon
    assert release.l2_sensitivity ** 2 == pytest.approx(2 * coordinates_per_record(LAYOUT) + 1)


def test_models_with_different_label_counts_are_refused():
    other = compute_statistics(np.array([[0.3, 0.7]]), np.array([1]), np.array(["a"]), LAYOUT)
    with pytest.raises(MessageError, match="'m2' carries other label_counts than model 'm1'"):
        privatize({"m1": _stats(), "m2": other}, SETTINGS, rng=np.random.default_rng(0))


def test_added_noise_has_the_stated_standard_deviation():
    release = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=9)
    zeros = {"x": np.zeros(200_000), "y": np.zeros(200_000)}
    noisy = add_gaussian_noise(zeros, scales={"x": 1.0, "y": 10.0}, release=release, rng=np.random.default_rng(3))
    assert np.std(noisy["x"]) == pytest.approx(release.sigma, rel=0.01)
    assert np.std(noisy["y"]) == pytest.approx(10 * release.sigma, rel=0.01)
    assert abs(np.mean(noisy["x"])) < 0.05


def test_arrays_without_a_scale_are_never_released():
    release = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=1)
    with pytest.raises(ValueError, match="no sensitivity scale"):
        add_gaussian_noise({"secret": np.ones(3)}, scales={}, release=release)


def test_privatize_changes_every_array_and_reports_the_release():
    stats = {"m1": _stats(), "m2": _stats(seed=0)}  # the same records: the same label counts
    noisy, release = privatize(stats, SETTINGS, rng=np.random.default_rng(0))
    assert release.epsilon == 1.0 and release.l2_sensitivity == pytest.approx(math.sqrt(17))
    for name in stats:
        for key, value in stats[name].arrays.items():
            assert not np.array_equal(noisy[name][key], value)


def test_noisy_metrics_stay_in_range_and_plots_get_no_negative_counts():
    noisy, _ = privatize({"m": _stats(n=20)}, EvaluationPrivacy(enabled=True, epsilon=0.1), rng=np.random.default_rng(5))
    metrics = noisy_metrics(noisy["m"], calibration_bins=10)
    for name in ("accuracy", "precision", "recall", "f1", "auroc", "ece"):
        assert np.isnan(metrics[name]) or 0.0 <= metrics[name] <= 1.0  # NaN: a noisy total ≤ 0, nothing to report
    cleaned = consistent(noisy["m"])
    assert cleaned["confusion"].sum(axis=1) == pytest.approx(noisy["m"]["label_counts"])  # rows: the shared counts
    assert np.all(cleaned["hist_pos"] >= 0) and np.all(cleaned["score_sum"] <= cleaned["hist_pos"] + cleaned["hist_neg"])


def _clamped(stats):
    arrays = dict(stats.arrays)
    arrays["hist_pos"], arrays["hist_neg"] = np.maximum(arrays["hist_pos"], 0), np.maximum(arrays["hist_neg"], 0)
    return type(stats)(stats.layout, arrays)


def test_consistent_histograms_are_less_biased_than_clamping_each_bin():
    # Many sparse bins: clamping negative noise at zero adds mass and pulls AUROC toward 0.5.
    stats = _stats(n=400)
    exact = compute_metrics(stats, 10)["auroc"]
    settings = EvaluationPrivacy(enabled=True, epsilon=3.0)
    draws = [privatize({"m": stats}, settings, rng=np.random.default_rng(s))[0]["m"] for s in range(60)]
    reported = np.mean([noisy_metrics(d, 10)["auroc"] for d in draws])
    clamped = np.mean([compute_metrics(_clamped(d), 10)["auroc"] for d in draws])
    assert abs(reported - exact) < abs(clamped - exact) / 2


def test_standard_error_shrinks_with_more_records_and_matches_the_spread_of_noisy_accuracy():
    release = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=9)
    variance = {name: (release.sigma * scale) ** 2 for name, scale in array_scales(LAYOUT).items()}
    small, large = _stats(n=200), _stats(n=5000)
    se_small = standard_errors(small, variance, 10, rng=np.random.default_rng(1))["accuracy"]
    se_large = standard_errors(large, variance, 10, rng=np.random.default_rng(1))["accuracy"]
    assert se_large < se_small / 5
    spread = np.std([
        noisy_metrics(privatize({"m": small}, SETTINGS, rng=np.random.default_rng(s))[0]["m"], 10)["accuracy"]
        for s in range(200)
    ])
    assert se_small == pytest.approx(spread, rel=0.3)


def test_debiased_ece_is_closer_to_the_exact_ece_than_ece_of_the_noisy_sums():
    # |noise| inflates every bin's |S_b - P_b|: the plain estimate sits far above the exact ECE.
    # (400 records at ε = 2 are too few for the study to report it: see the not-estimable tests.)
    stats = _stats(n=400)
    exact = compute_metrics(stats, 10)["ece"]
    settings = EvaluationPrivacy(enabled=True, epsilon=2.0)
    plain, debiased = [], []
    for seed in range(60):
        noisy, release = privatize({"m": stats}, settings, rng=np.random.default_rng(seed))
        variance = {name: (release.sigma * scale) ** 2 for name, scale in array_scales(LAYOUT).items()}
        plain.append(compute_metrics(noisy["m"], 10)["ece"])
        debiased.append(debiased_ece(noisy["m"], 10, variance))
    plain_error = np.mean(np.abs(np.array(plain) - exact))
    debiased_error = np.mean(np.abs(np.array(debiased) - exact))
    assert np.mean(plain) > exact + 0.1  # the bias the debiasing removes is there
    assert debiased_error < plain_error / 2


def test_debiased_ece_equals_ece_when_there_is_no_noise():
    stats = _stats(n=400)
    zero = {name: 0.0 for name in array_scales(LAYOUT)}
    assert noisy_metrics(stats, 10, zero)["ece"] == pytest.approx(compute_metrics(stats, 10)["ece"], rel=1e-12)


def _variance(release):
    return {name: (release.sigma * scale) ** 2 for name, scale in array_scales(LAYOUT).items()}


def test_ece_is_not_estimable_where_the_noise_swamps_it():
    # 400 records, ε = 1: the calibration bins' noise is far above 5 % of the records; the estimator would
    # read noise (the issue: 0.27-0.38 for a truth of 0.02-0.03), so the study reports NaN instead.
    noisy, release = privatize({"m": _stats(n=400)}, SETTINGS, rng=np.random.default_rng(2))
    assert ece_noise_share(noisy["m"], 10, _variance(release)) > ECE_MAX_NOISE_SHARE
    assert not ece_estimable(noisy["m"], 10, _variance(release))
    assert math.isnan(noisy_metrics(noisy["m"], 10, _variance(release))["ece"])
    assert ece_estimable(noisy["m"], 10, None)  # without DP it is exact


def test_ece_is_estimable_and_close_with_enough_records_for_the_noise():
    stats = _stats(n=60_000, seed=3)
    exact = compute_metrics(stats, 10)["ece"]
    settings = EvaluationPrivacy(enabled=True, epsilon=3.0, delta=1e-6, loss_bound=10.0)
    readings = []
    for seed in range(20):
        noisy, release = privatize({"m": stats}, settings, rng=np.random.default_rng(seed))
        assert ece_estimable(noisy["m"], 10, _variance(release))
        readings.append(noisy_metrics(noisy["m"], 10, _variance(release))["ece"])
    assert np.mean(np.abs(np.array(readings) - exact)) < 0.01


def test_one_record_moves_two_models_releases_by_at_most_the_calibrated_sensitivity():
    # Neighbouring data sets (one record removed), two models: every array each model sends, scaled by its
    # array's scale, with the shared label counts counted once (they are one release) stays within √17.
    rng = np.random.default_rng(4)
    labels, groups = rng.integers(0, 2, 50), rng.choice(["a", "b"], 50)
    scores = {"m1": rng.uniform(0, 1, 50), "m2": rng.uniform(0, 1, 50)}

    def released(rows):
        return {name: compute_statistics(np.column_stack([1 - s[rows], s[rows]]), labels[rows], groups[rows], LAYOUT)
                for name, s in scores.items()}

    full, less = released(np.arange(50)), released(np.arange(1, 50))
    scales = array_scales(LAYOUT)
    squared = float(((full["m1"]["label_counts"] - less["m1"]["label_counts"]) ** 2).sum())  # once for both
    for name in full:
        squared += sum(float((((full[name][key] - less[name][key]) / scales[key]) ** 2).sum())
                       for key in full[name].arrays if key != "label_counts")
    assert math.sqrt(squared) <= calibrate(LAYOUT, SETTINGS, 2).l2_sensitivity + 1e-12
