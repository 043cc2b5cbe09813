"""A monitoring study's outputs in the agreed shape of results.json["monitoring"] (issue 16): a deployed model
evaluated at three hospitals over four periods against the first, hospital-b's accuracy falling from period 3
(an alert at hospital-b in periods 3 and 4, and one on the pooled accuracy in period 4), the schedule stopped
before period 5 because hospital-c's budget is spent. Each alert is also a `monitoring_alert` trail entry.

The numbers follow from per-period counts (records and correct predictions): a one-sided two-proportion z-test
against the baseline period, alerting when the drop exceeds the study's max_drop and p < alpha."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from federated.audit import AuditTrail

STUDY_ID = "monitoring-demo"
MODEL = "deployed"
THRESHOLDS = {"accuracy": {"max_drop": 0.05, "alpha": 0.01}}
# (records, correct) per partner per period: hospital-b drifts from period 3.
COUNTS = {
    "hospital-a": [(400, 348), (410, 355), (395, 345), (405, 351)],
    "hospital-b": [(380, 331), (390, 336), (385, 308), (392, 270)],
    "hospital-c": [(300, 258), (310, 268), (305, 262), (298, 256)],
}
STOP = {"period": 5, "reason": "hospital-c's privacy budget is spent (ε 10 of 10 for this study)", "partner": "hospital-c"}


def _interval(correct: int, records: int) -> dict[str, Any]:
    """Wilson 95 % interval, as results.json records intervals."""
    p, z = correct / records, 1.959963984540054
    centre, half = (p + z * z / (2 * records)) / (1 + z * z / records), z * math.sqrt(p * (1 - p) / records + z * z / (4 * records ** 2)) / (1 + z * z / records)
    return {"low": centre - half, "high": centre + half, "method": "wilson"}


def _compare(partner: str | None, base: tuple[int, int], now: tuple[int, int], period: int) -> dict[str, Any]:
    (n0, k0), (n1, k1) = base, now
    p0, p1 = k0 / n0, k1 / n1
    se = math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    p_value = 0.5 * math.erfc((p0 - p1) / se / math.sqrt(2))  # one-sided: a drop
    threshold = THRESHOLDS["accuracy"]
    alert = p0 - p1 > threshold["max_drop"] and p_value < threshold["alpha"]
    return {"model": MODEL, "partner": partner, "metric": "accuracy", "baseline": p0, "value": p1, "difference": p1 - p0,
            "standard_error": se, "p_value": p_value, "threshold": threshold["max_drop"], "alert": alert, "period": period}


def monitoring_results() -> dict[str, Any]:
    """results.json of the monitoring study (its `rounds` carry the intervals)."""
    partners = sorted(COUNTS)
    periods, rounds, alerts = [], [], []
    for index in range(4):
        period = index + 1
        pooled_now = tuple(sum(COUNTS[p][index][i] for p in partners) for i in range(2))
        pooled_base = tuple(sum(COUNTS[p][0][i] for p in partners) for i in range(2))
        comparisons = []
        if period > 1:
            comparisons = [_compare(None, pooled_base, pooled_now, period)]
            comparisons += [_compare(p, COUNTS[p][0], COUNTS[p][index], period) for p in partners]
        for c in comparisons:
            if c["alert"]:
                where = c["partner"] or "pooled"
                alerts.append({k: c[k] for k in ("period", "model", "partner", "metric", "baseline", "value", "difference",
                                                  "p_value", "threshold")}
                              | {"message": f"accuracy at {where} fell {-c['difference']:.3f} below its baseline "
                                            f"(p = {c['p_value']:.2g}, threshold {c['threshold']})"})
        periods.append({
            "period": period, "round": period, "started_at": f"2026-11-0{period}T08:00:00Z", "status": "completed",
            "contributors": partners,
            "pooled": {MODEL: {"count": pooled_now[0], "accuracy": pooled_now[1] / pooled_now[0]}},
            "per_partner": {p: {MODEL: {"count": COUNTS[p][index][0], "accuracy": COUNTS[p][index][1] / COUNTS[p][index][0]}}
                            for p in partners},
            "comparisons": [{k: v for k, v in c.items() if k != "period"} for c in comparisons]})
        rounds.append({"round": period, "contributors": partners, "refused": [], "missing": [], "duration_s": 3.5,
                       "pooled": {MODEL: {"count": pooled_now[0], "accuracy": pooled_now[1] / pooled_now[0]}},
                       "validation": {MODEL: {"confidence": 0.95, "accuracy_ci": _interval(pooled_now[1], pooled_now[0])}},
                       "heterogeneity": {MODEL: {"partners": {
                           p: {"count": COUNTS[p][index][0], "accuracy": COUNTS[p][index][1] / COUNTS[p][index][0],
                               "accuracy_ci": _interval(COUNTS[p][index][1], COUNTS[p][index][0])} for p in partners}}}})
    monitoring = {"schedule": {"kind": "snapshots", "interval_s": None, "periods": 6},
                  "baseline": {"kind": "first_period", "period": 1, "reference": None},
                  "thresholds": json.loads(json.dumps(THRESHOLDS)), "periods": periods, "alerts": alerts, "stopped": STOP}
    return {"study": STUDY_ID, "purpose": "monitoring", "status": "stopped", "message": STOP["reason"], "min_cohort": 2,
            "models": [{"name": MODEL, "sha256": "e" * 64, "path": f"models/{MODEL}.onnx"}], "rounds": rounds, "monitoring": monitoring}


def write_monitoring_study(root: Path, results: dict[str, Any] | None = None) -> Path:
    """Write the study under root/STUDY_ID: results.json and a coordinator trail with each alert; return it."""
    results = results or monitoring_results()
    out = root / results["study"]
    out.mkdir(parents=True)
    trail = AuditTrail(out / "coordinator-trail.jsonl", actor="coordinator")
    trail.append("study_started", study=results["study"], rounds=len(results["rounds"]))
    for alert in results["monitoring"]["alerts"]:
        trail.append("monitoring_alert", study=results["study"], **alert)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return out
