"""The monitoring part of the report and of the dashboard: per metric, each period's pooled (and per-partner)
value against its baseline, the alerts, and why the schedule stopped.

Everything is read from results.json — its "monitoring" section and, for intervals, the round each period ran
as — so the report, its plots and the dashboard show the same numbers. The section is written by a coordinator
and read here while a study may still be running: a field that is missing or of another type is left out,
never raised on, and no name from it is ever used as a file name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from federated.reporting.formatting import format_estimate, format_p_value, format_value

POOLED = "pooled"  # what the series of the pooled value is called where a partner's name would be
PLOT_PREFIX = "monitoring-"  # the report's timeline files: monitoring-1.png, monitoring-2.png, ...


@dataclass
class Series:
    """One line of a metric's timeline: a model's pooled value, or one partner's, per period."""

    model: str
    partner: str | None
    values: dict[int, float] = field(default_factory=dict)
    intervals: dict[int, tuple[float, float]] = field(default_factory=dict)
    baseline: float | None = None
    alerts: set[int] = field(default_factory=set)
    noisy: set[int] = field(default_factory=set)  # periods whose round released DP estimates

    @property
    def label(self) -> str:
        return f"{self.model} · {self.partner or POOLED}"


@dataclass
class MetricTimeline:
    """A metric over the periods: every series that has a value for it, pooled series first."""

    metric: str
    periods: list[int]
    series: list[Series]
    threshold: dict[str, float] = field(default_factory=dict)  # what the study set: max_drop, alpha

    def value_text(self, series: Series, period: int) -> str:
        """A period's value as the report prints estimates: under DP one clipped to its range's edge reads
        as a bound ('≥ 0.965 (clipped)'), never as an exact 0 or 1."""
        value = series.values.get(period)
        if value is None:
            return format_value(None)
        low_high = series.intervals.get(period)
        interval = {"low": low_high[0], "high": low_high[1]} if low_high else None
        return format_estimate(self.metric, value, noisy=period in series.noisy, interval=interval)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _records(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _period(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _partner(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def periods(monitoring: Any) -> list[dict[str, Any]]:
    """The section's period entries that carry a period number, in the order written."""
    return [entry for entry in _records(_mapping(monitoring).get("periods")) if _period(entry.get("period")) is not None]


def alerts(monitoring: Any) -> list[dict[str, Any]]:
    return _records(_mapping(monitoring).get("alerts"))


def stopped(monitoring: Any) -> dict[str, Any] | None:
    entry = _mapping(monitoring).get("stopped")
    return entry if isinstance(entry, dict) else None


def monitored_metrics(monitoring: Any) -> list[str]:
    """The metrics the study set thresholds for, then any other metric a period compared, in first-seen
    order; when nothing was compared, every metric of the pooled values but the record count."""
    names = [str(metric) for metric in _mapping(_mapping(monitoring).get("thresholds"))]
    compared = [c.get("metric") for entry in periods(monitoring) for c in _records(entry.get("comparisons"))]
    names += [metric for metric in compared if isinstance(metric, str)]
    if not names:
        names = [metric for entry in periods(monitoring) for values in _mapping(entry.get("pooled")).values()
                 for metric in _mapping(values) if metric != "count"]
    return list(dict.fromkeys(names))


def _rounds_by_number(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["round"]: r for r in _records(results.get("rounds")) if _period(r.get("round")) is not None}


def _interval(record: Any) -> tuple[float, float] | None:
    low, high = _number(_mapping(record).get("low")), _number(_mapping(record).get("high"))
    return (low, high) if low is not None and high is not None else None


def timelines(results: dict[str, Any]) -> list[MetricTimeline]:
    """Each monitored metric's timeline. A value comes from the period's `pooled` / `per_partner` entry, else
    from the period's comparison of that series; a series' baseline is the one its comparisons name, else
    its value in the baseline period. Intervals are the round's own (validation, heterogeneity), when
    released; alerts mark the periods the section's alert list names."""
    monitoring = _mapping(results.get("monitoring"))
    rounds = _rounds_by_number(results)
    thresholds = _mapping(monitoring.get("thresholds"))
    out = []
    for metric in monitored_metrics(monitoring):
        threshold = {k: float(v) for k, v in _mapping(thresholds.get(metric)).items() if _number(v) is not None}
        timeline = MetricTimeline(metric, sorted({entry["period"] for entry in periods(monitoring)}), [], threshold)
        _fill(timeline, monitoring, rounds)
        out.append(timeline)
    return out


def _fill(timeline: MetricTimeline, monitoring: dict[str, Any], rounds: dict[int, dict[str, Any]]) -> None:
    metric, found = timeline.metric, dict[tuple[str, str | None], Series]()

    def line(model: str, partner: str | None) -> Series:
        return found.setdefault((model, partner), Series(model, partner))

    def record(model: str, partner: str | None, period: int, values: Any, interval: Any, noisy: bool) -> None:
        if (value := _number(_mapping(values).get(metric))) is not None:
            line(model, partner).values[period] = value
            if noisy:
                line(model, partner).noisy.add(period)
            if (ci := _interval(_mapping(interval).get(f"{metric}_ci"))) is not None:
                line(model, partner).intervals[period] = ci

    for entry in periods(monitoring):
        period = entry["period"]
        round_entry = rounds.get(entry.get("round"), {})  # type: ignore[arg-type]  # any key; a miss is {}
        validation, heterogeneity = _mapping(round_entry.get("validation")), _mapping(round_entry.get("heterogeneity"))
        noisy = _mapping(round_entry.get("standard_errors"))  # models whose estimates carry DP noise
        for model, values in _mapping(entry.get("pooled")).items():
            record(model, None, period, values, validation.get(model), model in noisy)
        for partner, models in _mapping(entry.get("per_partner")).items():
            for model, values in _mapping(models).items():
                rows = _mapping(_mapping(heterogeneity.get(model)).get("partners"))
                record(model, partner, period, values, rows.get(partner), model in noisy)
        for comparison in _records(entry.get("comparisons")):
            compared, where = comparison.get("model"), comparison.get("partner")
            if comparison.get("metric") != metric or not isinstance(compared, str) or not (where is None or isinstance(where, str)):
                continue
            if (value := _number(comparison.get("value"))) is not None:
                line(compared, where).values.setdefault(period, value)
            if (baseline := _number(comparison.get("baseline"))) is not None:
                line(compared, where).baseline = baseline
    for alert in alerts(monitoring):
        alerted, when = alert.get("model"), _period(alert.get("period"))
        if alert.get("metric") == metric and isinstance(alerted, str) and when is not None:
            line(alerted, _partner(alert.get("partner"))).alerts.add(when)
    baseline_period = _period(_mapping(monitoring.get("baseline")).get("period"))
    for series in found.values():
        if series.baseline is None and baseline_period is not None:
            series.baseline = series.values.get(baseline_period)
    ordered = sorted(found.values(), key=lambda s: (s.model, s.partner is not None, s.partner or ""))
    timeline.series = [s for s in ordered if s.values or s.alerts]


def stopped_text(monitoring: Any) -> str | None:
    """'Stopped at period 4 (hospital-b): its privacy budget is spent' — or None when the schedule ran on."""
    entry = stopped(monitoring)
    if entry is None:
        return None
    where = f"period {entry['period']}" if _period(entry.get("period")) is not None else "an unknown period"
    who = f" ({entry['partner']})" if isinstance(entry.get("partner"), str) else ""
    return f"Stopped at {where}{who}: {entry.get('reason') or 'no reason given'}"


ALERT_COLUMNS = ("period", "partner", "model", "metric", "baseline", "value", "difference", "p_value", "threshold", "message")


def alert_cells(alert: dict[str, Any]) -> dict[str, str]:
    """An alert's cells as the report and the dashboard print them (a pooled alert's partner is 'pooled')."""
    cells = {}
    for column in ALERT_COLUMNS:
        value = alert.get(column)
        if column == "partner":
            cells[column] = value if isinstance(value, str) else POOLED
        elif column == "p_value":
            cells[column] = format_p_value(_number(value))
        elif column in ("baseline", "value", "difference", "threshold"):
            cells[column] = format_value(_number(value))
        else:
            cells[column] = "—" if value is None else str(value)
    return cells


def plot_timeline(timeline: MetricTimeline, target: Path | IO[bytes]) -> None:
    """One metric over the periods as a PNG: a line per series (pooled solid, partners dashed), each
    series' baseline as a dotted line of its colour, intervals as bars, alerts as red crosses."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 3.6))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    for index, series in enumerate(timeline.series):
        colour = f"C{index % 10}"
        xs = sorted(series.values)
        ys = [series.values[x] for x in xs]
        # Names come from partners' trails and results: shown as written, never parsed as mathtext.
        axis.plot(xs, ys, marker="o", linestyle="-" if series.partner is None else "--", color=colour,
                  label=series.label.replace("$", r"\$"))
        for x, (low, high) in series.intervals.items():
            axis.plot([x, x], [low, high], color=colour, linewidth=1, alpha=0.6)
        if series.baseline is not None:
            axis.axhline(series.baseline, color=colour, linestyle=":", linewidth=1)
        flagged = [x for x in sorted(series.alerts) if x in series.values]
        if flagged:
            axis.plot(flagged, [series.values[x] for x in flagged], linestyle="none", marker="X", markersize=11,
                      color="#a4161a", zorder=5)
    if timeline.periods:
        axis.set_xticks(timeline.periods)
    metric = timeline.metric.replace("$", r"\$")
    axis.set(xlabel="period", ylabel=metric, title=f"Monitoring — {metric} (dotted: baseline; ✕: alert)")
    axis.grid(alpha=0.3)
    if timeline.series:  # beside the axes: never over a line
        axis.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    figure.savefig(target, dpi=100, format="png")


def plot_file_name(index: int) -> str:
    """The report's file for the index-th timeline (metric names are the coordinator's, never file names)."""
    return f"{PLOT_PREFIX}{index + 1}.png"


def plot_monitoring(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """The report's timeline plots, by metric."""
    plots = {}
    for index, timeline in enumerate(timelines(results)):
        if not timeline.series:
            continue  # no period released a value for this metric
        path = out_dir / plot_file_name(index)
        plot_timeline(timeline, path)
        plots[timeline.metric] = path
    return plots


def monitoring_lines(results: dict[str, Any], plots: dict[str, Path] | None = None) -> list[str]:
    """The report's monitoring section: the schedule, each period's status, each metric's values against its
    baseline, the alerts, and why the schedule stopped."""
    monitoring = results.get("monitoring")
    if not isinstance(monitoring, dict):
        return []
    schedule, baseline = _mapping(monitoring.get("schedule")), _mapping(monitoring.get("baseline"))
    against = (f"period {baseline.get('period')}" if baseline.get("kind") == "first_period"
               else f"reference {baseline.get('reference')}")
    lines = ["", "## Monitoring", "",
             f"Schedule: {schedule.get('kind', '—')}, {schedule.get('periods', '—')} periods; baseline: {against}.", ""]
    if (text := stopped_text(monitoring)) is not None:
        lines += [f"**{text}.**", ""]
    lines += ["| period | round | started (UTC) | status | contributors | alerts |", "| --- | --- | --- | --- | --- | --- |"]
    counts = [a.get("period") for a in alerts(monitoring)]
    for entry in periods(monitoring):
        contributors = ", ".join(str(p) for p in entry.get("contributors") or []) or "—"
        lines.append(f"| {entry['period']} | {entry.get('round', '—')} | {entry.get('started_at', '—')} | "
                     f"{entry.get('status', '—')} | {contributors} | {counts.count(entry['period'])} |")
    for timeline in timelines(results):
        if not timeline.series:
            lines += ["", f"### {timeline.metric}", "", "No period released a value of this metric."]
            continue
        lines += ["", f"### {timeline.metric}", "", "| series | baseline | " + " | ".join(str(p) for p in timeline.periods) + " |",
                  "| --- | --- |" + " --- |" * len(timeline.periods)]
        for series in timeline.series:
            cells = [timeline.value_text(series, p) + (" ⚠" if p in series.alerts else "") for p in timeline.periods]
            lines.append(f"| {series.label} | {format_value(series.baseline)} | " + " | ".join(cells) + " |")
        if plots and timeline.metric in plots:
            lines += ["", f"![monitoring {timeline.metric}]({plots[timeline.metric].name})"]
    lines += ["", "### Alerts", ""]
    if not alerts(monitoring):
        return lines + ["No alert."]
    lines += ["| " + " | ".join(c.replace("_", "-") for c in ALERT_COLUMNS) + " |", "|" + " --- |" * len(ALERT_COLUMNS)]
    for alert in alerts(monitoring):
        row = alert_cells(alert)
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in ALERT_COLUMNS) + " |")
    return lines
