"""Small-cell suppression: what a partner's exact (non-DP) statistics may show before they leave.

A released cell is a count or a sum over a set of records. Without DP, a cell over one record is
that record: a score bin that holds one patient, with its score sum, gives the model's output for
that patient exactly, and a model crafted to output one feature gives that feature. So before an
exact release, every cell that stands for fewer than `min_cell_count` records is zeroed:

- `label_counts`, `confusion`, `hist_pos`, `hist_neg`, `subgroup_confusion`, `feature_hist` (shift studies): counts
  1 .. min_cell_count - 1;
- `score_sum[k, b]`: where bin b of class k holds fewer records (positives and negatives together);
- a whole subgroup level (its confusion block) with fewer than `min_subgroup_size` records;
- everything, if the partner holds fewer than `min_cell_count` records (the node refuses that earlier).

Zeroed cells stay in the layout, so the coordinator still adds partners' arrays (pooled metrics
lose the suppressed mass; a zero looks the same whether it was empty or suppressed). Only the
number of suppressed cells is reported, never which. This stops one-query reconstruction; it does
not stop an adversary who differences many queries (only DP does), and it does not do secondary
suppression: totals the layout implies (a histogram row's sum is a confusion row's sum) can
reveal how many records the suppressed cells of a row hold, not which bins or values.

Applied by the node (`federated.client.tasks`) after the statistics are computed and only when the
release has no DP noise; the thresholds come from the partner's contract (`privacy.contract.Disclosure`).
This module never changes a cell over `min_cell_count` records or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from federated.evaluation.regression import RegressionStatistics
from federated.evaluation.statistics import EvaluationStatistics

_COUNT_ARRAYS = ("label_counts", "confusion", "hist_pos", "hist_neg", "subgroup_confusion", "feature_hist")


@dataclass(frozen=True, kw_only=True)
class CellSuppression:
    """The thresholds of one release: no cell over fewer than `min_cell_count` records, no subgroup under
    `min_subgroup_size`."""

    min_cell_count: int
    min_subgroup_size: int

    def __post_init__(self) -> None:
        if self.min_cell_count < 1 or self.min_subgroup_size < 1:
            raise ValueError("min_cell_count and min_subgroup_size must be at least 1")

    def apply(self, statistics: EvaluationStatistics) -> tuple[EvaluationStatistics, int]:
        """One model's statistics with small cells zeroed, and how many non-zero cells were zeroed."""
        arrays = {name: np.array(value, dtype=np.float64, copy=True) for name, value in statistics.arrays.items()}
        before = {name: int(np.count_nonzero(value)) for name, value in arrays.items()}
        if 0 < statistics.count < self.min_cell_count:
            for value in arrays.values():
                value[...] = 0.0
        else:
            # Score sums follow their bin's record count, taken before the counts are suppressed.
            bin_records = arrays["hist_pos"] + arrays["hist_neg"]
            arrays["score_sum"][bin_records < self.min_cell_count] = 0.0
            subgroups = arrays["subgroup_confusion"]
            small = subgroups.sum(axis=(1, 2)) < self.min_subgroup_size
            subgroups[small] = 0.0
            for name in _COUNT_ARRAYS:
                if name not in arrays:  # feature_hist: only in shift studies
                    continue
                value = arrays[name]
                value[(value > 0) & (value < self.min_cell_count)] = 0.0
        suppressed = sum(before[name] - int(np.count_nonzero(value)) for name, value in arrays.items())
        return EvaluationStatistics(statistics.layout, arrays), suppressed

    def apply_regression(self, statistics: RegressionStatistics) -> tuple[RegressionStatistics, int]:
        """A regression model's sums with small cells zeroed: residual-histogram bins under `min_cell_count`,
        subgroup rows (count and error sums) under `min_subgroup_size`, everything under `min_cell_count`
        records. The whole-data sums (Σy, Σe², ...) stand for every record and are kept."""
        arrays = {name: np.array(value, dtype=np.float64, copy=True) for name, value in statistics.arrays.items()}
        before = {name: int(np.count_nonzero(value)) for name, value in arrays.items()}
        if 0 < statistics.count < self.min_cell_count:
            for value in arrays.values():
                value[...] = 0.0
        else:
            histogram = arrays["residual_hist"]
            histogram[(histogram > 0) & (histogram < self.min_cell_count)] = 0.0
            subgroups = arrays["subgroup_sums"]
            subgroups[subgroups[:, 0] < self.min_subgroup_size] = 0.0
        suppressed = sum(before[name] - int(np.count_nonzero(value)) for name, value in arrays.items())
        return RegressionStatistics(statistics.layout, arrays), suppressed

    def apply_all(
        self, statistics: Mapping[str, EvaluationStatistics | RegressionStatistics]
    ) -> tuple[dict[str, EvaluationStatistics | RegressionStatistics], int]:
        """Every model's statistics suppressed, and the number of cells zeroed over all of them."""
        released: dict[str, EvaluationStatistics | RegressionStatistics] = {}
        total = 0
        for name, stats in statistics.items():
            released[name], suppressed = (self.apply_regression(stats) if isinstance(stats, RegressionStatistics)
                                          else self.apply(stats))
            total += suppressed
        return released, total
