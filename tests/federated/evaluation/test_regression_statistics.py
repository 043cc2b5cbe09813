"""Regression metrics from pooled sums equal scikit-learn's on the concatenated records."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from federated.errors import MessageError
from federated.evaluation.regression import (
    RegressionLayout,
    RegressionStatistics,
    compute_regression_statistics,
    regression_intervals,
    regression_metrics,
    subgroup_errors,
)

LAYOUT = RegressionLayout(residual_edges=tuple(np.linspace(-200, 200, 21)), subgroup_levels=("a", "b"))
# The diabetes outcome lies in [25, 346] and the model's predictions well inside: clipping changes nothing.
RANGED = RegressionLayout(residual_edges=LAYOUT.residual_edges, subgroup_levels=("a", "b"), value_range=(0.0, 400.0))


def _partners(seed: int = 0, layout: RegressionLayout = LAYOUT):
    x, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.5).fit(x[:200], y[:200])
    rest_x, rest_y = x[200:], y[200:]
    predictions = model.predict(rest_x)
    groups = np.where(np.random.default_rng(seed).random(rest_y.size) < 0.4, "a", "b")
    cuts = [0, 90, 170, rest_y.size]  # three unequal partners
    parts = [compute_regression_statistics(predictions[a:b], rest_y[a:b], groups[a:b], layout) for a, b in itertools.pairwise(cuts)]
    pooled = RegressionStatistics.total(parts)
    return pooled, predictions, rest_y, groups


@pytest.mark.parametrize("layout", [LAYOUT, RANGED], ids=["raw", "value-range-units"])
def test_pooled_regression_metrics_equal_scikit_learn_on_the_concatenated_data(layout) -> None:
    pooled, predictions, outcomes, _ = _partners(layout=layout)
    metrics = regression_metrics(pooled)
    assert metrics["count"] == outcomes.size
    assert metrics["mae"] == pytest.approx(mean_absolute_error(outcomes, predictions), rel=1e-12)
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(outcomes, predictions)), rel=1e-12)
    assert metrics["r2"] == pytest.approx(r2_score(outcomes, predictions), rel=1e-10)
    assert metrics["mean_error"] == pytest.approx(np.mean(predictions - outcomes), rel=1e-10)


@pytest.mark.parametrize("layout", [LAYOUT, RANGED], ids=["raw", "value-range-units"])
def test_calibration_line_equals_ols_of_outcome_on_prediction(layout) -> None:
    pooled, predictions, outcomes, _ = _partners(layout=layout)
    fit = LinearRegression().fit(predictions.reshape(-1, 1), outcomes)
    metrics = regression_metrics(pooled)
    assert metrics["calibration_slope"] == pytest.approx(fit.coef_[0], rel=1e-9)
    assert metrics["calibration_intercept"] == pytest.approx(fit.intercept_, rel=1e-9)


def test_residual_histogram_counts_every_record_and_subgroups_add_up() -> None:
    pooled, predictions, outcomes, groups = _partners()
    assert pooled["residual_hist"].sum() == outcomes.size
    errors = subgroup_errors(pooled)
    for level in LAYOUT.subgroup_levels:
        mask = groups == level
        assert errors[level]["mae"] == pytest.approx(mean_absolute_error(outcomes[mask], predictions[mask]), rel=1e-12)


def test_intervals_cover_the_population_values_at_near_nominal_rate() -> None:
    rng = np.random.default_rng(3)
    covered = {"mae": 0, "rmse": 0, "r2": 0}
    runs = 300
    for _ in range(runs):
        outcomes = rng.normal(0, 1, 400)
        predictions = outcomes + rng.normal(0.1, 0.5, 400)  # error ~ N(0.1, 0.5²): MAE, RMSE known
        intervals = regression_intervals(compute_regression_statistics(predictions, outcomes, None, RegressionLayout((-5.0, 5.0))))
        true_rmse = np.sqrt(0.1**2 + 0.25)
        # E|e| for e ~ N(μ, σ²): σ·sqrt(2/π)·exp(−μ²/2σ²) + μ·(1 − 2Φ(−μ/σ))
        phi = 0.5 * (1 + math.erf(-0.1 / 0.5 / math.sqrt(2)))
        true_mae = 0.5 * math.sqrt(2 / math.pi) * math.exp(-(0.1**2) / (2 * 0.25)) + 0.1 * (1 - 2 * phi)
        covered["mae"] += intervals["mae_ci"]["low"] <= true_mae <= intervals["mae_ci"]["high"]
        covered["rmse"] += intervals["rmse_ci"]["low"] <= true_rmse <= intervals["rmse_ci"]["high"]
        true_r2 = 1 - (0.1**2 + 0.25) / 1.0  # e independent of y ~ N(0, 1): 1 − E[e²] / Var(y)
        covered["r2"] += intervals["r2_ci"]["low"] <= true_r2 <= intervals["r2_ci"]["high"]
    assert 0.92 <= covered["mae"] / runs <= 0.98
    assert 0.92 <= covered["rmse"] / runs <= 0.98
    assert 0.92 <= covered["r2"] / runs <= 0.98


def test_value_range_clips_outcomes_and_predictions() -> None:
    layout = RegressionLayout((-10.0, 10.0), value_range=(0.0, 1.0))
    metrics = regression_metrics(compute_regression_statistics(np.array([5.0, -3.0]), np.array([0.5, 0.5]), None, layout))
    assert metrics["mean_prediction"] == pytest.approx(0.5)  # predictions clipped to [0, 1]: (1 + 0) / 2
    assert metrics["mae"] == pytest.approx(0.5)


def test_nan_predictions_are_refused_with_a_named_error() -> None:
    with pytest.raises(MessageError, match="NaN or infinite"):
        compute_regression_statistics(np.array([np.nan]), np.array([1.0]), None, RegressionLayout((-1.0, 1.0)))


def test_calibration_line_intervals_are_the_ols_standard_errors() -> None:
    import statsmodels.api as sm

    pooled, predictions, outcomes, _ = _partners(layout=RANGED)
    fit = sm.OLS(outcomes, sm.add_constant(predictions)).fit()
    intervals = regression_intervals(pooled)
    low, high = fit.conf_int(alpha=0.05)[1]
    assert intervals["calibration_slope_ci"]["low"] == pytest.approx(low, rel=1e-3)  # z, not t: n = 242
    assert intervals["calibration_slope_ci"]["high"] == pytest.approx(high, rel=1e-3)
    low, high = fit.conf_int(alpha=0.05)[0]
    assert intervals["calibration_intercept_ci"]["low"] == pytest.approx(low, rel=1e-2)
    assert intervals["calibration_intercept_ci"]["high"] == pytest.approx(high, rel=1e-2)


def test_partners_with_different_layouts_cannot_be_added() -> None:
    pooled, *_ = _partners()
    other, *_ = _partners(layout=RANGED)
    with pytest.raises(MessageError, match="different layouts"):
        pooled + other
