"""The study's outputs: `results.json` for machines, `report.md` and PNG plots for people.

Plots are drawn from the pooled histograms only (never from partner-level data); under DP from the same
consistent sums the tables' estimates come from, with their intervals (one estimate on screen).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from accord.durable import write_durably
from accord.hashing import sha256_file
from federated.evaluation.dp_release import consistent
from federated.evaluation.intervals import Z_95
from federated.evaluation.metrics import ClassCurve, calibration_sums, class_curve
from federated.evaluation.regression import RegressionStatistics
from federated.evaluation.statistics import EvaluationStatistics
from federated.evaluation.validation import ratio_noise_variance
from federated.reporting.formatting import clipped_text, format_count, format_estimate, format_value, json_safe, not_estimable
from federated.reporting.monitoring_section import monitoring_lines, plot_monitoring
from federated.reporting.regression_section import is_regression, plot_residuals, regression_lines
from federated.reporting.results import StudyResults
from federated.reporting.shift_section import shift_lines
from federated.reporting.validation_section import heterogeneity_lines, plot_forest, validation_lines

_TABLE_METRICS = ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece", "log_loss")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` atomically and durably: never half a file."""
    write_durably(path, text.encode("utf-8"))


NOISY_BIN_HALF_WIDTH = 0.25  # a calibration bin whose 95 % half-width exceeds this is not drawn


def _interval_text(name: str, value: float | None, interval: dict[str, Any] | None, *, noisy: bool) -> str:
    """'0.912 [0.85, 0.96]' or, when clipped, '≥ 0.850 (clipped)': the legend reads as the table does."""
    if value is None or not math.isfinite(value):
        return "—"
    clipped = clipped_text(name, value, interval=interval) if noisy else None
    if clipped is not None:
        return clipped
    if interval and interval.get("low") is not None and interval.get("high") is not None:
        return f"{value:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
    return f"{value:.3f}"


def roc_band(curve: ClassCurve, positives: float, bin_noise_variance: float) -> np.ndarray:
    """95 % pointwise half-width of the ROC's true positive rate: sampling (binomial) and, under DP, the
    noise of the bins summed from the top down to each point."""
    tpr = np.clip(curve.true_positive_rate, 0.0, 1.0)
    summed_bins = np.arange(tpr.size)
    variance = tpr * (1 - tpr) / max(positives, 1.0) + summed_bins * bin_noise_variance / max(positives, 1.0) ** 2
    return Z_95 * np.sqrt(variance)


def calibration_points(stats: EvaluationStatistics, cls: int, calibration_bins: int,
                       bin_noise_variance: float = 0.0) -> dict[str, np.ndarray]:
    """The reliability diagram's points in score order: mean predicted, observed fraction, its 95 % half-width
    (sampling and DP noise), and which bins are readable (records > 0, half-width ≤ NOISY_BIN_HALF_WIDTH)."""
    curve = class_curve(stats, cls, calibration_bins)
    _, positives, _ = calibration_sums(stats, cls, calibration_bins)
    counts = curve.bin_counts
    merged = stats.layout.score_bins // calibration_bins
    observed = curve.observed_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        sampling = np.where(counts > 0, observed * (1 - observed) / counts, np.nan)
    noise = np.array([ratio_noise_variance(float(k), float(n - k), merged * bin_noise_variance, merged * bin_noise_variance)
                      for k, n in zip(positives, counts)])
    half = Z_95 * np.sqrt(sampling + noise)
    readable = (counts > 0) & np.isfinite(half) & (half <= NOISY_BIN_HALF_WIDTH)
    return {"mean_predicted": curve.mean_predicted, "observed": observed, "half_width": half,  # in score order
            "readable": readable, "counts": counts}


