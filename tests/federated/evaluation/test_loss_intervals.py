"""Brier score and log loss intervals from the partners' sums and sums of squares: equal to the normal
interval on the concatenated records, and covering the population value at the nominal rate (seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.weightstats import zconfint

from federated.evaluation.dp_release import array_scales, consistent, privatize
from federated.evaluation.intervals import bounded_mean_interval
from federated.evaluation.statistics import (
    LOG_LOSS_EPSILON,
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)
from federated.evaluation.validation import loss_intervals, validation_summary
from federated.study import EvaluationPrivacy, ValidationSettings

BINARY = StatisticsLayout(num_classes=2, score_bins=20, subgroup_levels=())


def _binary_site(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Risks p ~ Beta(2, 5), outcomes ~ Bernoulli(p), the model reports p (calibrated)."""
    p = rng.beta(2, 5, n)
    return np.column_stack([1 - p, p]), (rng.random(n) < p).astype(np.int64)


def _per_record(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.clip(probabilities[np.arange(labels.size), labels], LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    brier = ((probabilities - np.eye(probabilities.shape[1])[labels]) ** 2).sum(axis=1)
    if probabilities.shape[1] == 2:
        brier = (probabilities[:, 1] - labels) ** 2
    return brier, -np.log(true)


def test_sums_of_squares_add_up_over_partners_to_those_of_the_concatenated_records() -> None:
    rng = np.random.default_rng(3)
    sites = [_binary_site(rng, n) for n in (150, 90, 260)]
    pooled = EvaluationStatistics.total([compute_statistics(p, y, None, BINARY) for p, y in sites])
    brier, loss = _per_record(np.vstack([p for p, _ in sites]), np.concatenate([y for _, y in sites]))
    assert pooled["brier_sq_sum"][0] == pytest.approx((brier**2).sum(), rel=1e-12)
    assert pooled["log_loss_sq_sum"][0] == pytest.approx((loss**2).sum(), rel=1e-12)


@pytest.mark.parametrize("classes", [2, 4])
def test_intervals_equal_statsmodels_normal_interval_on_the_concatenated_records(classes: int) -> None:
    rng = np.random.default_rng(classes)
    layout = StatisticsLayout(num_classes=classes, score_bins=20, subgroup_levels=())
    parts, records = [], []
    for n in (120, 300, 45):
        logits = rng.normal(size=(n, classes))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.array([rng.choice(classes, p=row) for row in probabilities])
        parts.append(compute_statistics(probabilities, labels, None, layout))
        records.append(_per_record(probabilities, labels))
    pooled = EvaluationStatistics.total(parts)
    summary = validation_summary(pooled, ValidationSettings())
    for name, values in (("brier", np.concatenate([r[0] for r in records])), ("log_loss", np.concatenate([r[1] for r in records]))):
        low, high = zconfint(values, alpha=0.05, ddof=1.0)
        textbook = values.mean() - 1.959964 * values.std(ddof=1) / math.sqrt(values.size)
        assert summary[f"{name}_ci"]["low"] == pytest.approx(low, rel=1e-9)
        assert summary[f"{name}_ci"]["high"] == pytest.approx(high, rel=1e-9)
        assert summary[f"{name}_ci"]["low"] == pytest.approx(textbook, rel=1e-6)
        assert summary[f"{name}_ci"]["method"] == "normal"


def test_the_interval_stays_inside_the_range_a_per_record_value_can_take() -> None:
    assert bounded_mean_interval(0.0, 0.0, 50, upper=1.0).low == 0.0  # all records perfect: [0, 0]
    perfect = bounded_mean_interval(0.0, 0.0, 50, upper=1.0)
    assert perfect.high == 0.0
    one_miss = bounded_mean_interval(1.0, 1.0, 10, upper=1.0)
    assert one_miss.low == 0.0 and one_miss.high < 1.0
    noisy = bounded_mean_interval(30.0, 1e5, 100, upper=10.0, total_noise=100.0, squares_noise=1e6, count_noise=4.0)
    assert 0.0 <= noisy.low < 0.3 < noisy.high <= 10.0 and noisy.method == "normal+dp"
    # the variance from a noisy sum of squares is capped by Bhatia–Davis: m·(upper − m)
    capped = bounded_mean_interval(30.0, 1e9, 100, upper=10.0)
    assert capped.high - 0.3 == pytest.approx(1.959964 * math.sqrt(0.3 * 9.7 / 100), rel=1e-5)


def _coverage(*, epsilon: float | None, partners: int, repeats: int, seed: int) -> dict[str, float]:
    """Share of seeded federations whose Brier and log-loss intervals cover the population values."""
    rng = np.random.default_rng(seed)
    # population values of the calibrated Beta(2, 5) model: E[p(1 − p)] and E[binary entropy of p]
    big = rng.beta(2, 5, 2_000_000)
    truth = {"brier": 2 / 7 - (10 / (49 * 8) + 4 / 49),
             "log_loss": float(np.mean(-big * np.log(big) - (1 - big) * np.log1p(-big)))}
    assert truth["brier"] == pytest.approx(float(np.mean(big * (1 - big))), abs=1e-3)
    layout = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), loss_bound=10.0 if epsilon else None)
    settings = EvaluationPrivacy(enabled=True, epsilon=epsilon, delta=1e-6, loss_bound=10.0) if epsilon else None
    covered = {name: 0 for name in truth}
    for _ in range(repeats):
        parts, sigmas = [], []
        for n in rng.integers(150, 400, partners):
            stats = compute_statistics(*_binary_site(rng, int(n)), None, layout)
            if settings is not None:
                noisy, release = privatize({"m": stats}, settings, rng=rng)
                stats, sigmas = noisy["m"], [*sigmas, release.sigma]
            parts.append(stats)
        pooled = EvaluationStatistics.total(parts)
        noise = {name: sum((s * scale) ** 2 for s in sigmas) for name, scale in array_scales(layout).items()} if sigmas else {}
        intervals = loss_intervals(consistent(pooled) if noise else pooled, noise)
        for name, value in truth.items():
            covered[name] += intervals[f"{name}_ci"]["low"] <= value <= intervals[f"{name}_ci"]["high"]
    return {name: count / repeats for name, count in covered.items()}


@pytest.mark.parametrize("partners", [3, 10])
def test_coverage_without_dp_is_near_nominal(partners: int) -> None:
    coverage = _coverage(epsilon=None, partners=partners, repeats=400, seed=partners)
    for name, value in coverage.items():
        assert 0.92 <= value <= 0.975, (name, value)


@pytest.mark.parametrize("epsilon", [1.0, 10.0])
def test_coverage_with_dp_is_at_least_nominal(epsilon: float) -> None:
    coverage = _coverage(epsilon=epsilon, partners=3, repeats=300, seed=int(epsilon))
    for name, value in coverage.items():
        assert value >= 0.93, (name, value)
