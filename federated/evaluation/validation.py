"""The metrics validation reports contain (TRIPOD-AI, model-risk validation), from pooled histograms.

Everything here is post-processing of the summed statistics of a binary study's positive-class score
(`hist_pos`, `hist_neg`, `score_sum` per equal-width score bin), so it costs no privacy beyond the
release itself. What is exact and what is binned:

- at the study's own threshold the confusion matrix is exact; at other thresholds the operating point is
  read at the nearest score-bin edge (`threshold_used` says which) — exact for the binned scores;
- sensitivity at a fixed specificity (and the reverse): the best bin edge that meets the target;
- average precision and the PR curve: walking the bin edges from the top (scores tied within a bin),
  equal to scikit-learn's `average_precision_score` on scores rounded to their bin;
- calibration-in-the-large (observed minus mean predicted risk): exact from the score sums;
- calibration slope and intercept (logistic recalibration of the outcome on logit(p)): fitted on the bins'
  mean scores, an approximation whose error shrinks with finer bins (measured in the tests);
- net benefit (decision curve) at listed thresholds: at the nearest bin edge, with "treat all" beside it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from federated.evaluation.dp_release import consistent_confusion_variance, consistent_histogram
from federated.evaluation.intervals import auroc_interval, bounded_mean_interval, wilson
from federated.evaluation.metrics import class_curve
from federated.evaluation.statistics import LOG_LOSS_EPSILON, EvaluationStatistics
from federated.study import ValidationSettings


def _edge(threshold: float, bins: int) -> int:
    return int(min(max(round(threshold * bins), 0), bins))


def _counts_at_edge(pos: np.ndarray, neg: np.ndarray, edge: int) -> tuple[float, float, float, float]:
    """(TP, FP, TN, FN) when every record in bin >= `edge` is called positive."""
    tp, fp = float(pos[edge:].sum()), float(neg[edge:].sum())
    return tp, fp, float(neg.sum()) - fp, float(pos.sum()) - tp


def _ratio(numerator: float, denominator: float) -> float:
    """A rate of counts, kept in [0, 1]: DP-noised counts can push the raw ratio outside it (the
    intervals are computed from the unclipped counts)."""
    return min(max(numerator / denominator, 0.0), 1.0) if denominator > 0 else float("nan")


def ratio_noise_variance(k: float, other: float, var_k: float, var_other: float, *, covariance: float = 0.0) -> float:
    """Variance DP noise adds to k / (k + other), by the delta method, when k and `other` are noised sums with
    variances `var_k` and `var_other` (0 without DP) and `covariance` between their noise (0: independent)."""
    n = k + other
    if not n > 0 or (var_k == 0 and var_other == 0):
        return 0.0
    p = min(max(k / n, 0.0), 1.0)
    return max(var_k * (1 - p) ** 2 + var_other * p**2 - 2 * p * (1 - p) * covariance, 0.0) / n**2


def accuracy_noise_variance(correct: float, n: float, noise_variance: Mapping[str, float], num_classes: int) -> float:
    """Variance DP noise adds to accuracy = trace / n, by the delta method, where n is the sum of the released
    label counts and the confusion rows were made to sum to them (`dp_release.consistent`): the trace has
    variance K·v, v one consistent cell's, and covaries with n by v_L (each diagonal cell carries L_y / K)."""
    if not noise_variance or not n > 0:
        return 0.0
    k, v_label = num_classes, noise_variance["label_counts"]
    v_cell, _ = consistent_confusion_variance(noise_variance, k)
    p = min(max(correct / n, 0.0), 1.0)
    return max(k * v_cell - 2 * p * v_label + p**2 * k * v_label, 0.0) / n**2


def operating_point(tp: float, fp: float, tn: float, fn: float,
                    variances: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0), *,
                    row_covariance: float = 0.0) -> dict[str, object]:
    """Sensitivity, specificity, PPV and NPV with Wilson intervals; `variances`: the DP noise variance of
    (TP, FP, TN, FN), which widens the intervals (zeros without DP); `row_covariance`: the noise covariance of
    two cells of one true class (TP with FN, TN with FP; `dp_release.consistent_confusion_variance`)."""
    v_tp, v_fp, v_tn, v_fn = variances
    rates = {"sensitivity": (tp, fn, v_tp, v_fn, row_covariance), "specificity": (tn, fp, v_tn, v_fp, row_covariance),
             "ppv": (tp, fp, v_tp, v_fp, 0.0), "npv": (tn, fn, v_tn, v_fn, 0.0)}
    point: dict[str, object] = {}
    for name, (k, other, var_k, var_other, covariance) in rates.items():
        point[name] = _ratio(k, k + other)
        noise = ratio_noise_variance(k, other, var_k, var_other, covariance=covariance)
        point[f"{name}_ci"] = wilson(k, k + other, noise_variance=noise).as_record()
    return point


