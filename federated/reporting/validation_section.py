"""The validation part of the report: intervals, operating points, calibration, decision curve, and
heterogeneity across partners with a forest plot. Everything is read from `results.json`'s round entry
(the same numbers a machine reads), so the report and the plots cannot disagree with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federated.reporting.formatting import format_estimate, format_value, not_estimable


def _ci(record: dict[str, Any] | None) -> str:
    if not record or record.get("low") is None or record.get("high") is None:
        return "—"
    return f"[{format_value(float(record['low']))}, {format_value(float(record['high']))}]"


def _rate(name: str, value: Any, interval: dict[str, Any] | None, *, noisy: bool) -> str:
    """A rate or AUROC; under DP one at the edge of [0, 1] reads as a bound, never as an exact 0 or 1."""
    return format_estimate(name if name in ("accuracy", "auroc") else "precision", value, noisy=noisy, interval=interval)


def validation_lines(final: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, summary in (final.get("validation") or {}).items():
        pooled = final.get("pooled", {}).get(name, {})
        noisy = bool(final.get("standard_errors", {}).get(name))
        level = int(round(100 * summary.get("confidence", 0.95)))
        lines += ["", f"## Validation — {name} ({level} % intervals)", "",
                  "| metric | estimate | interval | method |", "| --- | --- | --- | --- |"]
        lines.append(f"| accuracy | {_rate('accuracy', pooled.get('accuracy'), summary.get('accuracy_ci'), noisy=noisy)} | "
                     f"{_ci(summary.get('accuracy_ci'))} | "
                     f"{summary.get('accuracy_ci', {}).get('method', '')} |")
        for metric, label in (("brier", "Brier score"), ("log_loss", "log loss")):
            if f"{metric}_ci" in summary:  # mean per-record loss: normal interval from the sums of squares
                interval = summary[f"{metric}_ci"]
                lines.append(f"| {label} | {format_estimate(metric, pooled.get(metric), noisy=noisy, interval=interval)} | "
                             f"{_ci(interval)} | {interval.get('method', '')} |")
        if not_estimable("ece", summary):  # DP noise swamps it: said, not shown as a number
            lines.append(f"| ECE | {not_estimable('ece', summary)} | — | {summary['ece_not_estimable']} |")
        if "auroc_ci" in summary:
            lines.append(f"| AUROC (binned) | {_rate('auroc', pooled.get('auroc'), summary['auroc_ci'], noisy=noisy)} | "
                         f"{_ci(summary['auroc_ci'])} | "
                         f"{summary['auroc_ci'].get('method', '')} |")
            lines.append(f"| AUROC (exact, within the binning bound) | — | {_ci(summary['auroc_ci_with_binning'])} | "
                         "the interval widened by auroc_bound |")
            point = summary["at_study_threshold"]
            for metric in ("sensitivity", "specificity", "ppv", "npv"):
                lines.append(f"| {metric} at {point['threshold']:g} | "
                             f"{_rate(metric, point[metric], point[f'{metric}_ci'], noisy=noisy)} | "
                             f"{_ci(point[f'{metric}_ci'])} | {point[f'{metric}_ci'].get('method', '')} |")
            lines += [f"| average precision | {format_value(summary['average_precision'])} | — | binned PR curve |",
                      f"| calibration-in-the-large (observed − predicted) | {format_value(summary['calibration_in_the_large'])} | — | exact |",
                      f"| calibration slope | {format_value(summary['calibration_slope'])} | — | binned logistic recalibration |",
                      f"| calibration intercept | {format_value(summary['calibration_intercept'])} | — | binned logistic recalibration |"]
            rows = summary.get("at_thresholds", [])
            if rows:
                lines += ["", "| threshold (bin edge) | sensitivity | specificity | PPV | NPV |", "| --- | --- | --- | --- | --- |"]
                lines += [f"| {r['threshold_used']:g} | " + " | ".join(
                    f"{format_value(r[m])} {_ci(r[f'{m}_ci'])}" for m in ("sensitivity", "specificity", "ppv", "npv")) + " |"
                    for r in rows]
            targets = summary.get("sensitivity_at_specificity", []) + summary.get("specificity_at_sensitivity", [])
            if targets:
                lines += ["", "| target | sensitivity | specificity | threshold (bin edge) |", "| --- | --- | --- | --- |"]
                for t in targets:
                    target = (f"specificity ≥ {t['target_specificity']:g}" if "target_specificity" in t
                              else f"sensitivity ≥ {t['target_sensitivity']:g}")
                    lines.append(f"| {target} | {format_value(t['sensitivity'])} | {format_value(t['specificity'])} | "
                                 f"{format_value(t['threshold_used'])} |")
            curve = summary.get("net_benefit", [])
            if curve:
                lines += ["", "| threshold probability | net benefit (model) | net benefit (treat all) |", "| --- | --- | --- |"]
                lines += [f"| {r['threshold']:g} | {format_value(r['net_benefit'])} | {format_value(r['treat_all'])} |" for r in curve]
        else:
            lines += ["", "| class | AUROC | interval |", "| --- | --- | --- |"]
            lines += [f"| {cls} | {format_value(entry['auroc'])} | {_ci(entry['auroc_ci'])} |"
                      for cls, entry in summary.get("per_class_auroc", {}).items()]
    return lines


def heterogeneity_lines(final: dict[str, Any], plots: dict[str, Path]) -> list[str]:
    lines: list[str] = []
    for name, entry in (final.get("heterogeneity") or {}).items():
        lines += ["", f"## Heterogeneity across partners — {name}", ""]
        if not entry.get("partners"):
            lines.append(entry.get("note", "no per-partner estimates were released"))
            continue
        lines += ["| partner | records | accuracy | interval | AUROC | interval |", "| --- | --- | --- | --- | --- | --- |"]
        for partner, row in entry["partners"].items():
            lines.append(f"| {partner} | {format_value(row['count'])} | {format_value(row['accuracy'])} | "
                         f"{_ci(row['accuracy_ci'])} | {format_value(row.get('auroc'))} | {_ci(row.get('auroc_ci'))} |")
        for metric, pooled in entry.get("random_effects", {}).items():
            lines.append("")
            lines.append(f"Random effects ({metric}, DerSimonian–Laird on the logit scale, {pooled['partners']} partners): "
                         f"{format_value(pooled['estimate'])} [{format_value(pooled['ci_low'])}, {format_value(pooled['ci_high'])}], "
                         f"τ² {format_value(pooled['tau2_logit'])}, I² {format_value(pooled['i2'])}, prediction interval for a new "
                         f"site [{format_value(pooled['prediction_low'])}, {format_value(pooled['prediction_high'])}].")
        if name in plots:
            lines += ["", f"![forest plot {name}]({plots[name].name})"]
    return lines


def plot_forest(name: str, entry: dict[str, Any], out_dir: Path) -> Path | None:
    """Forest plot of per-partner AUROC (accuracy if no AUROC) with intervals and the random-effects diamond."""
    partners = entry.get("partners") or {}
    if not partners:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "auroc" if all(row.get("auroc") is not None for row in partners.values()) else "accuracy"
    names = list(partners)
    fig, axis = plt.subplots(figsize=(5.5, 1.2 + 0.45 * (len(names) + 1)))
    for index, partner in enumerate(names):
        row = partners[partner]
        ci = row.get(f"{metric}_ci") or {}
        if ci.get("low") is not None:
            axis.plot([ci["low"], ci["high"]], [index, index], color="black")
        axis.plot([row[metric]], [index], marker="s", color="black")
    labels = names
    pooled = (entry.get("random_effects") or {}).get(metric)
    if pooled is not None:
        y = len(names)
        axis.fill([pooled["ci_low"], pooled["estimate"], pooled["ci_high"], pooled["estimate"]],
                  [y, y + 0.25, y, y - 0.25], color="tab:blue")
        labels = names + ["random effects"]
    axis.set_yticks(range(len(labels)), labels)
    axis.invert_yaxis()
    axis.set(xlabel=f"{metric} (95 % interval)", title=f"Per-partner {metric} — {name}")
    fig.tight_layout()
    path = out_dir / f"forest-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
