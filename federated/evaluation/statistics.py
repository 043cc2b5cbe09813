"""Sufficient statistics of a model's predictions on one partner's data, and their sums.

Everything a pooled metric needs is a sum over records: confusion counts, loss sums and
binned score histograms. A partner computes them locally; the coordinator only adds them.
The arrays have a fixed layout set by the study (classes, bins, subgroup levels), so the
same layout serves plaintext sums, DP noise and encrypted aggregation.

Two choices keep a DP release small. A binary study keeps the score histograms of the positive
class only (rows of shape (1, bins)): the other class's score is 1 - p, its histograms the
mirror, and nothing reads them. The label counts (records per true class; the record count is
their sum) do not depend on the model: they are `SHARED_ARRAYS`, computed once per task, noised
once and sent with the same values for every model, so every model's metrics share one count.

This module never sees which partner a record came from and never keeps raw predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from federated.errors import MessageError
from federated.evaluation.shift import feature_histograms

# Probabilities are clipped into [eps, 1 - eps] before the log, eps the float64 machine epsilon,
# exactly as `sklearn.metrics.log_loss` does on float64 input (it does not renormalise rows):
# one confident mistake adds at most -log(eps) ≈ 36.04, and the pooled log loss equals
# scikit-learn's on the pooled records, probability-0 records (trees, forests) included.
LOG_LOSS_EPSILON = float(np.finfo(np.float64).eps)

# Arrays that are the same for every model of a task (they depend on the records, not on the model):
# released once per round, their values repeated in each model's statistics (`dp_release.privatize`).
SHARED_ARRAYS = ("label_counts", "feature_hist")  # feature_hist: shift studies only (one bin per feature)


@dataclass(frozen=True)
class StatisticsLayout:
    """Shapes fixed by the study: every partner's statistics must have exactly these."""

    num_classes: int
    score_bins: int
    subgroup_levels: tuple[str, ...]
    threshold: float = 0.5
    positive_class: int = 1
    loss_bound: float | None = None  # per-record log loss is clipped to it (set when DP is on)
    # Shift between partners (`federated.evaluation.shift`): the study's ascending bin edges per feature,
    # and the features' names as the partners' manifests name them; empty: no feature histograms.
    feature_edges: tuple[tuple[float, ...], ...] = ()
    shift_features: tuple[str, ...] = ()

    @property
    def feature_bins(self) -> int:
        """Columns of `feature_hist`: the most bins any shift feature has (shorter rows are padded with 0)."""
        return max((len(edges) - 1 for edges in self.feature_edges), default=0)

    @property
    def histogram_classes(self) -> tuple[int, ...]:
        """The classes whose score histograms the statistics hold, one row each: binary studies only the
        positive class (the negative class's scores are 1 - p), otherwise every class."""
        return (self.positive_class,) if self.num_classes == 2 else tuple(range(self.num_classes))

    def histogram_row(self, cls: int) -> int:
        """The row of `hist_pos`, `hist_neg` and `score_sum` that holds class `cls`."""
        if cls not in self.histogram_classes:
            raise ValueError(f"class {cls} has no score histograms: a binary study keeps the positive class's "
                             f"({self.positive_class}) only")
        return self.histogram_classes.index(cls)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        k, b, g = self.num_classes, self.score_bins, len(self.subgroup_levels)
        rows = len(self.histogram_classes)
        return {
            "label_counts": (k,),
            "confusion": (k, k),
            "log_loss_sum": (1,),
            "brier_sum": (1,),
            "hist_pos": (rows, b),
            "hist_neg": (rows, b),
            "score_sum": (rows, b),
            "subgroup_confusion": (g, k, k),
            # Sums of squared per-record losses: the variance of the mean Brier score and log loss (intervals).
            "log_loss_sq_sum": (1,),
            "brier_sq_sum": (1,),
        } | ({"feature_hist": (len(self.feature_edges), self.feature_bins)} if self.feature_edges else {})


