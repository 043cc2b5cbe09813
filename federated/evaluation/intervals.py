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
    if confidence == 0.95:
        return Z_95
    # Imported when needed: scipy.stats costs a partner's ClientApp process ~1 s per message.
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2))


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
    from scipy import stats  # when needed, as in `z_quantile`

    k, alpha = round(successes), 1 - confidence
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
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


def bounded_mean_interval(
    total: float, sum_of_squares: float, n: float, *, upper: float, confidence: float = 0.95,
    total_noise: float = 0.0, squares_noise: float = 0.0, count_noise: float = 0.0,
) -> Interval:
    """Normal (CLT) interval for the mean of per-record values in [0, `upper`] (Brier score, clipped log loss)
    from their sum, sum of squares and count: mean ± z·√(s²/n + noise), s² the sample variance (n − 1).

    With DP, `total_noise`, `squares_noise` and `count_noise` are the noise variances of the three released
    sums (0 without DP). The mean's noise variance is (v_S + m²·v_N)/n² by the delta method. The variance
    estimate from a noisy sum of squares is unreliable when its noise is large (a log loss clipped at 10
    carries noise of scale 100 per record), so it is taken at its upper z-quantile, (Q + z√v_Q)/n − m²,
    and capped by the Bhatia–Davis bound m·(upper − m), which no distribution on [0, upper] exceeds: the
    interval stays valid, and wide when the release says little. The interval is clipped to [0, upper].
    """
    noisy = total_noise > 0 or squares_noise > 0 or count_noise > 0
    method = "normal+dp" if noisy else "normal"
    if not n > 1 or not math.isfinite(total) or not math.isfinite(sum_of_squares):
        return _nan_interval(method, confidence)
    z = z_quantile(confidence)
    mean = total / n
    centre = min(max(mean, 0.0), upper)
    squares = sum_of_squares + (z * math.sqrt(squares_noise) if squares_noise > 0 else 0.0)
    variance = max(squares / n - mean * mean, 0.0) * n / (n - 1)
    variance = min(variance, centre * (upper - centre)) if math.isfinite(upper) else variance
    noise = (total_noise + mean * mean * count_noise) / (n * n)
    half = z * math.sqrt(variance / n + noise)
    return Interval(max(mean - half, 0.0), min(mean + half, upper), method, confidence)
