"""Metrics derived from summed sufficient statistics, with the error bound binning causes.

Count-based metrics (accuracy, precision, recall, F1, subgroup rates) and the loss sums
(log loss, Brier) are exact. AUROC from score histograms treats pairs whose scores share a
bin as ties; the true AUROC lies within `auroc_bound` of the reported value, where

    auroc_bound = 0.5 * sum_b pos_b * neg_b / (P * N)

(only same-bin positive/negative pairs can be ordered differently, each moves AUROC by
at most 1 / (P * N), and they are counted as half). ECE uses equal-width calibration bins
made by merging score bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from federated.evaluation.statistics import EvaluationStatistics


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


@dataclass(frozen=True)
class ClassCurve:
    """ROC points and reliability bins for one class, from its histograms."""

    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    auroc: float
    auroc_bound: float
    mean_predicted: np.ndarray
    observed_fraction: np.ndarray
    bin_counts: np.ndarray
    ece: float


def calibration_sums(stats: EvaluationStatistics, cls: int, calibration_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per calibration bin for class `cls`: records, positives and the sum of scores (score bins merged)."""
    pos, neg, score = stats.histograms(cls)
    merge = pos.size // calibration_bins
    return tuple(array.reshape(calibration_bins, merge).sum(axis=1) for array in (pos + neg, pos, score))


def class_curve(stats: EvaluationStatistics, cls: int, calibration_bins: int) -> ClassCurve:
    """ROC curve, AUROC (with its binning bound) and reliability for class `cls` vs the rest."""
    pos, neg, _ = stats.histograms(cls)
    total_pos, total_neg = pos.sum(), neg.sum()
    # Walk thresholds from the highest bin down: each bin adds its positives and negatives.
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1])]) / total_pos if total_pos else np.full(pos.size + 1, np.nan)
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1])]) / total_neg if total_neg else np.full(neg.size + 1, np.nan)
    if total_pos and total_neg:
        neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
        auroc = float((pos * (neg_below + 0.5 * neg)).sum() / (total_pos * total_neg))
        bound = float(0.5 * (pos * neg).sum() / (total_pos * total_neg))
    else:
        auroc = bound = float("nan")
    counts, positives, scores = calibration_sums(stats, cls, calibration_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(counts > 0, scores / counts, np.nan)
        observed = np.where(counts > 0, positives / counts, np.nan)
    filled = counts > 0
    ece = _ratio((counts[filled] * np.abs(mean_predicted[filled] - observed[filled])).sum(), counts.sum())
    return ClassCurve(fpr, tpr, auroc, bound, mean_predicted, observed, counts, ece)


def _per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true_pos = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_pos / predicted, 0.0)
        recall = np.where(actual > 0, true_pos / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def subgroup_metrics(stats: EvaluationStatistics) -> dict[str, dict[str, float]]:
    """Per subgroup level: size, accuracy, true/false positive rate and selection rate."""
    layout = stats.layout
    result = {}
    for level, confusion in zip(layout.subgroup_levels, stats["subgroup_confusion"]):
        n = confusion.sum()
        entry = {"count": float(n), "accuracy": _ratio(np.trace(confusion), n)}
        if layout.num_classes == 2:
            p = layout.positive_class
            negative = 1 - p
            entry["true_positive_rate"] = _ratio(confusion[p, p], confusion[p].sum())
            entry["false_positive_rate"] = _ratio(confusion[negative, p], confusion[negative].sum())
            entry["selection_rate"] = _ratio(confusion[:, p].sum(), n)
        result[level] = entry
    return result


def subgroup_gaps(groups: dict[str, dict[str, float]]) -> dict[str, float]:
    """Largest difference between subgroups for each rate (NaN-free levels only)."""
    gaps: dict[str, float] = {}
    names = {name for entry in groups.values() for name in entry} - {"count"}
    for name in sorted(names):
        values = [entry[name] for entry in groups.values() if not np.isnan(entry.get(name, np.nan))]
        if len(values) >= 2:
            gaps[f"{name}_gap"] = float(max(values) - min(values))
    return gaps


def compute_metrics(stats: EvaluationStatistics, calibration_bins: int) -> dict[str, float]:
    """Pooled metrics from (summed) statistics. Binary: positive-class scores; else macro."""
    layout = stats.layout
    n = stats.records
    confusion = stats["confusion"]
    precision, recall, f1 = _per_class_scores(confusion)
    metrics = {
        "count": float(n),
        "accuracy": _ratio(np.trace(confusion), n),
        "log_loss": _ratio(stats["log_loss_sum"][0], n),
        "brier": _ratio(stats["brier_sum"][0], n),
    }
    if layout.num_classes == 2:
        p = layout.positive_class
        metrics.update(precision=float(precision[p]), recall=float(recall[p]), f1=float(f1[p]))
        curve = class_curve(stats, p, calibration_bins)
        metrics.update(auroc=curve.auroc, auroc_bound=curve.auroc_bound, ece=curve.ece)
    else:
        curves = [class_curve(stats, c, calibration_bins) for c in range(layout.num_classes)]
        metrics.update(
            precision=float(precision.mean()),
            recall=float(recall.mean()),
            f1=float(f1.mean()),
            auroc=float(np.nanmean([c.auroc for c in curves])),
            auroc_bound=float(np.nanmean([c.auroc_bound for c in curves])),
            ece=float(np.mean([c.ece for c in curves])),
        )
    return metrics
