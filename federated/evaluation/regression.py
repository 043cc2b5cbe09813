"""Sufficient statistics and metrics for models that predict a number (risk score, length of stay, cost).

Like classification, everything is a sum over records, so partners send sums and the coordinator adds
them: count, Σy, Σy², Σŷ, Σŷ², Σyŷ, Σ|e|, Σe², Σe⁴, Σe, Σy³, Σy⁴, Σe²y, Σe²y² (e = ŷ − y), a residual histogram on edges the
study fixes, and per subgroup level (count, Σe, Σ|e|, Σe²). From the sums, exactly (equal to scikit-learn
on the concatenated data): MAE, RMSE, R², mean error, and the calibration line (OLS of outcome on
prediction: slope and intercept). Intervals: MAE and mean error by the normal interval from the sum and
the sum of squares; RMSE by the delta method on the MSE (uses Σe⁴); R² by the delta method on the ratio
of the mean squared error to the outcome's variance (uses Σy³, Σy⁴, Σe²y, Σe²y²); calibration slope and
intercept by the OLS standard errors, exact from the sums.

When the study declares `value_range` [lo, hi], outcomes and predictions are clipped to it, and the sums
are taken in the range's own units: u = (y − c)/h, q = (ŷ − c)/h with c its centre and h its half-width,
so |u|, |q| ≤ 1 and |q − u| ≤ 2. One record then moves each sum by a bounded amount (`record_scales`):
the sensitivity DP noise is calibrated to (`privatize_regression`) and the bound encrypted aggregation
lays its slots out for. Metrics are converted back to the outcome's units.

This module never sees which partner a record came from and never keeps predictions or outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from federated.errors import MessageError
from federated.evaluation.intervals import Interval, mean_interval, z_quantile
from privacy.release import GaussianRelease, add_gaussian_noise, calibrate_release

SUMS = ("count", "y", "y2", "p", "p2", "yp", "abs_e", "e2", "e4", "e", "y3", "y4", "e2y", "e2y2")
# How far one record moves each sum, in the range's units (|u|, |q| <= 1, |e| <= 2).
_SUM_SCALES = {"count": 1.0, "y": 1.0, "y2": 1.0, "p": 1.0, "p2": 1.0, "yp": 1.0, "abs_e": 2.0, "e2": 4.0,
               "e4": 16.0, "e": 2.0, "y3": 1.0, "y4": 1.0, "e2y": 4.0, "e2y2": 4.0}
_SUBGROUP_SCALES = (1.0, 2.0, 2.0, 4.0)  # count, Σe, Σ|e|, Σe²
BOOTSTRAP_DRAWS = 200


@dataclass(frozen=True)
class RegressionLayout:
    """Shapes fixed by the study for a regression model's statistics."""

    residual_edges: tuple[float, ...]  # ascending; residuals outside fall in the first/last bin
    subgroup_levels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None  # outcomes and predictions clipped to it; sums in its units

    def __post_init__(self) -> None:
        edges = np.asarray(self.residual_edges, dtype=np.float64)
        if edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
            raise MessageError("residual_edges must be at least 2 finite, strictly ascending values")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise MessageError(f"value_range {list(self.value_range)} must be [low, high] with low < high")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"sums": (len(SUMS),), "residual_hist": (len(self.residual_edges) - 1,),
                "subgroup_sums": (len(self.subgroup_levels), 4)}

    @property
    def centre(self) -> float:
        return 0.0 if self.value_range is None else (self.value_range[0] + self.value_range[1]) / 2

    @property
    def half_width(self) -> float:
        return 1.0 if self.value_range is None else (self.value_range[1] - self.value_range[0]) / 2

    def record_scales(self) -> dict[str, np.ndarray]:
        """Per coordinate, how far one record moves it (needs `value_range`: without it sums are unbounded)."""
        if self.value_range is None:
            raise MessageError("a regression study needs evaluation.regression.value_range to bound what one record adds")
        return {"sums": np.array([_SUM_SCALES[name] for name in SUMS]),
                "residual_hist": np.ones(len(self.residual_edges) - 1),
                "subgroup_sums": np.tile(np.array(_SUBGROUP_SCALES), (len(self.subgroup_levels), 1))}

    def coordinates_per_record(self) -> int:
        """Coordinates one record touches in one model's statistics: every sum, one bin, one subgroup row."""
        return len(SUMS) + 1 + (4 if self.subgroup_levels else 0)


