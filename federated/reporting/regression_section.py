"""The report's part for a regression study (`task = "regression"`): pooled errors with intervals, the
calibration line, the residual histogram (a table and a PNG), subgroup errors and the model × partner
matrix. Everything is read from `results.json`'s round entry, so the report cannot disagree with it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from federated.reporting.formatting import format_count, format_value

# (metric, label, interval key) in the order the table shows them.
REGRESSION_METRICS = (
    ("mae", "MAE", "mae_ci"), ("rmse", "RMSE", "rmse_ci"), ("r2", "R²", "r2_ci"),
    ("mean_error", "mean error (prediction − outcome)", "mean_error_ci"),
    ("calibration_slope", "calibration slope (OLS of outcome on prediction)", "calibration_slope_ci"),
    ("calibration_intercept", "calibration intercept", "calibration_intercept_ci"),
)
CARD_METRICS = ("count", "mae", "rmse", "r2", "mean_error", "calibration_slope", "calibration_intercept")


def is_regression(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("task") == "regression"


def _ci(record: Any) -> str:
    if not isinstance(record, dict) or record.get("low") is None or record.get("high") is None:
        return "—"
    return f"[{format_value(float(record['low']))}, {format_value(float(record['high']))}]"


def _estimate(value: Any, se: Any) -> str:
    text = format_value(value)
    return text + (f" ± {float(se):.3g}" if isinstance(se, (int, float)) and text != "—" else "")


def metric_lines(name: str, pooled: dict[str, Any], summary: dict[str, Any], errors: dict[str, Any]) -> list[str]:
    """The metrics table of one model (estimate, DP standard error, interval and its method)."""
    noisy = bool(errors)
    level = round(100 * float(summary.get("confidence", 0.95)))
    lines = [f"| metric ({level} % intervals) | estimate | interval | method |", "| --- | --- | --- | --- |",
             f"| records | {format_count(pooled.get('count'), noisy=noisy)} | — | — |"]
    for key, label, ci in REGRESSION_METRICS:
        record = summary.get(ci) if ci else None
        method = record.get("method", "") if isinstance(record, dict) else "—"
        lines.append(f"| {label} | {_estimate(pooled.get(key), errors.get(key))} | {_ci(record)} | {method} |")
    return lines


def regression_lines(final: dict[str, Any], plots: dict[str, dict[str, Path]] | None = None) -> list[str]:
    """The report's regression sections for every model of `final` (a round entry of results.json)."""
    lines: list[str] = []
    errors_all = final.get("standard_errors") or {}
    contributors = final.get("contributors") or []
    for name, summary in (final.get("validation") or {}).items():
        if not is_regression(summary):
            continue
        pooled, errors = (final.get("pooled") or {}).get(name) or {}, errors_all.get(name) or {}
        lines += ["", f"## Regression — {name} (round {final.get('round')}, {len(contributors)} partners)", ""]
        value_range = summary.get("value_range")
        if value_range:
            lines += [(f"Outcomes and predictions were clipped to the study's declared range "
                       f"[{float(value_range[0]):g}, {float(value_range[1]):g}]."), ""]
        lines += metric_lines(name, pooled, summary, errors)
        lines += [""] + [f"- {note}" for note in summary.get("notes", [])]
        if errors:
            lines += [("- ± is the standard error caused by the partners' DP noise (parametric bootstrap); the "
                       "intervals add its variance to the sampling variance; MAE, RMSE and counts are clipped at 0, "
                       "R² at 1")]
        histogram = summary.get("residual_histogram") or {}
        edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
        if counts:
            lines += ["", ("Residual histogram (prediction − outcome; the first and last bins also hold residuals "
                           "beyond the edges):"), "", "| residual bin | records |", "| --- | --- |"]
            lines += [f"| [{float(low):g}, {float(high):g}) | "
                      f"{format_count(count, noisy=bool(errors))} |" for low, high, count in zip(edges, edges[1:], counts)]
        groups = ((final.get("subgroups") or {}).get(name) or {})
        if groups.get("levels"):
            lines += ["", "| subgroup | records | MAE | RMSE | mean error |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {level} | {format_count(entry.get('count'), noisy=bool(errors))} | {format_value(entry.get('mae'))} | "
                      f"{format_value(entry.get('rmse'))} | {format_value(entry.get('mean_error'))} |"
                      for level, entry in groups["levels"].items()]
            lines += ["", "Gaps (max − min over levels): " + ", ".join(
                f"{k} {format_value(v)}" for k, v in (groups.get("gaps") or {}).items())]
        row = (final.get("matrix") or {}).get(name) or {}
        if row:
            withheld = "withheld (encrypted aggregation)" if final.get("encryption") else "withheld by partner"
            lines += ["", "| partner | MAE | RMSE | R² |", "| --- | --- | --- | --- |"]
            lines += [f"| {partner} | " + (withheld + " | — | —" if cell is None else
                      f"{format_value(cell.get('mae'))} | {format_value(cell.get('rmse'))} | {format_value(cell.get('r2'))}")
                      + " |" for partner, cell in row.items()]
        for kind, path in (plots or {}).get(name, {}).items():
            lines += ["", f"![{kind} {name}]({path.name})"]
    return lines


def plot_residuals(name: str, summary: dict[str, Any], out_dir: Path, *, noisy: bool = False) -> Path | None:
    """The pooled residual histogram as a PNG, from results.json's entry (None if it has none)."""
    histogram = summary.get("residual_histogram") or {}
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if not counts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out_dir / f"residuals-{name}.png"
    fig, axis = plt.subplots(figsize=(5.5, 3.5))
    widths = [high - low for low, high in itertools.pairwise(edges)]
    axis.bar(edges[:-1], counts, width=widths, align="edge", edgecolor="white")
    axis.axvline(0.0, color="grey", linestyle=":")
    axis.set(xlabel="residual (prediction − outcome)", ylabel="records" + (" (noisy, clipped at 0)" if noisy else ""),
             title=f"Pooled residuals — {name}" + (" (DP)" if noisy else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
