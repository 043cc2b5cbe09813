"""Monitoring studies on the coordinator: one evaluation round per period, each compared with a baseline.

A monitoring study (`purpose = "monitoring"`, `federated.study.MonitoringSettings`) re-evaluates deployed
models at the partners on a schedule (every `interval_s`, or one period per data snapshot the partners
declare). Each period's pooled metrics, and each partner's where its contract allows per-partner release,
are compared with the baseline (the first period, or an earlier study's `monitoring-baseline.json`) by
`federated.evaluation.drift`, whose tests count sampling and the partners' DP noise. A comparison beyond
the study's threshold is an alert: a "monitoring_alert" trail entry, a JSON line in `alert_file`, an HTTP
POST to `webhook_url`. A sink that fails is logged in the trail; it never stops the study.

Every period is a release each partner's ledger charges. A partner that refuses a period because its
budget or its contract's monitoring terms are spent ends the study cleanly (`results["monitoring"]["stopped"]`);
so does a period whose snapshot a partner has not declared yet (the study is then left unsealed, to resume).
The schedule's state (periods done, the next round number, the baseline) is written durably under the
study's output folder after every period: a restarted study resumes at the next period and never sends
a round number twice. Results follow the shape agreed with the dashboard (/tmp/work/monitoring_schema.md,
copied in docs/monitoring.md).

This module must never send anything but evaluation tasks, and never release a partner's own metrics
unless its reply says its contract allows per-partner release.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from accord.durable import write_durably
from federated.audit import AuditTrail
from federated.errors import ConfigError
from federated.evaluation.drift import Estimate, compare, metric_estimates
from federated.evaluation.shift import period_shift
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.evaluation import ModelRef, TaskSpec
from federated.messages.study_tasks import monitoring_spec
from federated.reporting.results import RoundSummary
from federated.runtime.runs import output_dir_of
from federated.server.pooling import RoundOutcome
from federated.server.rounds import run_round
from federated.study import MonitoringSettings, ShiftSettings, Study

if TYPE_CHECKING:
    from federated.server.runner import StudyRunner

STATE_NAME = "monitoring-state.json"
BASELINE_NAME = "monitoring-baseline.json"
ALERT_EVENT = "monitoring_alert"
# Refusals that mean a partner will not pay for more periods: the study stops rather than go on without it.
BUDGET_CLAUSES = frozenset({"privacy", "monitoring.max_periods", "monitoring.max_epsilon_per_period"})
SNAPSHOT_CLAUSE = "monitoring.snapshot"
POOLED = "pooled"

RunPeriod = Callable[[TaskSpec], RoundOutcome]


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# --- the schedule's durable state -------------------------------------------------------------------------


@dataclass
class MonitoringState:
    """What a restart needs: the periods done, the next round number, the baseline, when the last period began."""

    path: Path
    study: str
    study_sha256: str
    next_round: int = 1
    last_started: float | None = None  # epoch seconds
    periods: list[dict[str, Any]] | None = None
    alerts: list[dict[str, Any]] | None = None
    baseline: dict[str, Any] | None = None  # see `estimates_record`
    shift_baseline: dict[str, Any] | None = None  # studies with [shift]: see `period_histograms`

    @classmethod
    def load(cls, path: Path, *, study: str, study_sha256: str) -> MonitoringState:
        """The state at `path`, or a fresh one; `ConfigError` if it belongs to another study or study file."""
        if not path.is_file():
            return cls(path, study, study_sha256, periods=[], alerts=[])
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            state = cls(path, str(document["study"]), str(document["study_sha256"]), int(document["next_round"]),
                        document.get("last_started"), list(document["periods"]), list(document["alerts"]),
                        document.get("baseline"), document.get("shift_baseline"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a monitoring state file ({type(exc).__name__}: {exc})") from None
        if state.study != study or state.study_sha256 != study_sha256:
            raise ConfigError(f"{path}: holds the state of study {state.study!r} (study file SHA-256 {state.study_sha256}); "
                              f"this is {study!r} ({study_sha256}): a changed study needs a new id or output_dir")
        return state

    def save(self) -> None:
        document = {"study": self.study, "study_sha256": self.study_sha256, "next_round": self.next_round,
                    "last_started": self.last_started, "periods": self.periods, "alerts": self.alerts,
                    "baseline": self.baseline, "shift_baseline": self.shift_baseline}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, json.dumps(document, indent=1, sort_keys=True, allow_nan=False).encode("utf-8"))

    @property
    def done(self) -> list[int]:
        return [int(record["period"]) for record in self.periods or []]


def state_folder(study: Study) -> Path:
    """The study's own output folder (above the run folders): the state outlives each run."""
    return output_dir_of(study.output_dir)


