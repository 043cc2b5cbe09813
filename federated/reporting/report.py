"""The study's outputs: `results.json` for machines, `report.md` and PNG plots for people.

Plots are drawn from the pooled histograms only (never from partner-level data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accord.durable import write_durably
from accord.hashing import sha256_file
from federated.evaluation.metrics import class_curve
from federated.evaluation.statistics import EvaluationStatistics
from federated.reporting.formatting import format_value, json_safe
from federated.reporting.validation_section import heterogeneity_lines, plot_forest, validation_lines

_TABLE_METRICS = ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece", "log_loss")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` atomically and durably: never half a file."""
    write_durably(path, text.encode("utf-8"))


def plot_model(name: str, stats: EvaluationStatistics, calibration_bins: int, out_dir: Path) -> dict[str, Path]:
    """Pooled ROC curve and reliability diagram for one model (positive class when binary)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = stats.layout
    classes = [layout.positive_class] if layout.num_classes == 2 else list(range(layout.num_classes))
    paths = {"roc": out_dir / f"roc-{name}.png", "calibration": out_dir / f"calibration-{name}.png"}
    fig, axis = plt.subplots(figsize=(4.5, 4.5))
    for cls in classes:
        curve = class_curve(stats, cls, calibration_bins)
        axis.plot(curve.false_positive_rate, curve.true_positive_rate, label=f"class {cls} (AUROC {curve.auroc:.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"Pooled ROC — {name}")
    axis.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(paths["roc"], dpi=110)
    plt.close(fig)
    fig, axis = plt.subplots(figsize=(4.5, 4.5))
    for cls in classes:
        curve = class_curve(stats, cls, calibration_bins)
        axis.plot(curve.mean_predicted, curve.observed_fraction, marker="o", label=f"class {cls} (ECE {curve.ece:.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="mean predicted probability", ylabel="observed frequency", title=f"Pooled calibration — {name}")
    axis.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(paths["calibration"], dpi=110)
    plt.close(fig)
    return paths


def render_markdown(results: dict[str, Any], plots: dict[str, dict[str, Path]],
                    forest_plots: dict[str, Path] | None = None) -> str:
    """`report.md`: pooled metrics, model x partner matrix, cohort, subgroup gaps, model hashes."""
    lines = [f"# Study `{results['study']}` — evaluation report", ""]
    lines += [f"Status: **{results['status']}**" + (f" — {results['message']}" if results.get("message") else ""), ""]
    lines += ["## Candidate models", "", "| model | SHA-256 |", "| --- | --- |"]
    lines += [f"| {m['name']} | `{m['sha256']}` |" for m in results["models"]]
    final = results.get("final_evaluation") or (results["rounds"][-1] if results["rounds"] else None)
    if results.get("purpose") == "training":
        lines += _training_section(results)
    if final is not None and final.get("pooled"):
        lines += ["", f"## Pooled metrics (round {final['round']}, {len(final['contributors'])} partners)", ""]
        lines += ["| model | " + " | ".join(_TABLE_METRICS) + " |", "| --- |" + " --- |" * len(_TABLE_METRICS)]
        errors = final.get("standard_errors", {})
        for name, metrics in final["pooled"].items():
            se = errors.get(name, {})
            cells = [format_value(metrics.get(k)) + (f" ± {se[k]:.3f}" if k in se and k != "count" else "") for k in _TABLE_METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if errors:
            lines += ["", "± is the standard error caused by the partners' DP noise (parametric bootstrap)."]
        lines += ["", "AUROC comes from binned score histograms; the exact AUROC lies within ±auroc_bound of it.", ""]
        lines += ["## Model × partner matrix (accuracy / AUROC)", ""]
        partners = final["contributors"]
        lines += ["| model | pooled | " + " | ".join(partners) + " |", "| --- | --- |" + " --- |" * len(partners)]
        # Under encryption no partner's own statistics reach the coordinator: every cell is withheld.
        withheld = "withheld (encrypted aggregation)" if final.get("encryption") else "withheld by partner"
        for name, row in final["matrix"].items():
            pooled = final["pooled"][name]
            cells = [
                withheld if row.get(p) is None else f"{format_value(row[p]['accuracy'])} / {format_value(row[p]['auroc'])}"
                for p in partners
            ]
            lines.append(f"| {name} | {format_value(pooled['accuracy'])} / {format_value(pooled['auroc'])} | " + " | ".join(cells) + " |")
        if final["subgroups"]:
            lines += ["", "## Subgroups (pooled)", ""]
            for name, groups in final["subgroups"].items():
                lines += [f"### {name}", "", "| level | count | accuracy | TPR | FPR | selection rate |", "| --- |" + " --- |" * 5]
                for level, entry in groups["levels"].items():
                    keys = ("count", "accuracy", "true_positive_rate", "false_positive_rate", "selection_rate")
                    lines.append(f"| {level} | " + " | ".join(format_value(entry.get(k)) for k in keys) + " |")
                lines += ["", "Gaps (max − min over levels): " + ", ".join(f"{k} {format_value(v)}" for k, v in groups["gaps"].items()), ""]
    if final is not None and final.get("pooled"):
        lines += validation_lines(final)
        lines += heterogeneity_lines(final, forest_plots or {})
    lines += _privacy_section(results)
    lines += ["", "## Cohort per round", "", "| round | contributors | refused | missing | duration (s) |", "| --- | --- | --- | --- | --- |"]
    for entry in results["rounds"]:
        refused = "; ".join(f"{r['partner']}: {r['clause']} — {r['reason']}" for r in entry["refused"]) or "—"
        missing = "; ".join(f"{m['node']}: {m['reason']}" for m in entry["missing"]) or "—"
        lines.append(f"| {entry['round']} | {', '.join(entry['contributors'])} | {refused} | {missing} | {entry['duration_s']} |")
    if plots:
        lines += ["", "## Plots", ""]
        for name, files in plots.items():
            lines += [f"![ROC {name}]({files['roc'].name}) ![calibration {name}]({files['calibration'].name})"]
    lines += ["", f"Audit trail: `{results['trail']}`", ""]
    return "\n".join(lines)


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
    return lines


def _training_section(results: dict[str, Any]) -> list[str]:
    lines = ["", "## Training rounds", "",
             "Pooled metrics in round r are those of the global model the partners received in round r "
             "(the model of round r − 1), measured on their data before local training.", "",
             "| round | contributors | accuracy | log loss | rejected updates | ε per partner (this round) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for entry in results["rounds"]:
        pooled = next(iter(entry.get("pooled", {}).values()), {})
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


def write_outputs(
    out_dir: Path,
    results: dict[str, Any],
    pooled_statistics: dict[str, EvaluationStatistics],
    calibration_bins: int,
) -> dict[str, str]:
    """Write results.json, report.md and plots; return each file's SHA-256 for the trail."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {name: plot_model(name, stats, calibration_bins, out_dir) for name, stats in pooled_statistics.items()}
    final = results.get("final_evaluation") or (results["rounds"][-1] if results.get("rounds") else None) or {}
    forest = {name: path for name, entry in (final.get("heterogeneity") or {}).items()
              if (path := plot_forest(name, entry, out_dir)) is not None}
    write_atomically(out_dir / "results.json", json.dumps(json_safe(results), indent=2, sort_keys=True) + "\n")
    write_atomically(out_dir / "report.md", render_markdown(results, plots, forest))
    files = [out_dir / "results.json", out_dir / "report.md"] + [p for f in plots.values() for p in f.values()]
    files += list(forest.values())
    return {path.name: sha256_file(path) for path in files}