def figure_data(stats: EvaluationStatistics, calibration_bins: int, *, bin_noise_variance: float | None = None,
                pooled: dict[str, Any] | None = None, validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the ROC and calibration plots draw, per class (the positive class when binary).

    Under DP (`bin_noise_variance`: the summed noise variance of one histogram cell) everything comes from
    `dp_release.consistent` of the released sums, the sums the metrics come from: the ROC curve's area is the
    table's AUROC, and the legends print the table's estimates (`pooled`, `validation`: this model's
    results.json entries) with their intervals. Calibration bins stay in score order.
    """
    noisy = bin_noise_variance is not None
    shown = consistent(stats) if noisy else stats
    v_hist = bin_noise_variance or 0.0
    pooled, validation = pooled or {}, validation or {}
    binary = shown.layout.num_classes == 2
    classes = [shown.layout.positive_class] if binary else list(range(shown.layout.num_classes))
    roc, calibration = [], []
    for cls in classes:
        curve = class_curve(shown, cls, calibration_bins)
        entry = validation if binary else validation.get("per_class_auroc", {}).get(str(cls), {})
        table_auroc = pooled.get("auroc") if binary else entry.get("auroc")
        auroc = table_auroc if table_auroc is not None else curve.auroc
        if noisy and auroc is not None and math.isfinite(auroc):
            auroc = float(np.clip(auroc, 0.0, 1.0))
        roc.append({"class": cls, "false_positive_rate": curve.false_positive_rate, "true_positive_rate": curve.true_positive_rate,
                    "half_width": roc_band(curve, float(shown.histograms(cls)[0].sum()), v_hist), "auroc": auroc,
                    "label": f"class {cls}: AUROC {_interval_text('auroc', auroc, entry.get('auroc_ci'), noisy=noisy)}"})
        ece = pooled.get("ece") if binary and "ece" in pooled else curve.ece
        ece_text = ((not_estimable("ece", validation) if binary else None)
                    or format_estimate('ece', ece, noisy=noisy))
        calibration.append({"class": cls, **calibration_points(shown, cls, calibration_bins, v_hist),
                            "label": f"class {cls} (ECE {ece_text})"})
    return {"noisy": noisy, "roc": roc, "calibration": calibration}


def plot_model(name: str, stats: EvaluationStatistics, calibration_bins: int, out_dir: Path, *,
               bin_noise_variance: float | None = None, pooled: dict[str, Any] | None = None,
               validation: dict[str, Any] | None = None) -> dict[str, Path]:
    """Pooled ROC curve (with a 95 % pointwise band) and reliability diagram (with 95 % error bars; empty
    or too-noisy bins left out and counted in a note) for one model, from `figure_data`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = figure_data(stats, calibration_bins, bin_noise_variance=bin_noise_variance, pooled=pooled, validation=validation)
    suffix = " (DP)" if data["noisy"] else ""
    paths = {"roc": out_dir / f"roc-{name}.png", "calibration": out_dir / f"calibration-{name}.png"}
    fig, axis = plt.subplots(figsize=(4.5, 4.5))
    for entry in data["roc"]:
        fpr, tpr, half = entry["false_positive_rate"], entry["true_positive_rate"], entry["half_width"]
        line, = axis.plot(fpr, tpr, label=entry["label"])
        axis.fill_between(fpr, np.clip(tpr - half, 0, 1), np.clip(tpr + half, 0, 1), color=line.get_color(), alpha=0.15,
                          linewidth=0)
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
             title=f"Pooled ROC — {name}{suffix}")
    axis.legend(loc="lower right", fontsize="small", title="band: 95 % pointwise", title_fontsize="x-small")
    fig.tight_layout()
    fig.savefig(paths["roc"], dpi=110)
    plt.close(fig)
    fig, axis = plt.subplots(figsize=(4.5, 4.5))
    omitted = 0
    for entry in data["calibration"]:
        keep = entry["readable"]
        omitted += int((~keep).sum())
        observed, half = entry["observed"][keep], entry["half_width"][keep]
        below, above = np.minimum(half, observed), np.minimum(half, 1 - observed)  # the bars stay inside [0, 1]
        axis.errorbar(entry["mean_predicted"][keep], observed, yerr=np.vstack([below, above]),
                      marker="o", capsize=2, label=entry["label"])
    if omitted:
        axis.text(0.98, 0.02, f"{omitted} bin(s) not drawn: empty or too noisy\n(95 % half-width > {NOISY_BIN_HALF_WIDTH})",
                  transform=axis.transAxes, ha="right", va="bottom", fontsize="x-small")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="mean predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(-0.02, 1.02),
             title=f"Pooled calibration — {name}{suffix}")
    axis.legend(loc="upper left", fontsize="small", title="bars: 95 % interval", title_fontsize="x-small")
    fig.tight_layout()
    fig.savefig(paths["calibration"], dpi=110)
    plt.close(fig)
    return paths