# --- estimates and the baseline ---------------------------------------------------------------------------

Estimates = dict[str, dict[str, dict[str, Estimate]]]  # model -> "pooled" | partner -> metric -> estimate


def period_estimates(outcome: RoundOutcome, calibration_bins: int) -> Estimates:
    """Every model's pooled estimates, and each partner's whose contract allows per-partner release."""
    estimates: Estimates = {}
    for model, pooled in outcome.pooled_statistics.items():
        if not isinstance(pooled, EvaluationStatistics):
            continue
        rows = {POOLED: metric_estimates(pooled, calibration_bins=calibration_bins,
                                         noise_variance=outcome.noise_variance.get(model))}
        for partner, (stats, noise) in outcome.released.get(model, {}).items():
            rows[partner] = metric_estimates(stats, calibration_bins=calibration_bins, noise_variance=noise)
        estimates[model] = rows
    return estimates


def estimates_record(estimates: Estimates) -> dict[str, Any]:
    return {model: {who: {metric: {"value": _finite(e.value), "variance": _finite(e.variance)} for metric, e in row.items()}
                    for who, row in rows.items()} for model, rows in estimates.items()}


def estimates_from_record(record: Any, *, source: str) -> Estimates:
    """A baseline as `estimates_record` wrote it; `ConfigError` naming the file and the field."""
    if not isinstance(record, dict) or not record:
        raise ConfigError(f"{source}: models: expected a table of models")
    estimates: Estimates = {}
    for model, rows in record.items():
        if not isinstance(rows, dict):
            raise ConfigError(f"{source}: models.{model}: expected a table of 'pooled' and partners")
        estimates[model] = {}
        for who, metrics in rows.items():
            if not isinstance(metrics, dict):
                raise ConfigError(f"{source}: models.{model}.{who}: expected a table of metrics")
            estimates[model][who] = {}
            for metric, entry in metrics.items():
                try:
                    value, variance = entry["value"], entry["variance"]
                    estimates[model][who][metric] = Estimate(
                        float("nan") if value is None else float(value), float("nan") if variance is None else float(variance))
                except (TypeError, KeyError, ValueError):
                    raise ConfigError(f"{source}: models.{model}.{who}.{metric}: expected {{value, variance}} numbers") from None
    return estimates


def load_reference(path: Path) -> Estimates:
    """An earlier monitoring study's `monitoring-baseline.json` (the study's `reference`)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the monitoring reference: {exc}") from None
    if not isinstance(document, dict) or "models" not in document:
        raise ConfigError(f"{path}: models: missing (a monitoring-baseline.json written by a monitoring study)")
    return estimates_from_record(document["models"], source=str(path))


# --- comparisons and alerts -------------------------------------------------------------------------------


def period_comparisons(period: int, current: Estimates, baseline: Estimates, settings: MonitoringSettings) -> list[dict[str, Any]]:
    """Every thresholded metric of every model, pooled and per partner, against the baseline's same row."""
    comparisons: list[dict[str, Any]] = []
    for model, rows in sorted(current.items()):
        for who, metrics in sorted(rows.items(), key=lambda item: (item[0] != POOLED, item[0])):
            reference = baseline.get(model, {}).get(who)
            if reference is None:
                continue  # a partner without a baseline of its own (it joined later, or only pooled was released)
            for metric, threshold in sorted(settings.thresholds.items()):
                if metric not in metrics or metric not in reference:
                    continue
                result = compare(metric, reference[metric], metrics[metric], max_drop=threshold.max_drop, alpha=threshold.alpha)
                record = {"model": model, "partner": None if who == POOLED else who, **result.as_record()}
                comparisons.append({key: _finite(value) if isinstance(value, float) else value for key, value in record.items()})
    return comparisons


# --- feature shift against the baseline period (studies with [shift]) -------------------------------------

SHIFT_PREFIX = "shift:"


