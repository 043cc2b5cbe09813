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

import hashlib
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


NULL_DRAWS = 200  # parametric draws for a partner's "no shift" PSI (sampling and DP noise)


def _proportions(counts: np.ndarray) -> list[float]:
    clipped = np.clip(np.asarray(counts, dtype=np.float64), 0, None)
    total = clipped.sum()
    return (clipped / total).tolist() if total > 0 else [float("nan")] * clipped.size


def null_psi(reference: np.ndarray, records: float, *, partner_noise: float = 0.0, reference_noise: float = 0.0,
             quantile: float = 0.95) -> float:
    """The `quantile` of the PSI a partner of `records` records would show against `reference` if its records
    were drawn from the reference's distribution: multinomial sampling, plus DP noise of variance
    `partner_noise` per cell on its counts and `reference_noise` per cell on the reference (0 without DP).
    A PSI below it is what sampling and noise alone produce. Seeded by the inputs: the same release always
    reports the same value. Post-processing of released sums: no privacy cost."""
    ref = np.clip(np.asarray(reference, dtype=np.float64), 0, None)
    n = int(round(records))
    if ref.sum() <= 0 or n < 1:
        return float("nan")
    key = np.asarray([*ref, n, partner_noise, reference_noise], dtype=np.float64).tobytes()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    draws = rng.multinomial(n, ref / ref.sum(), size=NULL_DRAWS).astype(np.float64)
    if partner_noise > 0:
        draws += rng.normal(0.0, np.sqrt(partner_noise), draws.shape)
    values = []
    for draw in draws:
        noisy_ref = ref + rng.normal(0.0, np.sqrt(reference_noise), ref.shape) if reference_noise > 0 else ref
        values.append(population_stability_index(draw, noisy_ref))
    return float(np.quantile(values, quantile))


def shift_summary(
    pooled_features: np.ndarray, pooled_labels: np.ndarray, *, features: Sequence[str], edges: Sequence[Sequence[float]],
    partners: Mapping[str, tuple[np.ndarray, np.ndarray, Mapping[str, float] | None]], withheld: Sequence[str],
    reference: str = "pooled", psi_threshold: float = 0.25, js_threshold: float = 0.2,
    pooled_noise: Mapping[str, float] | None = None, encrypted: bool = False,
) -> dict[str, Any]:
    """The `shift` entry of a round (JSON-ready), from released sums only.

    `pooled_features` [features, bins] and `pooled_labels` [classes]: the round's pooled feature histograms
    and label counts. `partners`: partner -> (its own feature histograms, label counts, noise variance per
    array or None), only partners whose contracts release per-partner statistics; `withheld`: the other
    contributors. `reference`: "pooled" (all contributors), "others" (pooled minus the partner) or a
    partner's name. Each released partner gets, per feature and for the label, PSI and JS distance against
    the reference, flagged above a threshold, and `null_psi_95`: the PSI sampling and DP noise alone
    would reach in 95 % of draws (a PSI below it is not evidence of shift), and `beyond_noise` (the PSI is
    above it; a flag without it may be sampling or DP noise alone): `partners[partner][feature]`,
    the label's row named "(label)"; its records, label prevalence and per-feature proportions sit beside the
    pooled ones (`records`, `label_prevalence.partners`, `features[f].partners`). Under encryption, or when no
    partner releases its own statistics, only the pooled distributions are reported, with a note.
    """
    widths = [len(e) - 1 for e in edges]
    noise = dict(pooled_noise or {})
    summary: dict[str, Any] = {
        "reference": reference, "psi_threshold": psi_threshold, "js_threshold": js_threshold,
        "dp": pooled_noise is not None,
        "features": {name: {"edges": list(map(float, edges[i])), "pooled_counts": pooled_features[i, :widths[i]].tolist(),
                            "pooled_proportions": _proportions(pooled_features[i, :widths[i]]), "partners": {}}
                     for i, name in enumerate(features)},
        "label_prevalence": {"pooled_counts": np.asarray(pooled_labels, dtype=np.float64).tolist(),
                             "pooled": _proportions(pooled_labels), "partners": {}},
        "partners": {}, "records": {}, "withheld": sorted(withheld), "flagged": [],
    }
    if encrypted or not partners:
        why = "the sums were aggregated under encryption" if encrypted else "no partner's contract releases its own statistics"
        summary["note"] = (f"no partner's own feature histograms are known ({why}): shift between partners cannot be "
                           "computed. The pooled feature distributions and label prevalence describe the federation as a "
                           "whole; they can be compared with an external reference or another study's pooled release.")
        return summary
    if reference not in ("pooled", "others") and reference not in partners:
        summary["note"] = (f"the study's reference partner {reference!r} did not release its own statistics (contract, or "
                           "it did not take part): no shift against it can be computed")
        return summary
    for partner, (hist, labels, partner_noise) in sorted(partners.items()):
        own = dict(partner_noise or {})
        if reference == "pooled":
            ref_hist, ref_labels = pooled_features, np.asarray(pooled_labels, dtype=np.float64)
            ref_noise = noise
        elif reference == "others":
            ref_hist, ref_labels = pooled_features - hist, np.asarray(pooled_labels, dtype=np.float64) - labels
            ref_noise = {k: max(noise.get(k, 0.0) - own.get(k, 0.0), 0.0) for k in noise}
        else:
            ref_hist, ref_labels, _ = partners[reference]
            ref_noise = dict(partners[reference][2] or {})
        records = float(np.clip(labels, 0, None).sum())
        rows: dict[str, Any] = {}
        named = [(name, hist[i, :widths[i]], ref_hist[i, :widths[i]], "feature_hist") for i, name in enumerate(features)]
        for name, counts, base, array in [*named, ("(label)", labels, ref_labels, "label_counts")]:
            psi, js = population_stability_index(counts, base), jensen_shannon(counts, base)
            null = null_psi(base, records, partner_noise=own.get(array, 0.0), reference_noise=ref_noise.get(array, 0.0))
            rows[name] = {"psi": psi, "js": js, "flagged": bool(psi > psi_threshold or js > js_threshold),
                          "null_psi_95": null, "beyond_noise": bool(psi > null)}
        summary["partners"][partner] = rows  # partner -> feature (and "(label)") -> PSI, JS, flag, null PSI
        summary["records"][partner] = records
        summary["label_prevalence"]["partners"][partner] = _proportions(labels)
        for i, name in enumerate(features):
            summary["features"][name]["partners"][partner] = _proportions(hist[i, :widths[i]])
        summary["flagged"] += [{"partner": partner, "feature": name} for name, row in rows.items() if row["flagged"]]
    if withheld:
        summary["note"] = (f"{len(withheld)} contributor(s) did not release their own statistics: they are in the pooled "
                           "reference but have no row")
    return summary


