"""Sufficient statistics of a model's predictions on one partner's data, and their sums.

Everything a pooled metric needs is a sum over records: confusion counts, loss sums and
binned score histograms. A partner computes them locally; the coordinator only adds them.
The arrays have a fixed layout set by the study (classes, bins, subgroup levels), so the
same layout serves plaintext sums, DP noise and encrypted aggregation.

This module never sees which partner a record came from and never keeps raw predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from federated.errors import MessageError

# Probabilities are clipped into [eps, 1 - eps] before the log, eps the float64 machine epsilon,
# exactly as `sklearn.metrics.log_loss` does on float64 input (it does not renormalise rows):
# one confident mistake adds at most -log(eps) ≈ 36.04, and the pooled log loss equals
# scikit-learn's on the pooled records, probability-0 records (trees, forests) included.
LOG_LOSS_EPSILON = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class StatisticsLayout:
    """Shapes fixed by the study: every partner's statistics must have exactly these."""

    num_classes: int
    score_bins: int
    subgroup_levels: tuple[str, ...]
    threshold: float = 0.5
    positive_class: int = 1
    loss_bound: float | None = None  # per-record log loss is clipped to it (set when DP is on)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        k, b, g = self.num_classes, self.score_bins, len(self.subgroup_levels)
        return {
            "count": (1,),
            "confusion": (k, k),
            "log_loss_sum": (1,),
            "brier_sum": (1,),
            "hist_pos": (k, b),
            "hist_neg": (k, b),
            "score_sum": (k, b),
            "subgroup_confusion": (g, k, k),
        }


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
    def count(self) -> int:
        return int(round(float(self.arrays["count"][0])))

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
) -> EvaluationStatistics:
    """Summarise predictions [n, classes] against integer labels into sufficient statistics."""
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

    hist_pos = np.zeros((k, layout.score_bins))
    hist_neg = np.zeros((k, layout.score_bins))
    score_sum = np.zeros((k, layout.score_bins))
    b = layout.score_bins
    for cls in range(k):
        bins = score_bin(probabilities[:, cls], b)
        is_pos = labels == cls
        hist_pos[cls] = np.bincount(bins[is_pos], minlength=b)
        hist_neg[cls] = np.bincount(bins[~is_pos], minlength=b)
        score_sum[cls] = np.bincount(bins, weights=probabilities[:, cls], minlength=b)

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
            "count": np.array([float(n)]),
            "confusion": confusion,
            "log_loss_sum": np.array([float(record_loss.sum())]),
            "brier_sum": np.array([float(brier_terms.sum())]),
            "hist_pos": hist_pos,
            "hist_neg": hist_neg,
            "score_sum": score_sum,
            "subgroup_confusion": subgroup_confusion,
        },
    )
