"""Is a monitoring period worse than its baseline? Estimates with variances, and one-sided tests.

Each estimate's variance is the sum of two independent parts: sampling (the period's records are a
sample of the deployed population) and the DP noise the partners added (known: the release's
variance per array). The noise part reuses what the evaluation report already computes
(`dp_release.standard_errors`, a parametric bootstrap of the released noise; `validation.ratio_noise_variance`
for ratios of noisy counts); the sampling part uses the binomial variance of proportions and the
Hanley–McNeil-style variance of the AUROC from the score histograms (`intervals.auroc_variance`). For
a mean of per-record values bounded in [0, B] with mean m the variance m(B − m)/n is an upper bound,
used for the Brier score, log loss and calibration-in-the-large, so those tests are conservative.

A period and its baseline come from different records (a new snapshot, or the same population
sampled later), so their variances add. Re-evaluating the very same records makes the sampling parts
equal and the test conservative. `compare` alerts only when a metric moved the wrong way by more than
the study's `max_drop` AND the move is significant at `alpha` (H0: no degradation), so on stable data
a comparison alerts with probability at most alpha (each comparison; periods, partners and metrics
are not corrected for multiplicity, and the study's `alpha` is per comparison).

Post-processing of released sums only: nothing here costs privacy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from federated.evaluation.dp_release import consistent, noisy_metrics, standard_errors
from federated.evaluation.intervals import auroc_variance
from federated.evaluation.metrics import calibration_sums, compute_metrics
from federated.evaluation.statistics import EvaluationStatistics
from federated.evaluation.validation import ratio_noise_variance

HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "auroc"})
LOWER_IS_BETTER = frozenset({"brier", "ece", "log_loss"})
EITHER_WAY = frozenset({"prevalence", "calibration_in_the_large"})
NOISE_DRAWS = 200


@dataclass(frozen=True)
class Estimate:
    """A metric's value and the variance of its estimate (sampling + DP noise)."""

    value: float
    variance: float

    def as_record(self) -> dict[str, float]:
        return {"value": self.value, "variance": self.variance}


@dataclass(frozen=True)
class Comparison:
    """One metric of one period against its baseline."""

    metric: str
    baseline: float
    value: float
    difference: float  # value − baseline
    standard_error: float  # of the difference
    p_value: float  # H0: no degradation (one-sided; two-sided for metrics that drift either way)
    threshold: float  # the study's max_drop
    alert: bool

    def as_record(self) -> dict[str, float | str | bool]:
        return {"metric": self.metric, "baseline": self.baseline, "value": self.value, "difference": self.difference,
                "standard_error": self.standard_error, "p_value": self.p_value, "threshold": self.threshold,
                "alert": self.alert}


def _seeded(stats: EvaluationStatistics) -> np.random.Generator:
    """The same release always gets the same bootstrap draws."""
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(stats.arrays[k], dtype=np.float64).tobytes()
                                     for k in sorted(stats.arrays))).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _binomial(p: float, n: float) -> float:
    return p * (1 - p) / n if n > 0 and 0 <= p <= 1 else float("nan")