def threshold_metrics(pos: np.ndarray, neg: np.ndarray, thresholds: Sequence[float], *,
                      bin_noise_variance: float = 0.0) -> list[dict[str, object]]:
    """The operating point at each threshold (read at the nearest bin edge); `bin_noise_variance`: the DP
    noise variance of one histogram cell (0 without DP)."""
    bins = pos.size
    rows = []
    for threshold in thresholds:
        edge = _edge(threshold, bins)
        above, below = (bins - edge) * bin_noise_variance, edge * bin_noise_variance
        rows.append({"threshold": threshold, "threshold_used": edge / bins,
                     **operating_point(*_counts_at_edge(pos, neg, edge), (above, above, below, below))})
    return rows


def _counts_at_every_edge(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """(TP, FP, TN, FN) at every bin edge 0..B at once (suffix sums), instead of one sum per edge."""
    tp = np.concatenate([np.cumsum(pos[::-1])[::-1], [0.0]])
    fp = np.concatenate([np.cumsum(neg[::-1])[::-1], [0.0]])
    return tp, fp, float(neg.sum()) - fp, float(pos.sum()) - tp


def sensitivity_at_specificity(pos: np.ndarray, neg: np.ndarray, target: float) -> dict[str, float]:
    """The highest sensitivity among bin edges whose specificity is at least `target`."""
    tp, fp, tn, fn = _counts_at_every_edge(pos, neg)
    for edge in range(pos.size + 1):  # lower edge: more positives called, higher sensitivity
        specificity = _ratio(tn[edge], tn[edge] + fp[edge])
        if specificity >= target:
            return {"target_specificity": target, "sensitivity": _ratio(tp[edge], tp[edge] + fn[edge]),
                    "specificity": specificity, "threshold_used": edge / pos.size}
    return {"target_specificity": target, "sensitivity": float("nan"), "specificity": float("nan"),
            "threshold_used": float("nan")}


def specificity_at_sensitivity(pos: np.ndarray, neg: np.ndarray, target: float) -> dict[str, float]:
    """The highest specificity among bin edges whose sensitivity is at least `target`."""
    tp, fp, tn, fn = _counts_at_every_edge(pos, neg)
    for edge in range(pos.size, -1, -1):  # higher edge: fewer positives called, higher specificity
        sensitivity = _ratio(tp[edge], tp[edge] + fn[edge])
        if sensitivity >= target:
            return {"target_sensitivity": target, "specificity": _ratio(tn[edge], tn[edge] + fp[edge]),
                    "sensitivity": sensitivity, "threshold_used": edge / pos.size}
    return {"target_sensitivity": target, "specificity": float("nan"), "sensitivity": float("nan"),
            "threshold_used": float("nan")}


def precision_recall(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """PR curve (recall, precision at each populated bin edge, from the top) and average precision."""
    pos, neg = np.clip(pos, 0, None), np.clip(neg, 0, None)
    total_pos = pos.sum()
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    called = tp + fp
    populated = (pos[::-1] + neg[::-1]) > 0
    if total_pos <= 0 or not populated.any():
        return np.array([]), np.array([]), float("nan")
    recall = tp[populated] / total_pos
    precision = tp[populated] / called[populated]
    previous = np.concatenate([[0.0], recall[:-1]])
    return recall, precision, float(((recall - previous) * precision).sum())


def calibration_in_the_large(pos: np.ndarray, neg: np.ndarray, score_sum: np.ndarray) -> float:
    """Observed event rate minus mean predicted risk (0 for a model calibrated in the large)."""
    n = float(pos.sum() + neg.sum())
    return (float(pos.sum()) - float(score_sum.sum())) / n if n > 0 else float("nan")


def calibration_slope_intercept(pos: np.ndarray, neg: np.ndarray, score_sum: np.ndarray,
                                *, iterations: int = 50) -> tuple[float, float]:
    """Logistic recalibration logit P(y=1) = a + b·logit(p), fitted by Newton's method on the bins' mean
    scores weighted by their counts (binned approximation). Returns (slope b, intercept a)."""
    counts = pos + neg
    filled = counts > 0
    if pos[filled].sum() <= 0 or neg[filled].sum() <= 0:
        return float("nan"), float("nan")
    mean = np.clip(score_sum[filled] / counts[filled], 1e-12, 1 - 1e-12)
    x = np.log(mean / (1 - mean))
    design = np.column_stack([np.ones_like(x), x])
    y_pos, weight = np.clip(pos[filled], 0, None), np.clip(counts[filled], 0, None)
    beta = np.array([0.0, 1.0])
    for _ in range(iterations):
        p = 0.5 * (1 + np.tanh((design @ beta) / 2))  # 1 / (1 + e^-x) without overflow
        gradient = design.T @ (y_pos - weight * p)
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return float("nan"), float("nan")
        beta = beta + step
        if np.abs(step).max() < 1e-12:
            break
    return float(beta[1]), float(beta[0])


def net_benefit(pos: np.ndarray, neg: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Decision curve: net benefit of the model and of treating everyone, at each threshold probability."""
    n = float(pos.sum() + neg.sum())
    rows = []
    for threshold in thresholds:
        edge = _edge(threshold, pos.size)
        tp, fp, _, _ = _counts_at_edge(pos, neg, edge)
        odds = threshold / (1 - threshold)
        rows.append({"threshold": threshold, "threshold_used": edge / pos.size,
                     "net_benefit": (tp - fp * odds) / n if n > 0 else float("nan"),  # may be negative
                     "treat_all": (float(pos.sum()) - float(neg.sum()) * odds) / n if n > 0 else float("nan")})
    return rows



def validation_summary(stats: EvaluationStatistics, settings: ValidationSettings, *,
                       noise_variance: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Intervals and validation metrics of one model's pooled statistics (JSON-ready).

    `noise_variance`: per statistics array, the variance of one cell's summed DP noise (None without DP);
    it widens every interval, and `stats` are then the `dp_release.consistent` sums (confusion rows summing
    to the label counts). Binary studies get operating points, targets, PR, calibration and net
    benefit; multiclass studies per-class AUROCs with DeLong intervals.
    """
    noise = dict(noise_variance or {})
    layout = stats.layout
    confusion, n = stats["confusion"], stats.records
    v_hist = noise.get("hist_pos", 0.0)
    k = layout.num_classes
    v_cell, row_covariance = consistent_confusion_variance(noise, k) if noise else (0.0, 0.0)
    correct = float(np.trace(confusion))
    accuracy_noise = accuracy_noise_variance(correct, n, noise, k)
    summary: dict[str, Any] = {
        "confidence": settings.confidence,
        "accuracy_ci": wilson(correct, n, confidence=settings.confidence, noise_variance=accuracy_noise).as_record(),
        **loss_intervals(stats, noise, confidence=settings.confidence),
    }
    if k != 2:
        per_class = {}
        for cls in range(k):
            curve = class_curve(stats, cls, layout.score_bins)
            positives, negatives, _ = stats.histograms(cls)
            ci, widened = auroc_interval(curve.auroc, positives, negatives,
                                         binning_bound=curve.auroc_bound, confidence=settings.confidence,
                                         noise_variance=auroc_noise_variance(positives, negatives, v_hist))
            per_class[str(cls)] = {"auroc": curve.auroc, "auroc_ci": ci.as_record(), "auroc_ci_with_binning": widened.as_record()}
        summary["per_class_auroc"] = per_class
        return summary
    p = layout.positive_class
    pos, neg, score_sum = stats.histograms(p)
    curve = class_curve(stats, p, layout.score_bins)
    ci, widened = auroc_interval(curve.auroc, pos, neg, binning_bound=curve.auroc_bound,
                                 confidence=settings.confidence, noise_variance=auroc_noise_variance(pos, neg, v_hist))
    negative = 1 - p
    study_point = operating_point(float(confusion[p, p]), float(confusion[negative, p]), float(confusion[negative, negative]),
                                  float(confusion[p, negative]), (v_cell,) * 4, row_covariance=row_covariance)
    recall, precision, average_precision = precision_recall(pos, neg)
    slope, intercept = calibration_slope_intercept(pos, neg, score_sum)
    summary.update(
        auroc_ci=ci.as_record(),
        auroc_ci_with_binning=widened.as_record(),
        at_study_threshold={"threshold": layout.threshold, **study_point},
        at_thresholds=threshold_metrics(pos, neg, settings.thresholds, bin_noise_variance=v_hist),
        sensitivity_at_specificity=[sensitivity_at_specificity(pos, neg, s) for s in settings.target_specificities],
        specificity_at_sensitivity=[specificity_at_sensitivity(pos, neg, s) for s in settings.target_sensitivities],
        average_precision=average_precision,
        pr_curve={"recall": recall.tolist(), "precision": precision.tolist()},
        calibration_in_the_large=calibration_in_the_large(pos, neg, score_sum),
        calibration_slope=slope,
        calibration_intercept=intercept,
        net_benefit=net_benefit(pos, neg, settings.net_benefit_thresholds),
    )
    return summary


def _auroc_unclamped(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of (possibly noisy, negative) histograms, row by row: the estimator the coordinator reports."""
    neg_below = np.concatenate([np.zeros(neg.shape[:-1] + (1,)), np.cumsum(neg, axis=-1)[..., :-1]], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (neg_below + 0.5 * neg)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))


NOISE_DRAWS = 400


def auroc_noise_variance(positives: np.ndarray, negatives: np.ndarray, v_hist: float) -> float:
    """Variance the histograms' DP noise adds to the AUROC, by parametric bootstrap: noise of the released
    variance (`v_hist` per summed cell) is drawn again around the noisy sums and the reported AUROC (from
    consistent histograms) recomputed. The delta method understates it badly when the noise is large next to the bin counts
    (ε ≤ 1 with few records per bin: coverage 0.62–0.80 measured by benchmarks.coverage), where the
    estimator's ratio is far from linear. Post-processing: no privacy cost. The draws are seeded by the
    sums themselves, so the same release always reports the same interval."""
    if v_hist == 0:
        return 0.0
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    seed = int.from_bytes(hashlib.sha256(pos.tobytes() + neg.tobytes()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    scale = math.sqrt(v_hist)
    # each draw made consistent as the reported estimate is (dp_release.consistent)
    draws = _auroc_unclamped(
        np.apply_along_axis(consistent_histogram, -1, pos + rng.normal(0, scale, (NOISE_DRAWS, pos.size))),
        np.apply_along_axis(consistent_histogram, -1, neg + rng.normal(0, scale, (NOISE_DRAWS, neg.size))))
    finite = draws[np.isfinite(draws)]
    return float(np.var(finite)) if finite.size > 1 else float("inf")


def loss_intervals(stats: EvaluationStatistics, noise_variance: Mapping[str, float], *, confidence: float = 0.95) -> dict[str, Any]:
    """`brier_ci` and `log_loss_ci`: normal intervals for the mean per-record Brier score and log loss from
    their sums and sums of squares (`intervals.bounded_mean_interval`), widened by the DP noise of the
    released sums when `noise_variance` is not empty. Per-record values lie in [0, 1] (binary Brier),
    [0, 2] (multiclass Brier) and [0, loss bound] (log loss: the DP clip, else -log of float64's epsilon)."""
    layout, n = stats.layout, stats.records
    label_noise = noise_variance.get("label_counts", 0.0) * layout.num_classes  # n is the K label counts' sum
    loss_upper = layout.loss_bound if layout.loss_bound is not None else -math.log(LOG_LOSS_EPSILON)
    bounds = {"brier": 1.0 if layout.num_classes == 2 else 2.0, "log_loss": loss_upper}
    return {
        f"{name}_ci": bounded_mean_interval(
            float(stats[f"{name}_sum"][0]), float(stats[f"{name}_sq_sum"][0]), n, upper=upper, confidence=confidence,
            total_noise=noise_variance.get(f"{name}_sum", 0.0), squares_noise=noise_variance.get(f"{name}_sq_sum", 0.0),
            count_noise=label_noise).as_record()
        for name, upper in bounds.items()
    }
