"""Shift between partners: per-feature distributions on bin edges the study fixes, label prevalence,
and a shift statistic of each partner against the pooled distribution or a reference the study names.

Partners release per-feature counts on the study's edges (values outside fall in the first/last bin) and
their label counts; these are sums like every other statistic, DP-protected the same way. The coordinator
adds them. Per-partner shift can be computed only for partners whose contracts release per-partner
statistics; for the others only the pooled distribution is known, and the report says so.

Statistics: population stability index PSI = Σ (p − q)·ln(p / q), and the Jensen–Shannon distance
(base 2, in [0, 1], scipy's definition), both with a small floor on empty bins so they stay finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FLOOR = 1e-6  # probability given to an empty bin, so log ratios stay finite


def feature_histograms(features: np.ndarray, edges: Sequence[Sequence[float]]) -> np.ndarray:
    """Counts per bin for each feature column (rows: features), on the study's ascending `edges`."""
    columns = np.asarray(features, dtype=np.float64)
    bins = max(len(e) - 1 for e in edges)
    counts = np.zeros((len(edges), bins))
    for column, feature_edges in enumerate(edges):
        e = np.asarray(feature_edges, dtype=np.float64)
        index = np.clip(np.searchsorted(e, columns[:, column], side="right") - 1, 0, e.size - 2)
        counts[column, : e.size - 1] = np.bincount(index, minlength=e.size - 1)
    return counts


def _distribution(counts: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(counts, dtype=np.float64), 0, None)
    total = clipped.sum()
    if total <= 0:
        return np.full(clipped.shape, np.nan)
    p = np.maximum(clipped / total, FLOOR)
    return p / p.sum()


def population_stability_index(counts: np.ndarray, reference: np.ndarray) -> float:
    p, q = _distribution(counts), _distribution(reference)
    return float(((p - q) * np.log(p / q)).sum())


def jensen_shannon(counts: np.ndarray, reference: np.ndarray) -> float:
    p, q = _distribution(counts), _distribution(reference)
    m = (p + q) / 2
    divergence = 0.5 * (p * np.log2(p / m)).sum() + 0.5 * (q * np.log2(q / m)).sum()
    return float(np.sqrt(max(divergence, 0.0)))


def shift_table(
    partner_counts: Mapping[str, np.ndarray], pooled_counts: np.ndarray, features: Sequence[str],
    *, reference: np.ndarray | None = None, psi_threshold: float = 0.25, js_threshold: float = 0.2,
    bins_per_feature: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Per partner and feature: PSI and JS distance against `reference`, or else against the pool of the
    other partners (leave-one-out, so a shifted partner does not pull its own reference towards it),
    flagged above the study's thresholds. `partner_counts`: only partners whose contracts release per-partner."""
    widths = bins_per_feature or [pooled_counts.shape[1]] * len(features)
    table: dict[str, Any] = {"reference": "the other partners pooled" if reference is None else "study reference",
                             "psi_threshold": psi_threshold, "js_threshold": js_threshold, "partners": {}}
    for partner, counts in sorted(partner_counts.items()):
        base = reference if reference is not None else pooled_counts - counts
        rows = {}
        for index, feature in enumerate(features):
            width = widths[index]
            psi = population_stability_index(counts[index, :width], base[index, :width])
            js = jensen_shannon(counts[index, :width], base[index, :width])
            rows[feature] = {"psi": psi, "js": js, "flagged": bool(psi > psi_threshold or js > js_threshold)}
        table["partners"][partner] = rows
    return table