def metric_estimates(
    stats: EvaluationStatistics, *, calibration_bins: int, noise_variance: Mapping[str, float] | None,
) -> dict[str, Estimate]:
    """Every metric of a binary model's (possibly DP-noised) sums, with its variance; plus the prevalence
    of the positive class and calibration-in-the-large (mean predicted minus observed positives)."""
    layout = stats.layout
    if layout.num_classes != 2:
        raise ValueError("drift estimates are defined for binary models (num_classes = 2)")
    noise = dict(noise_variance) if noise_variance is not None else None
    metrics = compute_metrics(stats, calibration_bins) if noise is None else noisy_metrics(stats, calibration_bins, noise)
    released = stats if noise is None else consistent(stats)
    noise_se = (standard_errors(stats, noise, calibration_bins, rng=_seeded(stats), draws=NOISE_DRAWS)
                if noise is not None else {})
    p, q = layout.positive_class, 1 - layout.positive_class
    confusion = np.maximum(stats["confusion"], 0.0) if noise is not None else stats["confusion"]
    tp, fn, fp, tn = (float(confusion[p, p]), float(confusion[p, q]), float(confusion[q, p]), float(confusion[q, q]))
    n = tp + fn + fp + tn
    positives, negatives = tp + fn, fp + tn
    v_cell = (noise or {}).get("confusion", 0.0)
    pos, neg, score_sum = released.histograms(p)
    loss_bound = layout.loss_bound if layout.loss_bound is not None else 30.0
    sampling: dict[str, float] = {
        "accuracy": _binomial(metrics.get("accuracy", float("nan")), n),
        "precision": _binomial(metrics.get("precision", float("nan")), tp + fp),
        "recall": _binomial(metrics.get("recall", float("nan")), positives),
        # F1 lies between precision and recall; the larger of their variances bounds the spread of both.
        "f1": max(_binomial(metrics.get("precision", float("nan")), tp + fp),
                  _binomial(metrics.get("recall", float("nan")), positives)),
        "auroc": auroc_variance(pos, neg) if pos.sum() > 0 and neg.sum() > 0 else float("nan"),
        "brier": _bounded_mean_variance(metrics.get("brier", float("nan")), 1.0, n),
        "log_loss": _bounded_mean_variance(metrics.get("log_loss", float("nan")), loss_bound, n),
        "ece": _ece_sampling_variance(released, calibration_bins, n),
    }
    estimates = {name: Estimate(float(value), sampling.get(name, 0.0) + noise_se.get(name, 0.0) ** 2)
                 for name, value in metrics.items() if name in sampling}
    prevalence = positives / n if n > 0 else float("nan")
    estimates["prevalence"] = Estimate(prevalence, _binomial(prevalence, n) + ratio_noise_variance(
        positives, negatives, 2 * v_cell, 2 * v_cell))
    bins = layout.score_bins
    total_pos, total_score = float(pos.sum()), float(score_sum.sum())
    total = float(pos.sum() + neg.sum())
    citl = (total_score - total_pos) / total if total > 0 else float("nan")
    brier = metrics.get("brier", float("nan"))
    citl_noise = (bins * ((noise or {}).get("score_sum", 0.0) + (noise or {}).get("hist_pos", 0.0)) / total ** 2
                  if total > 0 else float("nan"))
    # Per record (s − y) has second moment equal to its Brier term: var ≤ brier − citl².
    citl_sampling = max(brier - citl ** 2, 0.0) / total if total > 0 and math.isfinite(brier) else float("nan")
    estimates["calibration_in_the_large"] = Estimate(citl, citl_sampling + citl_noise)
    return estimates


def _bounded_mean_variance(mean: float, bound: float, n: float) -> float:
    """Upper bound on the variance of the mean of n values in [0, bound] whose mean is `mean`."""
    if not (n > 0 and math.isfinite(mean)):
        return float("nan")
    clipped = min(max(mean, 0.0), bound)
    return clipped * (bound - clipped) / n


def _ece_sampling_variance(stats: EvaluationStatistics, calibration_bins: int, n: float) -> float:
    """ECE = Σ_b |S_b − P_b| / N: each bin's positives vary binomially around its mean score."""
    if not n > 0:
        return float("nan")
    counts, positives, _ = calibration_sums(stats, stats.layout.positive_class, calibration_bins)
    counts, positives = np.maximum(counts, 0.0), np.clip(positives, 0.0, None)
    rate = np.divide(positives, counts, out=np.zeros_like(positives), where=counts > 0).clip(0.0, 1.0)
    return float((counts * rate * (1 - rate)).sum() / n ** 2)


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def compare(metric: str, baseline: Estimate, current: Estimate, *, max_drop: float, alpha: float) -> Comparison:
    """Test whether `metric` degraded from `baseline` to `current` (see the module docstring)."""
    difference = current.value - baseline.value
    variance = baseline.variance + current.variance
    se = math.sqrt(variance) if math.isfinite(variance) and variance > 0 else float("nan")
    if metric in HIGHER_IS_BETTER:
        degradation = -difference
    elif metric in LOWER_IS_BETTER:
        degradation = difference
    elif metric in EITHER_WAY:
        degradation = abs(difference)
    else:
        raise ValueError(f"unknown metric {metric!r} for a drift test")
    if not (math.isfinite(degradation) and math.isfinite(se)):
        p_value = float("nan")
    elif metric in EITHER_WAY:
        p_value = min(1.0, 2 * _upper_tail(degradation / se))
    else:
        p_value = _upper_tail(degradation / se)
    alert = bool(math.isfinite(p_value) and degradation > max_drop and p_value < alpha)
    return Comparison(metric, baseline.value, current.value, difference, se, p_value, max_drop, alert)