def period_histograms(outcome: RoundOutcome, settings: ShiftSettings) -> dict[str, Any]:
    """The period's released feature histograms: {"model": the model whose release carried them (every model
    carries the same, released once per round), "rows": {"pooled" | partner: {"counts": {feature: [counts]},
    "noise": DP noise variance per cell (0 without DP)}}}; partners only where their contracts release
    per-partner statistics. Empty without histograms (e.g. a regression study)."""
    first = next((name for name, stats in sorted(outcome.pooled_statistics.items())
                  if isinstance(stats, EvaluationStatistics) and "feature_hist" in stats.arrays), None)
    if first is None:
        return {}
    widths = [len(settings.edges[name]) - 1 for name in settings.features]

    def row(hist: np.ndarray, noise: dict[str, float] | None) -> dict[str, Any]:
        return {"counts": {name: [float(v) for v in hist[i, :widths[i]]] for i, name in enumerate(settings.features)},
                "noise": float((noise or {}).get("feature_hist", 0.0))}

    pooled = outcome.pooled_statistics[first]
    assert isinstance(pooled, EvaluationStatistics)
    rows = {POOLED: row(pooled["feature_hist"], outcome.noise_variance.get(first))}
    for partner, (stats, noise) in sorted(outcome.released.get(first, {}).items()):
        rows[partner] = row(stats["feature_hist"], noise)
    return {"model": first, "rows": rows}


def shift_comparisons(current: dict[str, Any], baseline: dict[str, Any], settings: ShiftSettings) -> list[dict[str, Any]]:
    """Each feature's distribution in the period against the baseline period's, pooled and per partner (where
    both periods released it): comparisons in the schema's shape, metric "shift:<feature>", baseline 0 and
    value/difference the PSI, `p_value` the null simulation's tail share (`shift.period_shift`: sampling and
    both periods' DP noise), `threshold` the study's psi_threshold; "js" and "null_psi_95" beside them."""
    comparisons: list[dict[str, Any]] = []
    if not current or not baseline:
        return comparisons
    rows, base_rows = current["rows"], baseline.get("rows", {})
    for who in sorted(rows, key=lambda name: (name != POOLED, name)):
        reference = base_rows.get(who)
        if reference is None:
            continue  # no baseline histograms of its own (it joined later, or only pooled was released then)
        for feature in settings.features:
            if feature not in rows[who]["counts"] or feature not in reference["counts"]:
                continue
            result = period_shift(np.asarray(rows[who]["counts"][feature]), np.asarray(reference["counts"][feature]),
                                  current_noise=float(rows[who]["noise"]), baseline_noise=float(reference["noise"]),
                                  psi_threshold=settings.psi_threshold)
            psi = _finite(float(result["psi"]))
            finite = psi is not None
            comparisons.append({
                "model": current["model"], "partner": None if who == POOLED else who, "metric": SHIFT_PREFIX + feature,
                "baseline": 0.0 if finite else None, "value": psi, "difference": psi,
                "standard_error": _finite(float(result["null_sd"])), "p_value": _finite(float(result["p_value"])),
                "threshold": settings.psi_threshold, "alert": bool(result["alert"]) and finite,
                "js": _finite(float(result["js"])), "null_psi_95": _finite(float(result["null_psi_95"]))})
    return comparisons


