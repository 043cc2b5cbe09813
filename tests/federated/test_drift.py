"""The statistical comparison of a monitoring period with its baseline (federated.evaluation.drift)."""

from __future__ import annotations

import numpy as np
import pytest

from federated.evaluation.dp_release import array_scales, privatize
from federated.evaluation.drift import Estimate, compare, metric_estimates
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.study import EvaluationPrivacy

LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), threshold=0.5, positive_class=1, loss_bound=10.0)
PRIVACY = EvaluationPrivacy(enabled=True, epsilon=4.0, delta=1e-6, loss_bound=10.0)
METRICS = {"accuracy": 0.05, "auroc": 0.05, "ece": 0.05, "prevalence": 0.05}


def _period(rng: np.random.Generator, *, n: int = 2000, flip: float = 0.0):
    """A released period: n records of a fixed, well-calibrated model, `flip` of the labels flipped, DP noise added."""
    scores = rng.beta(0.6, 0.6, n)
    labels = (rng.random(n) < scores).astype(np.int64)
    flipped = rng.random(n) < flip
    labels[flipped] = 1 - labels[flipped]
    probabilities = np.column_stack([1 - scores, scores])
    stats = compute_statistics(probabilities, labels, None, LAYOUT)
    noisy, release = privatize({"m": stats}, PRIVACY, rng)
    variance = {name: (release.sigma * scale) ** 2 for name, scale in array_scales(LAYOUT).items()}
    return metric_estimates(noisy["m"], calibration_bins=10, noise_variance=variance)


def test_stable_periods_alert_no_more_often_than_alpha_under_dp_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("federated.evaluation.drift.NOISE_DRAWS", 60)  # the noise's SE from fewer draws: faster
    rng = np.random.default_rng(20261130)
    alpha, trials = 0.05, 120
    alerts = {metric: 0 for metric in METRICS}
    for _ in range(trials):
        baseline, current = _period(rng), _period(rng)
        for metric in METRICS:
            # max_drop 0: only the significance test decides, the strictest check of its level.
            alerts[metric] += compare(metric, baseline[metric], current[metric], max_drop=0.0, alpha=alpha).alert
    # The observed rate may exceed alpha by sampling error: allow three binomial standard errors.
    limit = alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert {m: a / trials for m, a in alerts.items() if a / trials > limit} == {}


def test_a_real_drop_alerts() -> None:
    rng = np.random.default_rng(7)
    baseline, degraded = _period(rng), _period(rng, flip=0.3)
    for metric in ("accuracy", "auroc"):
        result = compare(metric, baseline[metric], degraded[metric], max_drop=0.05, alpha=0.01)
        assert result.alert, result
        assert result.difference < -0.05 and result.p_value < 0.01


def test_a_significant_change_below_max_drop_does_not_alert() -> None:
    result = compare("accuracy", Estimate(0.90, 1e-6), Estimate(0.88, 1e-6), max_drop=0.05, alpha=0.01)
    assert result.p_value < 1e-6 and not result.alert


def test_an_improvement_never_alerts_but_a_prevalence_shift_either_way_does() -> None:
    assert not compare("accuracy", Estimate(0.7, 1e-4), Estimate(0.9, 1e-4), max_drop=0.05, alpha=0.01).alert
    assert not compare("ece", Estimate(0.2, 1e-4), Estimate(0.05, 1e-4), max_drop=0.05, alpha=0.01).alert
    assert compare("prevalence", Estimate(0.3, 1e-4), Estimate(0.5, 1e-4), max_drop=0.05, alpha=0.01).alert
    assert compare("prevalence", Estimate(0.5, 1e-4), Estimate(0.3, 1e-4), max_drop=0.05, alpha=0.01).alert


def test_noise_widens_the_standard_error() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(500)
    labels = (rng.random(500) < scores).astype(np.int64)
    stats = compute_statistics(np.column_stack([1 - scores, scores]), labels, None, LAYOUT)
    exact = metric_estimates(stats, calibration_bins=10, noise_variance=None)
    noisy = metric_estimates(stats, calibration_bins=10, noise_variance={k: 25.0 for k in stats.arrays})
    assert noisy["accuracy"].variance > exact["accuracy"].variance > 0
    assert noisy["auroc"].variance > exact["auroc"].variance > 0


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric 'count'"):
        compare("count", Estimate(1, 1), Estimate(1, 1), max_drop=0, alpha=0.01)