@dataclass(frozen=True)
class RegressionStatistics:
    """Named arrays following a `RegressionLayout`; adding two gives the pooled statistics."""

    layout: RegressionLayout
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        expected = self.layout.shapes()
        if set(self.arrays) != set(expected):
            raise MessageError(f"regression arrays {sorted(self.arrays)} do not match the layout {sorted(expected)}")
        for name, shape in expected.items():
            if self.arrays[name].shape != shape:
                raise MessageError(f"regression array {name!r} has shape {self.arrays[name].shape}, expected {shape}")
            if not np.all(np.isfinite(self.arrays[name])):
                raise MessageError(f"regression array {name!r} holds NaN or infinite values")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def count(self) -> int:
        return round(float(self.arrays["sums"][0]))

    def __add__(self, other: RegressionStatistics) -> RegressionStatistics:
        if other.layout != self.layout:
            raise MessageError("cannot add regression statistics with different layouts")
        return RegressionStatistics(self.layout, {k: self.arrays[k] + other.arrays[k] for k in self.arrays})

    @classmethod
    def total(cls, parts: list[RegressionStatistics]) -> RegressionStatistics:
        if not parts:
            raise MessageError("no statistics to add")
        result = parts[0]
        for part in parts[1:]:
            result = result + part
        return result


