"""Heterogeneity across partners: a random-effects meta-analysis of per-partner estimates.

Where contracts allow per-partner release, each partner's estimate and its sampling variance are known;
the DerSimonian–Laird estimator gives the between-partner variance τ², the share of variation that is
heterogeneity rather than sampling error (I²), the random-effects pooled estimate, and a prediction
interval for the value at a new site (Higgins, Thompson & Spiegelhalter 2009: t with k − 2 degrees of
freedom). Proportions and AUROCs are analysed on the logit scale and reported back on [0, 1].
Where partners withhold their cells, nothing per partner can be said: the pooled estimate's interval is
all there is, and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _stats

from federated.evaluation.dp_release import consistent
from federated.evaluation.intervals import Z_95, auroc_interval, auroc_variance, wilson
from federated.evaluation.metrics import class_curve
from federated.evaluation.statistics import EvaluationStatistics
from federated.evaluation.validation import accuracy_noise_variance, auroc_noise_variance


@dataclass(frozen=True)
class RandomEffects:
    estimate: float
    standard_error: float
    ci_low: float
    ci_high: float
    tau2: float
    i2: float
    q: float
    partners: int
    prediction_low: float
    prediction_high: float

    def as_record(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def dersimonian_laird(estimates: Sequence[float], variances: Sequence[float]) -> RandomEffects:
    """Random-effects pooling of `estimates` with within-partner `variances` (all > 0, at least 2)."""
    y, v = np.asarray(estimates, float), np.asarray(variances, float)
    if y.size < 2 or np.any(~np.isfinite(v)) or np.any(v <= 0) or np.any(~np.isfinite(y)):
        raise ValueError("a random-effects analysis needs at least 2 partners with finite estimates and positive variances")
    w = 1 / v
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    k = y.size
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    w_star = 1 / (v + tau2)
    estimate = float((w_star * y).sum() / w_star.sum())
    se = math.sqrt(1 / w_star.sum())
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    if k >= 3:
        t = float(_stats.t.ppf(0.975, k - 2))
        half = t * math.sqrt(tau2 + se * se)
        low, high = estimate - half, estimate + half
    else:  # a prediction interval needs at least 3 sites
        low = high = float("nan")
    return RandomEffects(estimate, se, estimate - Z_95 * se, estimate + Z_95 * se, tau2, i2, q, k, low, high)


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def expit(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if math.isfinite(x) else x


def pooled_proportions(estimates: Sequence[float], variances: Sequence[float]) -> dict[str, float | int]:
    """DerSimonian–Laird on the logit scale for proportions or AUROCs (variances on the natural scale),
    reported on [0, 1]; τ² stays on the logit scale."""
    logits = [logit(p) for p in estimates]
    logit_variances = [v / (min(max(p, 1e-9), 1 - 1e-9) * (1 - min(max(p, 1e-9), 1 - 1e-9))) ** 2
                       for p, v in zip(estimates, variances)]
    result = dersimonian_laird(logits, logit_variances)
    return {"estimate": expit(result.estimate), "ci_low": expit(result.ci_low), "ci_high": expit(result.ci_high),
            "prediction_low": expit(result.prediction_low), "prediction_high": expit(result.prediction_high),
            "tau2_logit": result.tau2, "i2": result.i2, "q": result.q, "partners": result.partners}


def heterogeneity(per_partner: Mapping[str, tuple[EvaluationStatistics, Mapping[str, float] | None]]) -> dict[str, Any]:
    """Per-partner accuracy and AUROC with intervals, and their random-effects pooling (forest-plot data).

    `per_partner`: partner -> (its own statistics, its noise variance per array or None). Only partners
    whose contracts allow per-partner release may appear here.
    """
    rows: dict[str, dict[str, Any]] = {}
    for partner, (stats, noise) in sorted(per_partner.items()):
        cls = stats.layout.positive_class if stats.layout.num_classes == 2 else None
        if noise:  # the partner's own noisy sums made consistent with its label counts, as the pooled ones are
            stats = consistent(stats)
        n, correct = stats.records, float(np.trace(stats["confusion"]))
        accuracy_noise = accuracy_noise_variance(correct, n, noise or {}, stats.layout.num_classes)
        accuracy = min(max(correct / n, 0.0), 1.0) if n > 0 else float("nan")  # noisy counts may leave [0, 1]
        row: dict[str, Any] = {"count": n, "accuracy": accuracy,
                               "accuracy_ci": wilson(correct, n, noise_variance=accuracy_noise).as_record(),
                               "accuracy_variance": accuracy * (1 - accuracy) / n + accuracy_noise if n > 0 else float("nan")}
        if cls is not None:
            pos, neg, _ = stats.histograms(cls)
            noise_auroc = auroc_noise_variance(pos, neg, (noise or {}).get("hist_pos", 0.0))
            auroc = class_curve(stats, cls, stats.layout.score_bins).auroc
            interval, _ = auroc_interval(auroc, pos, neg, noise_variance=noise_auroc)
            auroc = min(max(auroc, 0.0), 1.0) if math.isfinite(auroc) else auroc
            row.update(auroc=auroc, auroc_ci=interval.as_record(), auroc_variance=auroc_variance(pos, neg) + noise_auroc)
        rows[partner] = row
    summary: dict[str, Any] = {"partners": rows, "random_effects": {}}
    for metric in ("accuracy", "auroc"):
        usable = [(r[metric], r[f"{metric}_variance"]) for r in rows.values()
                  if metric in r and math.isfinite(r[metric]) and math.isfinite(r[f"{metric}_variance"])
                  and r[f"{metric}_variance"] > 0 and 0 < r[metric] < 1]
        if len(usable) >= 2:
            estimates, variances = zip(*usable)
            summary["random_effects"][metric] = pooled_proportions(estimates, variances)
    return summary