def render_markdown(results: dict[str, Any], plots: dict[str, dict[str, Path]],
                    forest_plots: dict[str, Path] | None = None, monitoring_plots: dict[str, Path] | None = None) -> str:
    """`report.md`: pooled metrics, model x partner matrix, cohort, subgroup gaps, model hashes."""
    lines = [f"# Study `{results['study']}` — evaluation report", ""]
    lines += [f"Status: **{results['status']}**" + (f" — {results['message']}" if results.get("message") else ""), ""]
    lines += ["## Candidate models", "", "| model | SHA-256 |", "| --- | --- |"]
    lines += [f"| {m['name']} | `{m['sha256']}` |" for m in results["models"]]
    lines += monitoring_lines(results, monitoring_plots)  # a monitoring study's timeline and alerts come first
    final = results.get("final_evaluation") or (results["rounds"][-1] if results["rounds"] else None)
    if results.get("purpose") == "training":
        lines += _training_section(results)
    regression = results.get("task") == "regression"
    if regression and final is not None and final.get("pooled"):
        lines += regression_lines(final, plots)
    if not regression and final is not None and final.get("pooled"):
        lines += ["", f"## Pooled metrics (round {final['round']}, {len(final['contributors'])} partners)", ""]
        lines += ["| model | " + " | ".join(_TABLE_METRICS) + " |", "| --- |" + " --- |" * len(_TABLE_METRICS)]
        errors = final.get("standard_errors", {})
        for name, metrics in final["pooled"].items():
            se, noisy = errors.get(name, {}), name in errors
            intervals = final.get("validation", {}).get(name, {})
            cells = [not_estimable(k, intervals) or
                     format_estimate(k, metrics.get(k), noisy=noisy, se=se.get(k) if k != "count" else None,
                                     interval=intervals.get(f"{k}_ci")) for k in _TABLE_METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if errors:
            lines += ["", "± is the standard error caused by the partners' DP noise (parametric bootstrap). Under DP, "
                      "counts are noisy sums (≈, rounded), AUROC and the plots come from the score histograms made "
                      "consistent (non-negative, each summing to its noisy total), and a metric clipped to the edge of "
                      "its range is shown as a bound (its interval's other end), not as an exact 0 or 1."]
        lines += ["", "AUROC comes from binned score histograms; the exact AUROC lies within ±auroc_bound of it.", ""]
        lines += ["## Model × partner matrix (accuracy / AUROC)", ""]
        partners = final["contributors"]
        lines += ["| model | pooled | " + " | ".join(partners) + " |", "| --- | --- |" + " --- |" * len(partners)]
        # Under encryption no partner's own statistics reach the coordinator: every cell is withheld.
        withheld = "withheld (encrypted aggregation)" if final.get("encryption") else "withheld by partner"
        for name, row in final["matrix"].items():
            pooled, noisy = final["pooled"][name], name in errors
            cells = [
                withheld if row.get(p) is None else
                f"{format_estimate('accuracy', row[p]['accuracy'], noisy=noisy)} / {format_estimate('auroc', row[p]['auroc'], noisy=noisy)}"
                for p in partners
            ]
            lines.append(f"| {name} | {format_estimate('accuracy', pooled['accuracy'], noisy=noisy)} / "
                         f"{format_estimate('auroc', pooled['auroc'], noisy=noisy)} | " + " | ".join(cells) + " |")
        if final["subgroups"]:
            lines += ["", "## Subgroups (pooled)", ""]
            for name, groups in final["subgroups"].items():
                lines += [f"### {name}", "", "| level | count | accuracy | TPR | FPR | selection rate |", "| --- |" + " --- |" * 5]
                for level, entry in groups["levels"].items():
                    keys = ("accuracy", "true_positive_rate", "false_positive_rate", "selection_rate")
                    noisy = name in errors
                    lines.append(f"| {level} | {format_count(entry.get('count'), noisy=noisy)} | "
                                 + " | ".join(format_estimate(k, entry.get(k), noisy=noisy) for k in keys) + " |")
                lines += ["", "Gaps (max − min over levels): " + ", ".join(f"{k} {format_value(v)}" for k, v in groups["gaps"].items()), ""]
    if not regression and final is not None and final.get("pooled"):
        lines += validation_lines(final)
        lines += heterogeneity_lines(final, forest_plots or {})
        lines += shift_lines(final)
    lines += _privacy_section(results)
    lines += ["", "## Cohort per round", "", "| round | contributors | refused | missing | duration (s) |", "| --- | --- | --- | --- | --- |"]
    for entry in results["rounds"]:
        refused = "; ".join(f"{r['partner']}: {r['clause']} — {r['reason']}" for r in entry["refused"]) or "—"
        missing = "; ".join(f"{m['node']}: {m['reason']}" for m in entry["missing"]) or "—"
        lines.append(f"| {entry['round']} | {', '.join(entry['contributors'])} | {refused} | {missing} | {entry['duration_s']} |")
    lines += _absent_lines(results)
    if plots and not regression:
        lines += ["", "## Plots", ""]
        for name, files in plots.items():
            lines += [f"![ROC {name}]({files['roc'].name}) ![calibration {name}]({files['calibration'].name})"]
    lines += ["", f"Audit trail: `{results['trail']}`", ""]
    return "\n".join(lines)


def _absent_lines(results: dict[str, Any]) -> list[str]:
    """Partners the study expected that never answered, and nodes that joined after it started."""
    lines = []
    if results.get("expected_partners_missing"):
        lines += ["", f"Expected but never answered: {', '.join(results['expected_partners_missing'])}."]
    for late in results.get("late_partners", []):
        before = late.get("before_round")
        if before is None:
            when = "in no round's results (it joined after the last round)"
        elif results.get("purpose") == "training" and before > len(results["rounds"]):
            when = "took part in the final evaluation only"
        else:
            when = f"took part from round {before}"
        lines += ["", f"Node {late['node']} joined after the study started: {when}."]
    return lines


def _privacy_section(results: dict[str, Any]) -> list[str]:
    report = results.get("privacy") or {}
    if not report:
        return ["", "## Privacy", "", "Differential privacy was off in this study: no noise was added, no ε was spent."]
    lines = ["", "## Privacy", "",
             "ε per partner per release (neighbouring relation: add/remove one record), and in total by basic "
             "composition (what partners' ledgers count) and by the PRV accountant.", "",
             "| partner | releases (round: ε) | δ per release | total ε (basic) | total ε (PRV) | total δ |",
             "| --- | --- | --- | --- | --- | --- |"]
    for partner, entry in report.items():
        releases = ", ".join(f"{r['round']}: {r['epsilon']:.3g}" for r in entry["releases"])
        deltas = ", ".join(sorted({f"{r['delta']:.0e}" for r in entry["releases"]}))
        lines.append(f"| {partner} | {releases} | {deltas} | {entry['basic_composition']['epsilon']:.4g} | "
                     f"{entry['prv_composition']['epsilon']:.4g} | {entry['basic_composition']['delta']:.1e} |")
    return lines + _distributed_noise_lines(report)


def _distributed_noise_lines(report: dict[str, Any]) -> list[str]:
    """Partners that added only a share of the noise (distributed noise): both guarantees, side by side."""
    shared = {partner: entry for partner, entry in report.items() if entry.get("own_share")}
    if not shared:
        return []
    lines = ["", "Distributed noise: these partners added only a share of each release's noise inside the encrypted "
             "sum. The totals above hold if at least t of the n contributors of each such release were honest; on "
             "their own noise alone (whatever the others do) the totals are larger:", "",
             "| partner | assumption (round: t of n honest) | total ε alone (basic) | total ε alone (PRV) |",
             "| --- | --- | --- | --- |"]
    for partner, entry in shared.items():
        assumed = ", ".join(f"{r['round']}: {r['honest_required']} of {r['cohort']}" for r in entry["assumption"]["releases"])
        alone = entry["own_share"]
        lines.append(f"| {partner} | {assumed} | {alone['basic_composition']['epsilon']:.4g} | "
                     f"{alone['prv_composition']['epsilon']:.4g} |")
    return lines


def _training_section(results: dict[str, Any]) -> list[str]:
    lines = ["", "## Training rounds", "",
             "Pooled metrics in round r are those of the global model the partners received in round r "
             "(the model of round r − 1), measured on their data before local training.", "",
             "| round | contributors | accuracy | log loss | rejected updates | ε per partner (this round) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for entry in results["rounds"]:
        pooled: dict[str, Any] = next(iter(entry.get("pooled", {}).values()), {})
        rejected = "; ".join(f"{r['partner']}: {r['reason']}" for r in entry.get("rejected", [])) or "—"
        spent = ", ".join(f"{p} {format_value(v['epsilon'])}" for p, v in entry.get("privacy", {}).items()) or "DP off"
        lines.append(f"| {entry['round']} | {', '.join(entry['contributors'])} | {format_value(pooled.get('accuracy'))} | "
                     f"{format_value(pooled.get('log_loss'))} | {rejected} | {spent} |")
    lines += ["", "## Model lineage", "", "| round | SHA-256 (weights) | parent | contributors | file |", "| --- | --- | --- | --- | --- |"]
    for entry in results.get("lineage", []):
        parent = entry["parent_sha256"][:16] + "…" if entry["parent_sha256"] else "— (initial)"
        lines.append(f"| {entry['round']} | `{entry['sha256'][:16]}…` | {parent} | {', '.join(entry['contributors']) or '—'} | "
                     f"{Path(entry['file']).name} |")
    return lines


def bin_noise_variance(entry: dict[str, Any]) -> float | None:
    """The summed DP noise variance of one histogram cell in a round's entry (each partner's σ², unit scale),
    or None when no partner added noise."""
    noise = [record["sigma"] for record in (entry.get("privacy") or {}).values() if record and "sigma" in record]
    return float(sum(sigma * sigma for sigma in noise)) if noise else None


def write_outputs(
    out_dir: Path,
    study_results: StudyResults | Mapping[str, Any],
    pooled_statistics: Mapping[str, EvaluationStatistics | RegressionStatistics],
    calibration_bins: int,
) -> dict[str, str]:
    """Write results.json, report.md and plots; return each file's SHA-256 for the trail.

    The document is validated as it is written (`ResultsError` naming the field that does not fit): what
    results.json holds always reads back as `StudyResults`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = study_results.document() if isinstance(study_results, StudyResults) else dict(study_results)
    results = StudyResults.parse(document, source=str(out_dir / "results.json")).document()
    final = results.get("final_evaluation") or (results["rounds"][-1] if results.get("rounds") else None) or {}
    v_hist = bin_noise_variance(final)
    plots = {name: plot_model(name, stats, calibration_bins, out_dir, bin_noise_variance=v_hist,
                              pooled=(final.get("pooled") or {}).get(name), validation=(final.get("validation") or {}).get(name))
             for name, stats in pooled_statistics.items() if isinstance(stats, EvaluationStatistics)}
    for name, summary in (final.get("validation") or {}).items():  # a regression study's residual histograms
        if is_regression(summary) and (path := plot_residuals(name, summary, out_dir, noisy=v_hist is not None)):
            plots[name] = {"residuals": path}
    forest = {name: path for name, entry in (final.get("heterogeneity") or {}).items()
              if (path := plot_forest(name, entry, out_dir)) is not None}
    write_atomically(out_dir / "results.json", json.dumps(json_safe(results), indent=2, sort_keys=True) + "\n")
    monitoring = plot_monitoring(results, out_dir)  # {} unless results hold a monitoring section
    write_atomically(out_dir / "report.md", render_markdown(results, plots, forest, monitoring))
    files = [out_dir / "results.json", out_dir / "report.md"] + [p for f in plots.values() for p in f.values()]
    files += list(forest.values()) + list(monitoring.values())
    return {path.name: sha256_file(path) for path in files}