def reference_shift(path: Path) -> dict[str, Any] | None:
    """The feature histograms an earlier study's `monitoring-baseline.json` holds ("shift"), or None."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the monitoring reference: {exc}") from None
    shift = document.get("shift") if isinstance(document, dict) else None
    if shift is None:
        return None
    if not isinstance(shift, dict) or not isinstance(shift.get("rows"), dict) or not all(
            isinstance(r, dict) and isinstance(r.get("counts"), dict) and isinstance(r.get("noise"), (int, float))
            for r in shift["rows"].values()):
        raise ConfigError(f"{path}: shift: expected {{model, rows: {{pooled | partner: {{counts, noise}}}}}} "
                          "(as a monitoring study with [shift] writes it)")
    return shift


def alert_of(period: int, comparison: dict[str, Any]) -> dict[str, Any]:
    where = f"partner {comparison['partner']}" if comparison["partner"] else "pooled over the partners"
    if comparison["metric"].startswith(SHIFT_PREFIX):
        feature = comparison["metric"][len(SHIFT_PREFIX):]
        message = (f"period {period}: the distribution of {feature} {where} shifted from the baseline period "
                   f"(PSI {comparison['value']:.4g} above threshold {comparison['threshold']:g}, beyond sampling and "
                   f"DP noise: p = {comparison['p_value']:.2g})")
        return {"period": period, **{key: comparison[key] for key in (
            "model", "partner", "metric", "baseline", "value", "difference", "p_value", "threshold")}, "message": message}
    message = (f"period {period}: {comparison['model']} {comparison['metric']} {where} moved from "
               f"{comparison['baseline']:.4g} to {comparison['value']:.4g} (difference {comparison['difference']:+.4g}, "
               f"threshold {comparison['threshold']:g}, p = {comparison['p_value']:.2g})")
    return {"period": period, **{key: comparison[key] for key in (
        "model", "partner", "metric", "baseline", "value", "difference", "p_value", "threshold")}, "message": message}


@dataclass(frozen=True)
class AlertSinks:
    """Where alerts go besides the trail: a JSON-lines file, an HTTP POST (JSON body) to a webhook."""

    file: Path | None = None
    webhook_url: str | None = None
    timeout_s: float = 5.0

    @classmethod
    def of(cls, settings: MonitoringSettings) -> AlertSinks:
        return cls(settings.alert_file, settings.webhook_url, settings.webhook_timeout_s)

    def deliver(self, alert: dict[str, Any], trail: AuditTrail, *, study: str) -> None:
        """Send one alert to every sink; a sink that fails is logged in the trail and skipped."""
        body = json.dumps({"study": study, **alert}, sort_keys=True, allow_nan=False)
        if self.file is not None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                with open(self.file, "a", encoding="utf-8") as handle:
                    handle.write(body + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                trail.append("monitoring_alert_sink_failed", study=study, period=alert["period"], sink="file",
                             target=str(self.file), error=f"{type(exc).__name__}: {exc}")
        if self.webhook_url is not None:
            request = urllib.request.Request(self.webhook_url, data=body.encode("utf-8"), method="POST",
                                             headers={"Content-Type": "application/json", "User-Agent": "accord-monitoring"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                trail.append("monitoring_alert_sink_failed", study=study, period=alert["period"], sink="webhook",
                             target=self.webhook_url, error=f"{type(exc).__name__}: {exc}")


# --- the loop ---------------------------------------------------------------------------------------------


def monitoring_section(settings: MonitoringSettings, state: MonitoringState, extra: list[dict[str, Any]],
                       stopped: dict[str, Any] | None) -> dict[str, Any]:
    """results["monitoring"], as agreed with the dashboard."""
    return {
        "schedule": {"kind": settings.schedule, "interval_s": settings.interval_s, "periods": settings.periods},
        "baseline": {"kind": settings.baseline, "period": 1 if settings.baseline == "first_period" else None,
                     "reference": str(settings.reference) if settings.reference is not None else None},
        "thresholds": {name: {"max_drop": t.max_drop, "alpha": t.alpha} for name, t in settings.thresholds.items()},
        "periods": [*(state.periods or []), *extra],
        "alerts": list(state.alerts or []),
        "stopped": stopped,
    }


def _stop_reason(outcome: RoundOutcome) -> dict[str, Any] | None:
    for refusal in outcome.refused:
        clause = refusal.get("clause", "")
        if clause in BUDGET_CLAUSES:
            return {"reason": f"{refusal['partner']} refused under clause {clause!r}: its budget or monitoring terms "
                              "allow no more periods", "partner": refusal["partner"], "clause": clause}
        if clause == SNAPSHOT_CLAUSE:
            return {"reason": f"{refusal['partner']} has not declared this period's data snapshot yet; run the study "
                              "again to resume", "partner": refusal["partner"], "clause": clause, "resumable": True}
    return None


def _period_record(period: int, round_number: int, started_at: str, status: str, outcome: RoundOutcome,
                   estimates: Estimates, comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    pooled = {model: {name: value for name, value in (outcome.pooled.get(model) or {}).items()
                      if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
              for model in outcome.pooled}
    for model, rows in estimates.items():
        for metric in ("prevalence", "calibration_in_the_large"):
            value = _finite(rows[POOLED][metric].value)
            if value is not None:
                pooled.setdefault(model, {})[metric] = value
    per_partner: dict[str, dict[str, dict[str, float]]] = {}
    for model, rows in estimates.items():
        for who, metrics in rows.items():
            if who != POOLED:
                per_partner.setdefault(who, {})[model] = {m: v for m, e in metrics.items() if (v := _finite(e.value)) is not None}
    return {"period": period, "round": round_number, "started_at": started_at, "status": status,
            "contributors": list(outcome.contributors), "pooled": pooled, "per_partner": per_partner,
            "comparisons": comparisons}


def run_monitoring(
    runner: StudyRunner, *, run_period: RunPeriod | None = None, sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> dict[str, EvaluationStatistics]:
    """Run the study's remaining periods, one round each (`run_period`, default `rounds.run_round`); sets
    `runner.monitoring` (results["monitoring"]); returns the last period's pooled statistics (the report's plots)."""
    study, trail, study_sha256 = runner.study, runner.context.trail, runner.context.study_sha256
    settings = study.monitoring
    if settings is None:
        raise ConfigError(f"study {study.id!r} is not a monitoring study (no [monitoring] table)")
    if run_period is None:
        model_bytes = {model.name: model.path.read_bytes() for model in runner.models}
        context = runner.context
        run_period = lambda spec: run_round(context, spec, model_bytes)
    folder = state_folder(study)
    state = MonitoringState.load(folder / STATE_NAME, study=study.id, study_sha256=study_sha256)
    sinks = AlertSinks.of(settings)
    baseline = (estimates_from_record(state.baseline, source=str(state.path)) if state.baseline
                else load_reference(settings.reference) if settings.reference is not None else None)
    shift_settings = study.shift  # [shift]: each period's feature distributions are also compared with the baseline's
    shift_baseline = state.shift_baseline or (reference_shift(settings.reference)
                                              if shift_settings is not None and settings.reference is not None else None)
    refs = [ModelRef(name=m.name, sha256=m.sha256, output=m.output) for m in runner.models]
    first = max(state.done, default=0) + 1
    if state.done:
        trail.append("monitoring_resumed", study=study.id, periods_done=state.done, next_period=first, next_round=state.next_round)
    pooled_statistics: dict[str, EvaluationStatistics] = {}
    extra: list[dict[str, Any]] = []
    stopped: dict[str, Any] | None = None
    try:
        for period in range(first, settings.periods + 1):
            if period > first:
                runner.note_late_joiners(before_round=state.next_round)
            if settings.schedule == "interval" and state.last_started is not None:
                wait = state.last_started + float(settings.interval_s or 0.0) - clock()
                if wait > 0:
                    sleep(wait)
            round_number = state.next_round
            state.next_round, state.last_started = round_number + 1, clock()
            state.save()  # before the task leaves: a restart never sends this round number again
            started_at = _utc_now()
            trail.append("monitoring_period_started", study=study.id, round=round_number, period=period)
            outcome = run_period(monitoring_spec(study, period=period, round_number=round_number,
                                                 study_sha256=study_sha256, models=refs))
            if (reason := _stop_reason(outcome)) is not None:
                stopped = {"period": period, "reason": reason["reason"], "partner": reason["partner"]}
                runner.rounds.append(RoundSummary.of(outcome.summary()).withheld())
                extra.append(_period_record(period, round_number, started_at, "stopped", outcome, {}, []))
                trail.append("monitoring_stopped", study=study.id, round=round_number, period=period,
                             partner=reason["partner"], clause=reason["clause"], resumable=bool(reason.get("resumable")))
                stopped_resumable = bool(reason.get("resumable"))
                if stopped_resumable:
                    stopped["resumable"] = True
                break
            if len(outcome.contributors) < study.min_cohort:
                extra.append(_period_record(period, round_number, started_at, "failed", outcome, {}, []))
            runner.finish_round(RoundSummary.of(outcome.summary()))  # below the minimum cohort: CohortTooSmallError
            estimates = period_estimates(outcome, study.evaluation.calibration_bins)
            comparisons: list[dict[str, Any]] = []
            histograms = period_histograms(outcome, shift_settings) if shift_settings is not None else {}
            if baseline is None:
                baseline = estimates
                write_durably(folder / BASELINE_NAME, json.dumps(
                    {"study": study.id, "period": period, "models": estimates_record(estimates)}
                    | ({"shift": histograms} if histograms and shift_baseline is None else {}),
                    indent=1, sort_keys=True, allow_nan=False).encode("utf-8"))
                state.baseline = estimates_record(estimates)
            else:
                comparisons = period_comparisons(period, estimates, baseline, settings)
            if histograms and shift_settings is not None:
                if shift_baseline is None:  # the first period's (or the first after a reference without histograms)
                    shift_baseline = state.shift_baseline = histograms
                else:
                    comparisons += shift_comparisons(histograms, shift_baseline, shift_settings)
            alerts = [alert_of(period, c) for c in comparisons if c["alert"]]
            record = _period_record(period, round_number, started_at, "completed", outcome, estimates, comparisons)
            state.periods = [*(state.periods or []), record]
            state.alerts = [*(state.alerts or []), *alerts]
            state.save()
            trail.append("monitoring_period_completed", study=study.id, round=round_number, period=period,
                         contributors=outcome.contributors, alerts=len(alerts))
            for alert in alerts:
                trail.append(ALERT_EVENT, study=study.id, **alert)
                sinks.deliver(alert, trail, study=study.id)
            pooled_statistics = {k: v for k, v in outcome.pooled_statistics.items() if isinstance(v, EvaluationStatistics)}
    finally:
        runner.monitoring = monitoring_section(settings, state, extra, stopped)
    return pooled_statistics


def resumable(monitoring: dict[str, Any] | None) -> bool:
    """A monitoring study that stopped to wait for partners' snapshots: left unsealed, so that it can resume."""
    return bool(monitoring and (monitoring.get("stopped") or {}).get("resumable"))