# --- a monitoring period against its baseline period --------------------------------------------------------

PERIOD_SHIFT_ALPHA = 0.05  # the tail share below which a period's PSI is beyond sampling and DP noise (as null_psi_95)


def _psi_rows(counts: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`population_stability_index` of each row of `counts` against the same row of `reference`."""
    def distribution(rows: np.ndarray) -> np.ndarray:
        clipped = np.clip(rows, 0, None)
        total = clipped.sum(axis=1, keepdims=True)
        p = np.maximum(np.divide(clipped, total, out=np.zeros_like(clipped), where=total > 0), FLOOR)
        return p / p.sum(axis=1, keepdims=True)
    p, q = distribution(counts), distribution(reference)
    return ((p - q) * np.log(p / q)).sum(axis=1)


def period_shift(current: np.ndarray, baseline: np.ndarray, *, current_noise: float = 0.0, baseline_noise: float = 0.0,
                 psi_threshold: float = 0.25, alpha: float = PERIOD_SHIFT_ALPHA) -> dict[str, float | bool]:
    """One feature's released counts in a monitoring period against the baseline period's: PSI, JS distance,
    and how often sampling and DP noise alone reach that PSI. Null: both periods' records drawn from one
    distribution (the two periods' counts pooled), multinomial sampling of each period's records, plus each
    period's DP noise (variance per cell `current_noise`, `baseline_noise`; 0 without DP). `p_value`: the
    share of null draws at or above the observed PSI ((1 + k)/(draws + 1)); `null_psi_95` its 95th percentile;
    `alert` when the PSI is above `psi_threshold` and `p_value` ≤ `alpha`, so a stable feature alerts with
    probability at most `alpha`. Seeded by the inputs: the same releases always give the same result.
    Post-processing of released sums: no privacy cost."""
    cur = np.asarray(current, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    n_cur, n_base = round(float(np.clip(cur, 0, None).sum())), round(float(np.clip(base, 0, None).sum()))
    if n_cur < 1 or n_base < 1:
        nan = float("nan")
        return {"psi": nan, "js": nan, "p_value": nan, "null_psi_95": nan, "null_sd": nan, "alert": False}
    psi, js = population_stability_index(cur, base), jensen_shannon(cur, base)
    pooled = np.clip(cur, 0, None) + np.clip(base, 0, None)
    key = np.asarray([*cur, *base, current_noise, baseline_noise], dtype=np.float64).tobytes()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(b"period-shift" + key).digest()[:8], "little"))
    q = pooled / pooled.sum()
    draws_cur = rng.multinomial(n_cur, q, size=NULL_DRAWS).astype(np.float64)
    draws_base = rng.multinomial(n_base, q, size=NULL_DRAWS).astype(np.float64)
    if current_noise > 0:
        draws_cur += rng.normal(0.0, np.sqrt(current_noise), draws_cur.shape)
    if baseline_noise > 0:
        draws_base += rng.normal(0.0, np.sqrt(baseline_noise), draws_base.shape)
    null = _psi_rows(draws_cur, draws_base)
    p_value = float((1 + np.count_nonzero(null >= psi)) / (NULL_DRAWS + 1))
    return {"psi": psi, "js": js, "p_value": p_value, "null_psi_95": float(np.quantile(null, 0.95)),
            "null_sd": float(np.std(null)), "alert": bool(psi > psi_threshold and p_value <= alpha)}
