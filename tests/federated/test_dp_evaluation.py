"""DP evaluation: calibrated noise with the stated σ, in-range post-processing, standard errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federated.evaluation.dp_release import (
    array_scales,
    consistent,
    coordinates_per_record,
    noisy_metrics,
    privatize,
    standard_errors,
    with_record_count,
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
    assert touched == coordinates_per_record(LAYOUT) == 9
    for name, value in one.arrays.items():
        assert np.all(np.abs(value) <= scales[name])


def test_release_is_calibrated_to_the_study_epsilon():
    release = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=2 * coordinates_per_record(LAYOUT))
    assert release.l2_sensitivity == pytest.approx(math.sqrt(18))
    assert release.sigma == pytest.approx(gaussian_sigma(epsilon=1.0, delta=1e-6, l2_sensitivity=math.sqrt(18)))


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
    stats = {"m1": _stats(), "m2": _stats(seed=1)}
    noisy, release = privatize(stats, SETTINGS, rng=np.random.default_rng(0))
    assert release.epsilon == 1.0 and release.l2_sensitivity == pytest.approx(math.sqrt(18))
    for name in stats:
        for key, value in stats[name].arrays.items():
            assert not np.array_equal(noisy[name][key], value)


def test_noisy_metrics_stay_in_range_and_plots_get_no_negative_counts():
    noisy, _ = privatize({"m": _stats(n=20)}, EvaluationPrivacy(enabled=True, epsilon=0.1), rng=np.random.default_rng(5))
    metrics = noisy_metrics(noisy["m"], calibration_bins=10)
    for name in ("accuracy", "precision", "recall", "f1", "auroc", "ece"):
        assert np.isnan(metrics[name]) or 0.0 <= metrics[name] <= 1.0  # NaN: a noisy total ≤ 0, nothing to report
    cleaned = consistent(noisy["m"])
    assert cleaned["count"][0] == cleaned["confusion"].sum()
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
    stats = _stats(n=400)
    exact = compute_metrics(stats, 10)["ece"]
    settings = EvaluationPrivacy(enabled=True, epsilon=2.0)
    plain, debiased = [], []
    for seed in range(60):
        noisy, release = privatize({"m": stats}, settings, rng=np.random.default_rng(seed))
        variance = {name: (release.sigma * scale) ** 2 for name, scale in array_scales(LAYOUT).items()}
        plain.append(compute_metrics(with_record_count(noisy["m"]), 10)["ece"])
        debiased.append(noisy_metrics(noisy["m"], 10, variance)["ece"])
    plain_error = np.mean(np.abs(np.array(plain) - exact))
    debiased_error = np.mean(np.abs(np.array(debiased) - exact))
    assert np.mean(plain) > exact + 0.1  # the bias the debiasing removes is there
    assert debiased_error < plain_error / 2


def test_debiased_ece_equals_ece_when_there_is_no_noise():
    stats = _stats(n=400)
    zero = {name: 0.0 for name in array_scales(LAYOUT)}
    assert noisy_metrics(stats, 10, zero)["ece"] == pytest.approx(compute_metrics(stats, 10)["ece"], rel=1e-12)
