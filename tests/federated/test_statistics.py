"""Sufficient statistics refuse what does not fit the study's layout."""

from __future__ import annotations

import numpy as np
import pytest

from federated.errors import MessageError
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)

LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=("a", "b"))
PROBABILITIES = np.array([[0.2, 0.8], [0.6, 0.4]])


def test_statistics_add_elementwise():
    one = compute_statistics(PROBABILITIES, np.array([1, 0]), np.array(["a", "b"]), LAYOUT)
    both = one + one
    assert both.count == 4
    np.testing.assert_array_equal(both["confusion"], 2 * one["confusion"])


def test_unknown_subgroup_value_is_named():
    with pytest.raises(MessageError, match=r"\['z'\]"):
        compute_statistics(PROBABILITIES, np.array([1, 0]), np.array(["a", "z"]), LAYOUT)


def test_missing_subgroup_column_is_refused():
    with pytest.raises(MessageError, match="no subgroup column"):
        compute_statistics(PROBABILITIES, np.array([1, 0]), None, LAYOUT)


def test_class_count_mismatch_is_refused():
    with pytest.raises(MessageError, match="3 classes"):
        compute_statistics(np.full((2, 3), 1 / 3), np.array([1, 0]), np.array(["a", "b"]), LAYOUT)


def test_wrong_shape_is_refused():
    arrays = compute_statistics(PROBABILITIES, np.array([1, 0]), np.array(["a", "b"]), LAYOUT).arrays
    arrays["hist_pos"] = np.zeros((2, 11))
    with pytest.raises(MessageError, match="hist_pos.*shape"):
        EvaluationStatistics(LAYOUT, arrays)


def test_nan_is_refused():
    arrays = dict(compute_statistics(PROBABILITIES, np.array([1, 0]), np.array(["a", "b"]), LAYOUT).arrays)
    arrays["brier_sum"] = np.array([np.nan])
    with pytest.raises(MessageError, match="NaN"):
        EvaluationStatistics(LAYOUT, arrays)


def test_layouts_must_match_to_add():
    one = compute_statistics(PROBABILITIES, np.array([1, 0]), np.array(["a", "b"]), LAYOUT)
    other = compute_statistics(PROBABILITIES, np.array([1, 0]), None, StatisticsLayout(2, 10, ()))
    with pytest.raises(MessageError, match="different layouts"):
        _ = one + other
