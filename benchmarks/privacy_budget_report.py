"""Tables (Markdown) and plots (PNG) of `benchmarks.privacy_budget`'s JSON result; reads nothing else."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Privacy budget benchmark", "", f"`{result['command']}` — {result['machine']}, {result['total_s']} s.", ""]
    evaluation = result["evaluation"]
    header = ("| partners | score bins | ε per release | noise SD per count, one partner | "
              "accuracy: mean abs error | accuracy: bias (mean error) | accuracy: SD over repeats | "
              "accuracy: mean reported SE | accuracy: share of ±1.96 SE covering the truth | "
              "AUROC: mean abs error | AUROC: bias (mean error) | AUROC: SD over repeats | AUROC: mean reported SE | "
              "AUROC: share of ±1.96 SE covering the truth | mean abs error of the raw noisy sums, not made "
              "consistent (accuracy / AUROC) | ECE: mean abs error where estimable | ECE: repeats not estimable at "
              "this ε | ECE of the raw noisy sums (not debiased): mean abs error |")
    for title, cells in ((f"DP evaluation: error vs ε ({evaluation['score_bins']} bins)", evaluation["grid"]),
                         (f"DP evaluation: score bins ({evaluation['bins_sweep_partners']} partners)", evaluation["bins_sweep"])):
        lines += [f"## {title}", "",
                  f"{evaluation['records']} records (demo hospitals, {evaluation['model']}), "
                  f"{cells[0]['repeats']} repeats per cell, δ = {cells[0]['delta']:g} per release; "
                  "spread = SD of the DP metric over repeats; cover = share of repeats whose ±1.96·SE interval "
                  "holds the non-private value; the last column (a diagnostic, not what Accord reports) is the "
                  "error of the same noisy sums without the coordinator's clamping.", "",
                  header, "|" + "---|" * 18]
        for c in cells:
            a, u = c["accuracy"], c["auroc"]
            lines.append(
                f"| {c['partners']} | {c['score_bins']} | {c['epsilon']:g} | {_fmt(c['noise_std_per_count'])} | "
                + " | ".join(_fmt(m[k]) for m in (a, u) for k in ("mae", "bias", "spread", "mean_se", "coverage_95"))
                + f" | {_fmt(c['unclamped']['accuracy']['mae'])} / {_fmt(c['unclamped']['auroc']['mae'])}"
                + (f" | {_fmt(c['ece']['mae'])} | {c['ece']['undefined']} of {c['repeats']} | "
                   f"{_fmt(c['unclamped']['ece']['mae'])} |" if "ece" in c else " | | | |")
            )
        lines.append("")
    issue = result.get("issue_setting")
    if issue:
        lines += ["## Issue 13's setting: 10 partners of 500 records", "",
                  f"{issue['partners']} partners × {issue['records_per_partner']} records (synthetic scores, balanced "
                  "labels, no subgroups), one binary model, each partner privatizing its own statistics (local noise); "
                  f"{issue['cells'][0]['repeats']} repeats per row. Errors are against the exact AUROC "
                  "(10,000 bins, i.e. per record); target: median AUROC abs error ≤ 0.05 at ε = 1.", "",
                  "| ε per release | score bins | noise SD per count, one partner | exact AUROC | AUROC of the binned sums "
                  "without noise | AUROC: median abs error vs exact | AUROC: 90th percentile abs error vs exact | "
                  "AUROC: share of ±1.96 SE covering the binned AUROC | AUROC: share of ±1.96 SE covering the exact "
                  "AUROC | AUROC: mean reported SE | accuracy: mean abs error | accuracy: share of ±1.96 SE covering "
                  "the truth | ECE: repeats not estimable at this ε |",
                  "|" + "---|" * 13]
        for c in issue["cells"]:
            lines.append(
                f"| {c['epsilon']:g} | {c['score_bins']} | {_fmt(c['noise_std_per_count'])} | {_fmt(c['exact_auroc'])} | "
                f"{_fmt(c['binned_auroc'])} | {_fmt(c['auroc_median_abs_error'])} | {_fmt(c['auroc_p90_abs_error'])} | "
                f"{_fmt(c['auroc_coverage_binned'])} | {_fmt(c['auroc']['coverage_95'])} | {_fmt(c['auroc']['mean_se'])} | "
                f"{_fmt(c['accuracy']['mae'])} | {_fmt(c['accuracy']['coverage_95'])} | "
                f"{c['ece']['undefined']} of {c['repeats']} |")
        lines.append("")
    training = result.get("training")
    if training:
        lines += ["## DP-SGD training on digits (Flower simulation)", "",
                  f"{training['partners']} partners; ε of the DP-SGD releases per partner composed over the rounds "
                  f"at δ = {training['delta']:g} (min / median / max over partners); the report's total also "
                  "counts the study's DP evaluation releases.", "",
                  "| noise multiplier σ | rounds | ε per partner, DP-SGD, PRV (min / median / max) | ε per partner, DP-SGD, "
                  "RDP (min / median / max) | ε the privacy report states, PRV, median partner | exact accuracy of the "
                  "final model | accuracy the study reports ± SE | wall-clock s |",
                  "|---|---|---|---|---|---|---|---|"]
        for run in training["runs"]:
            if "partners" not in run:
                lines.append(f"| {run['noise_multiplier']} | {run['rounds']} | failed (exit {run['exit_code']}) | | | | | |")
                continue
            report = float(np.median([p["report_prv"]["epsilon"] for p in run["partners"].values()]))
            lines.append(
                f"| {run['noise_multiplier']} | {run['rounds']} | "
                + " | ".join(" / ".join(_fmt(v) for v in run[k]) for k in ("dpsgd_prv_min_median_max", "dpsgd_rdp_min_median_max"))
                + f" | {_fmt(report)} | {_fmt(run['exact_accuracy'])} | {_fmt(run['reported_accuracy'])} ± "
                f"{_fmt(run['reported_accuracy_se'])} | {run['wall_s']} |"
            )
        lines.append("")
    lines += ["## RDP vs PRV for the same training", "",
              "| configuration | sample rate q | noise multiplier σ | steps | ε by PRV | ε by RDP | ε RDP / ε PRV | "
              "budget saved by PRV | σ with which PRV gives RDP's ε (ratio to σ) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in result["accountants"]["configurations"]:
        lines.append(
            f"| {row['configuration']} | {_fmt(row['sample_rate'])} | {_fmt(row['noise_multiplier'])} | {row['steps']} | "
            f"{_fmt(row['epsilon_prv'])} | {_fmt(row['epsilon_rdp'])} | {row['rdp_over_prv']:.3f} | "
            f"{row['budget_saved']:.1%} | {_fmt(row['prv_sigma_for_rdp_epsilon'])} ({row['sigma_ratio']:.2f}×) |"
        )
    for row in result["accountants"]["training_runs"]:
        low, mid, high = row["rdp_over_prv_min_median_max"]
        lines.append(f"\nTraining run σ={row['noise_multiplier']}, {row['rounds']} rounds: RDP/PRV per partner "
                     f"{low:.3f} / {mid:.3f} / {high:.3f} (min / median / max).")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    paths = []
    evaluation = result["evaluation"]
    fig, axes = plt.subplots(1, len(evaluation["metrics"]), figsize=(9, 3.6), sharey=True)
    for axis, metric in zip(axes, evaluation["metrics"]):
        for partners in evaluation["partners"]:
            cells = [c for c in evaluation["grid"] if c["partners"] == partners]
            line = axis.plot([c["epsilon"] for c in cells], [c[metric]["mae"] for c in cells], marker="o", label=f"{partners} partners")
            axis.plot([c["epsilon"] for c in cells], [c[metric]["mean_se"] for c in cells], ls=":", color=line[0].get_color())
        axis.set(xscale="log", yscale="log", xlabel="ε per release", title=f"pooled {metric}")
    axes[0].set_ylabel("mean |error| (solid), mean SE (dotted)")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"DP evaluation, {evaluation['records']} records, {evaluation['score_bins']} score bins")
    fig.tight_layout()
    paths.append(out_dir / "privacy_budget_evaluation.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    runs = [r for r in (result.get("training") or {}).get("runs", []) if "partners" in r]
    if runs:
        fig, axis = plt.subplots(figsize=(5, 3.6))
        low, mid, high = np.array([r["dpsgd_prv_min_median_max"] for r in runs]).T
        exact = [r["exact_accuracy"] for r in runs]
        axis.errorbar(mid, exact, xerr=[mid - low, high - mid], marker="o", capsize=3, label="exact (final model)")
        axis.errorbar(mid, [r["reported_accuracy"] for r in runs], yerr=[r["reported_accuracy_se"] or 0 for r in runs],
                      marker="s", ls="--", capsize=3, label="reported by the study (DP)")
        for r, x, y in zip(runs, mid, exact):
            axis.annotate(f"σ={r['noise_multiplier']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
        axis.set(xscale="log", xlabel="ε per partner (DP-SGD, PRV; median, range)", ylabel="pooled accuracy",
                 title=f"DP-SGD on digits, {runs[0]['rounds']} rounds", ylim=(0, 1))
        axis.set_xticks([t for t in (0.5, 1, 2, 5, 10, 20, 50, 100) if low.min() / 1.5 <= t <= high.max() * 1.5])
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.legend(fontsize="small")
        fig.tight_layout()
        paths.append(out_dir / "privacy_budget_training.png")
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)

    rows = result["accountants"]["configurations"]
    fig, axis = plt.subplots(figsize=(9, 3.6))
    bars = axis.barh([r["configuration"] for r in rows], [r["rdp_over_prv"] - 1 for r in rows], left=1.0)
    axis.bar_label(bars, labels=[f"{r['rdp_over_prv']:.3f}" for r in rows], fontsize="small", padding=2)
    axis.set(xlabel="ε(RDP) / ε(PRV), same (q, σ, steps), δ = 1e-5", title="What the PRV accountant saves",
             xlim=(1.0, 1.05 + max(r["rdp_over_prv"] for r in rows) - 1))
    axis.tick_params(axis="y", labelsize="x-small")
    fig.tight_layout()
    paths.append(out_dir / "privacy_budget_accountants.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths
