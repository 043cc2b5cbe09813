"""Sufficient statistics refuse what does not fit the study's layout."""

from __future__ import annotations

import itertools

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


# Log loss is scikit-learn's, to the last digits, including records whose true class has probability 0.

PARTNER_SIZES = (40, 90, 120, 169)  # 419 evaluation records over four unequal partners


@pytest.fixture(scope="module")
def breast_cancer_trees():
    """A depth-3 tree and a forest exported as examples/hospitals/prepare.py does (skl2onnx, no ZipMap)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, train_size=150, stratify=y, random_state=0)
    models = {
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(x_train, y_train),
        "forest": RandomForestClassifier(n_estimators=25, random_state=0).fit(x_train, y_train),
    }
    onnx = {
        name: to_onnx(model, x_train[:1].astype(np.float32), options={"zipmap": False}, target_opset=17).SerializeToString()
        for name, model in models.items()
    }
    return models, onnx, x_eval.astype(np.float32), y_eval


# A forest's float32 rows miss 1 by ~1e-8: scikit-learn warns and, like Accord, does not renormalise.
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
@pytest.mark.parametrize("name", ["tree", "forest"])
def test_pooled_log_loss_equals_sklearn_on_probability_zero_records(breast_cancer_trees, name):
    from sklearn.metrics import log_loss

    from federated.evaluation.metrics import compute_metrics
    from federated.evaluation.onnx_model import predict_probabilities

    _, onnx, x, y = breast_cancer_trees
    layout = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=())
    bounds = np.cumsum((0, *PARTNER_SIZES))
    parts = [slice(a, b) for a, b in itertools.pairwise(bounds)]
    probabilities = [predict_probabilities(name, onnx[name], "probabilities", x[part]) for part in parts]
    pooled = EvaluationStatistics.total([compute_statistics(p, y[part], None, layout) for p, part in zip(probabilities, parts)])
    every = np.concatenate(probabilities)
    assert (every[np.arange(y.size), y] == 0).any()  # the case that used to differ: a confident mistake
    expected = log_loss(y, every)
    assert compute_metrics(pooled, 10)["log_loss"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["tree", "forest"])
def test_pooled_log_loss_matches_sklearn_on_the_sklearn_model(breast_cancer_trees, name):
    # The ONNX model computes in float32, so the same records through sklearn agree to float32 precision.
    from sklearn.metrics import log_loss

    from federated.evaluation.metrics import compute_metrics
    from federated.evaluation.onnx_model import predict_probabilities

    models, onnx, x, y = breast_cancer_trees
    layout = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=())
    stats = compute_statistics(predict_probabilities(name, onnx[name], "probabilities", x), y, None, layout)
    expected = log_loss(y, models[name].predict_proba(x.astype(np.float64)))
    assert compute_metrics(stats, 10)["log_loss"] == pytest.approx(expected, rel=1e-6)


def test_log_loss_clips_at_float64_epsilon_on_both_sides_like_sklearn():
    from sklearn.metrics import log_loss

    probabilities = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    labels = np.array([1, 1, 2, 0])  # a probability-0 mistake, a certain hit, a plain record, another mistake
    stats = compute_statistics(probabilities, labels, None, StatisticsLayout(3, 10, ()))
    expected = log_loss(labels, probabilities, labels=[0, 1, 2], normalize=False)
    assert stats["log_loss_sum"][0] == pytest.approx(expected, rel=1e-15)


def test_statistics_of_batches_add_up_to_the_statistics_of_the_whole():
    rng = np.random.default_rng(7)
    score = rng.random(1000)
    probabilities, labels = np.column_stack([1 - score, score]), (rng.random(1000) < score).astype(np.int64)
    groups = rng.choice(["a", "b"], 1000)
    whole = compute_statistics(probabilities, labels, groups, LAYOUT)
    batches = EvaluationStatistics.total(
        [compute_statistics(probabilities[s:s + 128], labels[s:s + 128], groups[s:s + 128], LAYOUT) for s in range(0, 1000, 128)]
    )
    for name, array in whole.arrays.items():
        np.testing.assert_allclose(batches[name], array, rtol=1e-12, err_msg=name)
