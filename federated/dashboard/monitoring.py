"""A monitoring study as the dashboard shows it: the timeline per metric, the alerts, the stop, and the
timeline charts — drawn by the report's own `plot_timeline` from results.json, on request, so that a study
still running shows its latest period (the report draws the same charts when it is written).

Alerts come from results.json's monitoring section; before it exists, from the trail's `monitoring_alert`
entries (the coordinator writes each alert there as it happens).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from federated.dashboard.studies import StudyView
from federated.reporting.monitoring_section import (
    ALERT_COLUMNS,
    MetricTimeline,
    alert_cells,
    alerts,
    periods,
    plot_timeline,
    stopped_text,
    timelines,
)

ALERT_EVENT = "monitoring_alert"


@dataclass
class MonitoringView:
    """What the study page and the studies list show of a monitoring study."""

    periods: list[dict[str, Any]] = field(default_factory=list)
    timelines: list[MetricTimeline] = field(default_factory=list)
    alerts: list[dict[str, str]] = field(default_factory=list)  # formatted cells, ALERT_COLUMNS
    alerts_source: str = "results.json"
    stopped: str | None = None
    schedule: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def alert_periods(self) -> dict[str, int]:
        """Alerts per period (as printed), for the periods table."""
        counts: dict[str, int] = {}
        for alert in self.alerts:
            counts[alert["period"]] = counts.get(alert["period"], 0) + 1
        return counts


def is_monitoring(view: StudyView) -> bool:
    results = view.results or {}
    return (results.get("purpose") == "monitoring" or isinstance(results.get("monitoring"), dict)
            or any(e.get("kind") == ALERT_EVENT for e in view.entries))


def load_monitoring(view: StudyView) -> MonitoringView | None:
    """The study's monitoring view, or None when it is no monitoring study."""
    if not is_monitoring(view):
        return None
    results = view.results or {}
    section = results.get("monitoring")
    shown = MonitoringView()
    if isinstance(section, dict):
        shown.periods = periods(section)
        shown.timelines = timelines(results)
        shown.alerts = [alert_cells(a) for a in alerts(section)]
        shown.stopped = stopped_text(section)
        shown.schedule = section["schedule"] if isinstance(section.get("schedule"), dict) else {}
        shown.baseline = section["baseline"] if isinstance(section.get("baseline"), dict) else {}
    else:
        shown.alerts = [alert_cells(e.get("details") or {}) for e in view.entries if e.get("kind") == ALERT_EVENT]
        shown.alerts_source = "the coordinator's trail (no results.json monitoring section yet)"
    return shown


_drawing = threading.Lock()  # matplotlib's font and text caches are shared between threads


@lru_cache(maxsize=64)
def _chart(results_path: str, _mtime_ns: int, _size: int, index: int) -> bytes | None:
    import json

    try:
        results = json.loads(Path(results_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    drawn = timelines(results) if isinstance(results, dict) else []
    if not 0 <= index < len(drawn) or not drawn[index].series:
        return None
    buffer = io.BytesIO()
    with _drawing:
        plot_timeline(drawn[index], buffer)
    return buffer.getvalue()


def timeline_chart(view: StudyView, index: int) -> bytes | None:
    """The PNG of the study's index-th metric timeline, drawn from results.json as it is now (cached while
    the file is unchanged); None when there is no such timeline."""
    path = view.path / "results.json"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _chart(str(path), stat.st_mtime_ns, stat.st_size, index)


__all__ = ["ALERT_COLUMNS", "MonitoringView", "is_monitoring", "load_monitoring", "timeline_chart"]
