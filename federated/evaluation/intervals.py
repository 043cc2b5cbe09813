"""Confidence intervals for pooled metrics, computed from the summed statistics alone.

The pooled data are a sample, so every estimate carries sampling uncertainty; when the partners add DP
noise, the noise's own variance is added to the sampling variance (the two are independent). Methods:

- proportions (accuracy, sensitivity, specificity, PPV, NPV, subgroup rates): Wilson score interval,
  which stays inside [0, 1] and keeps its coverage near 0 and 1 where the Wald interval collapses;
  Clopper–Pearson (exact, conservative) is available for reports that require it. With DP noise the
  Wilson interval's half-width is widened by the noise: the interval is centred as Wilson's and its
  variance is the Wilson variance plus the noise variance (clipped to [0, 1]).
- AUROC: DeLong's variance can be computed exactly for the binned scores from the partners'
  histograms (`auroc_variance`; a positive and a negative in one bin count as a tie, as in the point
  estimate), but its plug-in interval collapses at an AUROC of 1; the reported interval is Wilson's on
  DeLong's effective number of pairs (`auroc_interval`), which keeps its coverage there. The exact AUROC may differ from
  the binned one by up to `auroc_bound`; a second interval is widened by that bound.
- means (Brier, log loss, regression errors): normal interval from the sum and the sum of squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

Z_95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval at `confidence`, and the method that made it."""

    low: float
    high: float
    method: str
    confidence: float = 0.95

    def as_record(self) -> dict[str, float | str]:
        return {"low": self.low, "high": self.high, "method": self.method, "confidence": self.confidence}

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def z_quantile(confidence: float) -> float:
    return Z_95 if confidence == 0.95 else float(_stats.norm.ppf(0.5 + confidence / 2))


def _nan_interval(method: str, confidence: float) -> Interval:
    return Interval(float("nan"), float("nan"), method, confidence)


def wilson(successes: float, n: float, *, confidence: float = 0.95, noise_variance: float = 0.0) -> Interval:
    """Wilson score interval for a proportion `successes / n`; `noise_variance`: the variance the DP
    noise adds to the proportion (0 without DP), added to Wilson's own variance."""
    if not n > 0:
        return _nan_interval("wilson", confidence)
    z = z_quantile(confidence)
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    if noise_variance > 0:
        half = math.sqrt(half * half + z * z * noise_variance)
    method = "wilson" if noise_variance == 0 else "wilson+dp"
    return Interval(max(0.0, centre - half), min(1.0, centre + half), method, confidence)


def clopper_pearson(successes: float, n: float, *, confidence: float = 0.95) -> Interval:
    """The exact (conservative) binomial interval; counts must be whole numbers (no DP noise)."""
    if not n > 0:
        return _nan_interval("clopper-pearson", confidence)
    k, alpha = round(successes), 1 - confidence
    low = 0.0 if k == 0 else float(_stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(_stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(low, high, "clopper-pearson", confidence)


def auroc_variance(positives: np.ndarray, negatives: np.ndarray) -> float:
    """DeLong's variance of the AUROC of binned scores: `positives[b]`, `negatives[b]` records per score
    bin (ascending scores). Ties within a bin count one half, as in the point estimate."""
    pos, neg = np.clip(np.asarray(positives, float), 0, None), np.clip(np.asarray(negatives, float), 0, None)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos < 2 or total_neg < 2:
        return float("nan")
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    pos_above = total_pos - np.cumsum(pos)
    v10 = (neg_below + 0.5 * neg) / total_neg  # each positive's placement among the negatives
    v01 = (pos_above + 0.5 * pos) / total_pos  # each negative's placement among the positives
    auroc = float((pos * v10).sum() / total_pos)
    s10 = float((pos * (v10 - auroc) ** 2).sum() / (total_pos - 1))
    s01 = float((neg * (v01 - auroc) ** 2).sum() / (total_neg - 1))
    return s10 / total_pos + s01 / total_neg


def auroc_interval(
    auroc: float, positives: np.ndarray, negatives: np.ndarray, *, binning_bound: float = 0.0,
    confidence: float = 0.95, noise_variance: float = 0.0,
) -> tuple[Interval, Interval]:
    """Interval for the binned AUROC, and the same widened by the binning bound (it then covers the exact
    AUROC whenever the first covers the binned one).

    DeLong's variance V of the binned AUROC A is turned into an effective number of pairs n = A(1 − A)/V
    and the interval is Wilson's for A out of n ("wilson-delong"): inside (0, 1) it behaves like DeLong's,
    and near the edges it keeps its coverage where DeLong's plug-in interval collapses (an observed AUROC of
    1 has V = 0). n is capped by the limit of the Hanley–McNeil variance as the AUROC tends to 1,
    4PN/(P + N + 2), which is also used when V = 0. With DP noise, `auroc` is the estimate from the
    unclamped noisy sums and `noise_variance` (the noise's own variance of the AUROC) widens the interval.
    """
    method = "wilson-delong" if noise_variance == 0 else "wilson-delong+dp"
    total_pos, total_neg = float(np.clip(positives, 0, None).sum()), float(np.clip(negatives, 0, None).sum())
    if total_pos < 1 or total_neg < 1 or not math.isfinite(auroc) or not math.isfinite(noise_variance):
        return _nan_interval(method, confidence), _nan_interval(method + "+binning", confidence)
    cap = 4 * total_pos * total_neg / (total_pos + total_neg + 2)
    centre = min(max(auroc, 0.0), 1.0)
    variance = auroc_variance(positives, negatives)
    pairs = cap
    if 0 < centre < 1 and math.isfinite(variance) and variance > 0:
        pairs = min(centre * (1 - centre) / variance, cap)
    interval = wilson(centre * pairs, pairs, confidence=confidence, noise_variance=noise_variance)
    binned = Interval(interval.low, interval.high, method, confidence)
    widened = Interval(max(0.0, interval.low - binning_bound), min(1.0, interval.high + binning_bound),
                       method + "+binning", confidence)
    return binned, widened


def mean_interval(total: float, sum_of_squares: float, n: float, *, confidence: float = 0.95,
                  noise_variance: float = 0.0) -> Interval:
    """Normal interval for a mean from its sum and sum of squares (Brier, log loss, errors)."""
    if not n > 1:
        return _nan_interval("normal", confidence)
    mean = total / n
    variance = max(sum_of_squares / n - mean * mean, 0.0) * n / (n - 1)
    half = z_quantile(confidence) * math.sqrt(variance / n + noise_variance)
    return Interval(mean - half, mean + half, "normal" if noise_variance == 0 else "normal+dp", confidence)