@dataclass(frozen=True)
class EvaluationStatistics:
    """Named arrays following a `StatisticsLayout`; adding two gives the pooled statistics."""

    layout: StatisticsLayout
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        expected = self.layout.shapes()
        if set(self.arrays) != set(expected):
            raise MessageError(
                f"statistics arrays {sorted(self.arrays)} do not match the layout {sorted(expected)}"
            )
        for name, shape in expected.items():
            array = self.arrays[name]
            if array.shape != shape:
                raise MessageError(f"statistics array {name!r} has shape {array.shape}, expected {shape}")
            if not np.all(np.isfinite(array)):
                raise MessageError(f"statistics array {name!r} holds NaN or infinite values")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def records(self) -> float:
        """The record count: the sum of the label counts (noisy under DP, the same for every model)."""
        return float(self.arrays["label_counts"].sum())

    @property
    def count(self) -> int:
        return int(round(self.records))

    def histograms(self, cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class `cls` against the rest, per score bin: (records of class `cls`, the other records, score sums)."""
        row = self.layout.histogram_row(cls)
        return self.arrays["hist_pos"][row], self.arrays["hist_neg"][row], self.arrays["score_sum"][row]

    def __add__(self, other: EvaluationStatistics) -> EvaluationStatistics:
        if other.layout != self.layout:
            raise MessageError("cannot add statistics with different layouts")
        return EvaluationStatistics(self.layout, {k: self.arrays[k] + other.arrays[k] for k in self.arrays})

    @classmethod
    def total(cls, parts: list[EvaluationStatistics]) -> EvaluationStatistics:
        """Sum of several partners' statistics (at least one)."""
        if not parts:
            raise MessageError("no statistics to add")
        result = parts[0]
        for part in parts[1:]:
            result = result + part
        return result


def predicted_classes(probabilities: np.ndarray, layout: StatisticsLayout) -> np.ndarray:
    """Binary: positive iff p(positive) >= threshold; otherwise argmax."""
    if layout.num_classes == 2:
        positive = probabilities[:, layout.positive_class] >= layout.threshold
        return np.where(positive, layout.positive_class, 1 - layout.positive_class)
    return np.argmax(probabilities, axis=1)


def score_bin(scores: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each score in [0, 1]: equal-width bins, 1.0 falls in the last one."""
    return np.minimum((np.clip(scores, 0.0, 1.0) * bins).astype(np.int64), bins - 1)


def compute_statistics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    subgroups: np.ndarray | None,
    layout: StatisticsLayout,
    *,
    shift_columns: np.ndarray | None = None,
) -> EvaluationStatistics:
    """Summarise predictions [n, classes] against integer labels into sufficient statistics.

    `shift_columns`: the records' values of the layout's shift features [n, len(shift_features)], in that
    order (required when the layout has `feature_edges`): counted on the study's edges into `feature_hist`."""
    n, k = probabilities.shape
    if k != layout.num_classes:
        raise MessageError(f"model outputs {k} classes, the study declares {layout.num_classes}")
    if labels.max(initial=0) >= k:
        raise MessageError(f"labels reach {labels.max()}, but the study declares {k} classes")
    probabilities = probabilities.astype(np.float64, copy=False)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = predicted_classes(probabilities, layout)
    # np.bincount counts and sums like np.add.at, in record order, many times faster.
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).astype(np.float64)

    true_probability = np.clip(probabilities[np.arange(n), labels], LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON)
    record_loss = -np.log(true_probability)
    if layout.loss_bound is not None:
        record_loss = np.minimum(record_loss, layout.loss_bound)
    onehot = np.eye(k)[labels]
    brier_terms = ((probabilities - onehot) ** 2).sum(axis=1)
    if k == 2:
        brier_terms = (probabilities[:, layout.positive_class] - onehot[:, layout.positive_class]) ** 2

    classes = layout.histogram_classes
    b = layout.score_bins
    hist_pos = np.zeros((len(classes), b))
    hist_neg = np.zeros((len(classes), b))
    score_sum = np.zeros((len(classes), b))
    for row, cls in enumerate(classes):
        bins = score_bin(probabilities[:, cls], b)
        is_pos = labels == cls
        hist_pos[row] = np.bincount(bins[is_pos], minlength=b)
        hist_neg[row] = np.bincount(bins[~is_pos], minlength=b)
        score_sum[row] = np.bincount(bins, weights=probabilities[:, cls], minlength=b)

    levels = layout.subgroup_levels
    subgroup_confusion = np.zeros((len(levels), k, k))
    if levels:
        if subgroups is None:
            raise MessageError(f"the study asks for subgroups {list(levels)}, the data has no subgroup column")
        index = {level: i for i, level in enumerate(levels)}
        # Map the distinct values, not every record: a batch holds few levels and many records.
        values, inverse = np.unique(np.asarray(subgroups, dtype=object).astype(str), return_inverse=True)
        unknown = sorted(set(values.tolist()) - set(index))
        if unknown:
            raise MessageError(f"subgroup values {unknown} are not among the study's levels {list(levels)}")
        group = np.asarray([index[value] for value in values.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        cells = np.bincount((group * k + labels) * k + predicted, minlength=len(levels) * k * k)
        subgroup_confusion = cells.reshape(len(levels), k, k).astype(np.float64)

    return EvaluationStatistics(
        layout,
        {
            "label_counts": np.bincount(labels, minlength=k).astype(np.float64),
            "confusion": confusion,
            "log_loss_sum": np.array([float(record_loss.sum())]),
            "brier_sum": np.array([float(brier_terms.sum())]),
            "hist_pos": hist_pos,
            "hist_neg": hist_neg,
            "score_sum": score_sum,
            "subgroup_confusion": subgroup_confusion,
            "log_loss_sq_sum": np.array([float((record_loss**2).sum())]),
            "brier_sq_sum": np.array([float((brier_terms**2).sum())]),
        } | _feature_hist(shift_columns, n, layout),
    )


def _feature_hist(columns: np.ndarray | None, n: int, layout: StatisticsLayout) -> dict[str, np.ndarray]:
    if not layout.feature_edges:
        return {}
    expected = (n, len(layout.feature_edges))
    if columns is None or np.shape(columns) != expected:
        got = "none" if columns is None else f"shape {np.shape(columns)}"
        raise MessageError(f"the study's shift features {list(layout.shift_features)} need their columns {expected}, got {got}")
    return {"feature_hist": feature_histograms(columns, layout.feature_edges)}