def compute_regression_statistics(predictions: np.ndarray, outcomes: np.ndarray, subgroups: np.ndarray | None,
                                  layout: RegressionLayout) -> RegressionStatistics:
    """The sums of one partner's records (predictions and outcomes of equal length)."""
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    if p.size != y.size:
        raise MessageError(f"the model gave {p.size} predictions for {y.size} records")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))):
        raise MessageError("predictions or outcomes hold NaN or infinite values")
    if layout.value_range is not None:
        low, high = layout.value_range
        p, y = np.clip(p, low, high), np.clip(y, low, high)
    raw_error = p - y
    c, h = layout.centre, layout.half_width
    u, q = (y - c) / h, (p - c) / h
    e = q - u
    u2, e2 = u * u, e * e
    sums = np.array([p.size, u.sum(), u2.sum(), q.sum(), (q * q).sum(), (u * q).sum(), np.abs(e).sum(),
                     e2.sum(), (e2 * e2).sum(), e.sum(), (u2 * u).sum(), (u2 * u2).sum(), (e2 * u).sum(),
                     (e2 * u2).sum()], dtype=np.float64)
    edges = np.asarray(layout.residual_edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, raw_error, side="right") - 1, 0, edges.size - 2)
    histogram = np.bincount(index, minlength=edges.size - 1).astype(np.float64)
    levels = layout.subgroup_levels
    subgroup_sums = np.zeros((len(levels), 4))
    if levels:
        if subgroups is None:
            raise MessageError(f"the study asks for subgroups {list(levels)}, the data has no subgroup column")
        position = {level: i for i, level in enumerate(levels)}
        values, inverse = np.unique(np.asarray(subgroups, dtype=object).astype(str), return_inverse=True)
        unknown = sorted(set(values.tolist()) - set(position))
        if unknown:
            raise MessageError(f"subgroup values {unknown} are not among the study's levels {list(levels)}")
        group = np.asarray([position[value] for value in values.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        for column, weights in enumerate((np.ones_like(e), e, np.abs(e), e * e)):
            subgroup_sums[:, column] = np.bincount(group, weights=weights, minlength=len(levels))
    return RegressionStatistics(layout, {"sums": sums, "residual_hist": histogram, "subgroup_sums": subgroup_sums})


def _sums(stats: RegressionStatistics) -> dict[str, float]:
    return dict(zip(SUMS, (float(v) for v in stats["sums"])))


def regression_metrics(stats: RegressionStatistics) -> dict[str, float]:
    """MAE, RMSE, R², mean error (prediction − outcome) and the calibration line, from pooled sums,
    in the outcome's units."""
    s, c, h = _sums(stats), stats.layout.centre, stats.layout.half_width
    n = s["count"]
    if not n > 0:
        return {"count": n}
    mse = h * h * s["e2"] / n
    total = s["y2"] - s["y"] ** 2 / n  # Σ(u − ū)², in range units (R² and the slope do not depend on them)
    spread = s["p2"] - s["p"] ** 2 / n
    covariance = s["yp"] - s["y"] * s["p"] / n
    slope = covariance / spread if spread > 0 else float("nan")
    mean_y, mean_p = c + h * s["y"] / n, c + h * s["p"] / n
    return {
        "count": n,
        "mae": h * s["abs_e"] / n,
        "rmse": math.sqrt(max(mse, 0.0)),
        "mse": mse,
        "r2": 1 - s["e2"] / total if total > 0 else float("nan"),
        "mean_error": h * s["e"] / n,
        "calibration_slope": slope,
        "calibration_intercept": mean_y - slope * mean_p if math.isfinite(slope) else float("nan"),
        "mean_outcome": mean_y,
        "mean_prediction": mean_p,
    }


def _ols_standard_errors(stats: RegressionStatistics) -> tuple[float, float]:
    """Classical OLS standard errors of the calibration slope and intercept (outcome on prediction)."""
    s, c, h = _sums(stats), stats.layout.centre, stats.layout.half_width
    n = s["count"]
    if not n > 2:
        return float("nan"), float("nan")
    sxx = s["p2"] - s["p"] ** 2 / n
    syy = s["y2"] - s["y"] ** 2 / n
    sxy = s["yp"] - s["y"] * s["p"] / n
    if not sxx > 0:
        return float("nan"), float("nan")
    residual_variance = max(syy - sxy * sxy / sxx, 0.0) / (n - 2)  # range units²
    se_slope = math.sqrt(residual_variance / sxx)
    mean_p = c + h * s["p"] / n
    # In the outcome's units σ²_raw = h²σ² and Sxx_raw = h²·Sxx: se² = σ²_raw (1/n + x̄²/Sxx_raw).
    se_intercept = math.sqrt(h * h * residual_variance * (1 / n + mean_p**2 / (h * h * sxx)))
    return se_slope, se_intercept


def _r2_variance(stats: RegressionStatistics) -> float:
    """Delta-method variance of R² = 1 − A/B, A = mean e², B = mean (y − ȳ)² (range units: R² does not depend
    on them): (Var a / B² − 2A·Cov(a, b) / B³ + A²·Var b / B⁴) / n with a = e², b = (y − ȳ)²; estimating ȳ
    adds nothing at first order. Needs Σy³, Σy⁴, Σe²y, Σe²y² besides the sums the metrics use."""
    s = _sums(stats)
    n = s["count"]
    if not n > 1:
        return float("nan")
    mean = s["y"] / n
    m2, m3, m4 = s["y2"] / n, s["y3"] / n, s["y4"] / n
    a, b = s["e2"] / n, m2 - mean * mean
    if not b > 0:
        return float("nan")
    var_a = s["e4"] / n - a * a
    var_b = (m4 - 4 * m3 * mean + 6 * m2 * mean**2 - 3 * mean**4) - b * b
    cov = (s["e2y2"] / n - 2 * mean * s["e2y"] / n + mean * mean * a) - a * b
    variance = (var_a / b**2 - 2 * a * cov / b**3 + a * a * var_b / b**4) / n
    return max(variance, 0.0)


def regression_intervals(stats: RegressionStatistics, *, confidence: float = 0.95,
                         noise_se: Mapping[str, float] | None = None) -> dict[str, dict[str, float | str]]:
    """Intervals from the sums: normal (sum and sum of squares) for MAE and mean error, the delta method on
    the MSE for RMSE (Σe⁴) and on MSE / outcome variance for R², OLS standard errors for the calibration line. `noise_se`: each metric's DP-noise
    standard error (`regression_noise_se`); its variance is added to the sampling variance."""
    s, h = _sums(stats), stats.layout.half_width
    n = s["count"]
    noise = dict(noise_se or {})
    dp = "+dp" if noise_se is not None else ""

    def noise_var(name: str) -> float:
        value = noise.get(name, 0.0)
        return value * value if math.isfinite(value) else 0.0

    mae = mean_interval(h * s["abs_e"], h * h * s["e2"], n, confidence=confidence, noise_variance=noise_var("mae"))
    mean_error = mean_interval(h * s["e"], h * h * s["e2"], n, confidence=confidence,
                               noise_variance=noise_var("mean_error"))
    result = {"mae_ci": mae.as_record(), "mean_error_ci": mean_error.as_record()}
    z = z_quantile(confidence)
    if n > 1:
        mse = s["e2"] / n
        variance_mse = h**4 * max(s["e4"] / n - mse * mse, 0.0) / (n - 1) + noise_var("mse")
        half = z * math.sqrt(variance_mse)
        low, high = max(h * h * mse - half, 0.0), max(h * h * mse + half, 0.0)
        result["rmse_ci"] = Interval(math.sqrt(low), math.sqrt(high), "delta (MSE)" + dp, confidence).as_record()
    metrics = regression_metrics(stats)
    r2_variance = _r2_variance(stats)
    if math.isfinite(r2_variance) and math.isfinite(metrics.get("r2", float("nan"))):
        half = z * math.sqrt(r2_variance + noise_var("r2"))
        r2 = metrics["r2"]
        result["r2_ci"] = Interval(r2 - half, min(r2 + half, 1.0), "delta (MSE / outcome variance)" + dp, confidence).as_record()
    se_slope, se_intercept = _ols_standard_errors(stats)
    for name, se in (("calibration_slope", se_slope), ("calibration_intercept", se_intercept)):
        value = metrics.get(name, float("nan"))
        half = z * math.sqrt(se * se + noise_var(name)) if math.isfinite(se) else float("nan")
        result[f"{name}_ci"] = Interval(value - half, value + half, "ols" + dp, confidence).as_record()
    return result


def subgroup_errors(stats: RegressionStatistics) -> dict[str, dict[str, float]]:
    """Count, mean error, MAE and RMSE per subgroup level, in the outcome's units."""
    h = stats.layout.half_width
    result = {}
    for level, (n, e, abs_e, e2) in zip(stats.layout.subgroup_levels, stats["subgroup_sums"]):
        readable = n > 0
        result[level] = {"count": float(n), "mean_error": h * e / n if readable else float("nan"),
                         "mae": h * abs_e / n if readable else float("nan"),
                         "rmse": h * math.sqrt(max(e2, 0.0) / n) if readable else float("nan")}
    return result


def subgroup_gaps(groups: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Largest difference between subgroup levels of each error (max − min over levels with records)."""
    gaps = {}
    for key in ("mae", "rmse", "mean_error"):
        values = [entry[key] for entry in groups.values() if math.isfinite(entry.get(key, float("nan")))]
        gaps[key] = max(values) - min(values) if len(values) > 1 else float("nan")
    return gaps


def residual_histogram(stats: RegressionStatistics, *, noisy: bool = False) -> dict[str, list[float]]:
    """The pooled residual histogram (prediction − outcome) on the study's edges; noisy counts clipped at 0."""
    counts = stats["residual_hist"]
    return {"edges": [float(e) for e in stats.layout.residual_edges],
            "counts": [float(v) for v in (np.clip(counts, 0.0, None) if noisy else counts)]}


# ---- differential privacy -------------------------------------------------------------------------------------


def calibrate_regression(layout: RegressionLayout, *, epsilon: float, delta: float, models: int) -> GaussianRelease:
    """The Gaussian release for one round: every model's regression statistics together."""
    layout.record_scales()  # refuses a layout without a value range: its sums have no bounded sensitivity
    return calibrate_release(epsilon=epsilon, delta=delta, coordinates_per_record=models * layout.coordinates_per_record())


def _flat_scales(layout: RegressionLayout) -> dict[str, float]:
    """Each coordinate as its own array, with its scale (`add_gaussian_noise` takes one scale per array)."""
    return {f"{name}/{i}": float(value) for name, scales in layout.record_scales().items()
            for i, value in enumerate(scales.reshape(-1))}


def privatize_regression(
    statistics: Mapping[str, RegressionStatistics], *, epsilon: float, delta: float, rng: np.random.Generator | None = None,
) -> tuple[dict[str, RegressionStatistics], GaussianRelease]:
    """Add calibrated Gaussian noise to every model's regression statistics (at the partner, before sending)."""
    layout = next(iter(statistics.values())).layout
    release = calibrate_regression(layout, epsilon=epsilon, delta=delta, models=len(statistics))
    scales = _flat_scales(layout)
    noisy = {}
    for model, stats in statistics.items():
        flat = {f"{name}/{i}": np.asarray([value]) for name, array in stats.arrays.items()
                for i, value in enumerate(array.reshape(-1))}
        drawn = add_gaussian_noise(flat, scales=scales, release=release, rng=rng)
        noisy[model] = RegressionStatistics(layout, {
            name: np.array([drawn[f"{name}/{i}"][0] for i in range(array.size)]).reshape(array.shape)
            for name, array in stats.arrays.items()})
    return noisy, release


def noise_variances(layout: RegressionLayout, sigmas: list[float]) -> dict[str, np.ndarray]:
    """Variance of the summed DP noise on each coordinate, from each partner's σ."""
    total = sum(sigma * sigma for sigma in sigmas)
    return {name: total * scales**2 for name, scales in layout.record_scales().items()}


# Where a metric computed from noisy sums may lie; it is clipped into it.
_RANGES = {"count": (0.0, math.inf), "mae": (0.0, math.inf), "rmse": (0.0, math.inf), "mse": (0.0, math.inf),
           "r2": (-math.inf, 1.0)}


def clip_regression(metrics: Mapping[str, float]) -> dict[str, float]:
    return {name: float(np.clip(value, *_RANGES[name])) if name in _RANGES and math.isfinite(value) else value
            for name, value in metrics.items()}


def noisy_regression_metrics(stats: RegressionStatistics) -> dict[str, float]:
    """Metrics from DP-noised sums (post-processing only), each clipped into its range."""
    return clip_regression(regression_metrics(stats))


def regression_noise_se(pooled: RegressionStatistics, variance: Mapping[str, np.ndarray], *,
                        rng: np.random.Generator | None = None, draws: int = BOOTSTRAP_DRAWS) -> dict[str, float]:
    """Noise-induced standard error of each metric, by redrawing the released noise around the pooled sums
    (a parametric bootstrap; post-processing, it costs no privacy). The redrawn metrics are not clipped: the
    intervals are built on the unclipped scale (clipping the draws at 0 or 1 understated the noise: the
    95 % RMSE interval covered the exact value in 73–83 % of seeded runs at ε = 1–10 on the example)."""
    generator = rng if rng is not None else np.random.default_rng()
    samples: dict[str, list[float]] = {}
    for _ in range(draws):
        arrays = {name: value + generator.normal(0.0, np.sqrt(variance[name])) for name, value in pooled.arrays.items()}
        for name, value in regression_metrics(RegressionStatistics(pooled.layout, arrays)).items():
            samples.setdefault(name, []).append(value)
    return {name: float(np.nanstd(values)) for name, values in samples.items()}


def regression_summary(pooled: RegressionStatistics, *, confidence: float = 0.95,
                       noise_variance: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Everything a round reports for one regression model: metrics, noise SEs, intervals, residual
    histogram, subgroup errors (what `federated.server.pooling` puts in results.json)."""
    noisy = noise_variance is not None
    metrics = noisy_regression_metrics(pooled) if noisy else regression_metrics(pooled)
    se = regression_noise_se(pooled, noise_variance) if noise_variance is not None else None
    validation: dict[str, Any] = {
        "task": "regression", "confidence": confidence,
        **regression_intervals(pooled, confidence=confidence, noise_se=se),
        "residual_histogram": residual_histogram(pooled, noisy=noisy),
        "value_range": list(pooled.layout.value_range) if pooled.layout.value_range is not None else None,
        "notes": ["MAE, RMSE, R², mean error and the calibration line are exact from the pooled sums"
                  + (" (plus the partners' DP noise)" if noisy else ""),
                  "mean error = prediction − outcome; calibration: OLS of outcome on prediction"],
    }
    groups: dict[str, Any] = {}
    if pooled.layout.subgroup_levels:
        levels = subgroup_errors(pooled)
        if noisy:
            levels = {level: clip_regression(entry) for level, entry in levels.items()}
        groups = {"levels": levels, "gaps": subgroup_gaps(levels)}
    return {"metrics": metrics, "standard_errors": se, "validation": validation, "subgroups": groups}
