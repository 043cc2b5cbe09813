"""Sufficient statistics and metrics for models that predict a number (risk score, length of stay, cost).

Like classification, everything is a sum over records, so partners send sums and the coordinator adds
them: count, Σy, Σy², Σŷ, Σŷ², Σyŷ, Σ|e|, Σe², Σe⁴ (e = ŷ − y), a residual histogram on edges the study
fixes, and per subgroup level (count, Σe, Σ|e|, Σe²). From the sums, exactly (equal to scikit-learn on
the concatenated data): MAE, RMSE, R², mean error, and the calibration line (OLS of outcome on
prediction: slope and intercept); intervals for MAE, mean error and RMSE from the sums of squares and
fourth powers (delta method for RMSE).

With DP, outcomes and predictions are clipped to the study's declared `value_range` before summing, so
one record moves each sum by a bounded amount (the sensitivity the noise is calibrated to).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from federated.errors import MessageError
from federated.evaluation.intervals import Interval, mean_interval, z_quantile

SUMS = ("count", "y", "y2", "p", "p2", "yp", "abs_e", "e2", "e4", "e")


@dataclass(frozen=True)
class RegressionLayout:
    """Shapes fixed by the study for a regression model's statistics."""

    residual_edges: tuple[float, ...]  # ascending; residuals outside fall in the first/last bin
    subgroup_levels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None  # outcomes and predictions clipped to it (set when DP is on)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"sums": (len(SUMS),), "residual_hist": (len(self.residual_edges) - 1,),
                "subgroup_sums": (len(self.subgroup_levels), 4)}


def compute_regression_statistics(predictions: np.ndarray, outcomes: np.ndarray, subgroups: np.ndarray | None,
                                  layout: RegressionLayout) -> dict[str, np.ndarray]:
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
    e = p - y
    sums = np.array([p.size, y.sum(), (y * y).sum(), p.sum(), (p * p).sum(), (y * p).sum(), np.abs(e).sum(),
                     (e * e).sum(), (e**4).sum(), e.sum()], dtype=np.float64)
    edges = np.asarray(layout.residual_edges, dtype=np.float64)
    index = np.clip(np.searchsorted(edges, e, side="right") - 1, 0, edges.size - 2)
    histogram = np.bincount(index, minlength=edges.size - 1).astype(np.float64)
    levels = layout.subgroup_levels
    subgroup_sums = np.zeros((len(levels), 4))
    if levels:
        if subgroups is None:
            raise MessageError(f"the study asks for subgroups {list(levels)}, the data has no subgroup column")
        position = {level: i for i, level in enumerate(levels)}
        unknown = sorted({str(v) for v in subgroups} - set(position))
        if unknown:
            raise MessageError(f"subgroup values {unknown} are not among the study's levels {list(levels)}")
        group = np.asarray([position[str(v)] for v in subgroups], dtype=np.int64)
        for column, values in enumerate((np.ones_like(e), e, np.abs(e), e * e)):
            np.add.at(subgroup_sums[:, column], group, values)
    return {"sums": sums, "residual_hist": histogram, "subgroup_sums": subgroup_sums}


def _sums(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    return dict(zip(SUMS, (float(v) for v in arrays["sums"])))


def regression_metrics(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """MAE, RMSE, R², mean error (prediction − outcome) and the calibration line, from pooled sums."""
    s = _sums(arrays)
    n = s["count"]
    if not n > 0:
        return {"count": n}
    mse = s["e2"] / n
    total = s["y2"] - s["y"] ** 2 / n  # Σ(y − ȳ)²
    spread = s["p2"] - s["p"] ** 2 / n  # Σ(ŷ − mean ŷ)²
    covariance = s["yp"] - s["y"] * s["p"] / n
    slope = covariance / spread if spread > 0 else float("nan")
    return {
        "count": n,
        "mae": s["abs_e"] / n,
        "rmse": math.sqrt(max(mse, 0.0)),
        "mse": mse,
        "r2": 1 - s["e2"] / total if total > 0 else float("nan"),
        "mean_error": s["e"] / n,
        "calibration_slope": slope,
        "calibration_intercept": s["y"] / n - slope * s["p"] / n if math.isfinite(slope) else float("nan"),
        "mean_outcome": s["y"] / n,
        "mean_prediction": s["p"] / n,
    }


def regression_intervals(arrays: dict[str, np.ndarray], *, confidence: float = 0.95) -> dict[str, dict[str, float | str]]:
    """Normal intervals for MAE and mean error; RMSE by the delta method on the MSE (uses Σe⁴)."""
    s = _sums(arrays)
    n = s["count"]
    mae = mean_interval(s["abs_e"], s["e2"], n, confidence=confidence)
    mean_error = mean_interval(s["e"], s["e2"], n, confidence=confidence)
    result = {"mae_ci": mae.as_record(), "mean_error_ci": mean_error.as_record()}
    if n > 1:
        mse = s["e2"] / n
        variance_mse = max(s["e4"] / n - mse * mse, 0.0) / (n - 1)
        half = z_quantile(confidence) * math.sqrt(variance_mse)
        low, high = max(mse - half, 0.0), mse + half
        result["rmse_ci"] = Interval(math.sqrt(low), math.sqrt(high), "delta (MSE)", confidence).as_record()
    return result


def subgroup_errors(arrays: dict[str, np.ndarray], levels: tuple[str, ...]) -> dict[str, dict[str, float]]:
    result = {}
    for level, (n, e, abs_e, e2) in zip(levels, arrays["subgroup_sums"]):
        result[level] = {"count": float(n), "mean_error": e / n if n > 0 else float("nan"),
                         "mae": abs_e / n if n > 0 else float("nan"), "rmse": math.sqrt(e2 / n) if n > 0 else float("nan")}
    return result
