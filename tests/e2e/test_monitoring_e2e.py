"""The monitoring example as a real federation: alerts at the drifting site, none at the stable ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from examples.monitoring.prepare import DEGRADING, PERIODS, SITES
from federated.audit.trail import read_entries

ROOT = Path(__file__).resolve().parents[2]


def test_the_monitoring_example_alerts_at_the_drifting_site_only(tmp_path: Path) -> None:
    out = tmp_path / "monitoring"
    run = subprocess.run([sys.executable, "-m", "examples.monitoring.run_monitoring", "--out", str(out)], check=False, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    latest = out / "output" / "latest"
    results = json.loads((latest / "results.json").read_text(encoding="utf-8"))
    monitoring = results["monitoring"]
    assert results["purpose"] == "monitoring" and monitoring["stopped"] is None
    assert [(p["period"], p["status"]) for p in monitoring["periods"]] == [(n, "completed") for n in range(1, PERIODS + 1)]
    partners = {alert["partner"] for alert in monitoring["alerts"]}
    assert DEGRADING in partners
    assert not partners & (set(SITES) - {DEGRADING})  # no false alert at a stable site
    # The same alerts in the trail, in the alert file, and on the report.
    trail = [entry for entry in read_entries(latest / "coordinator-trail.jsonl") if entry["kind"] == "monitoring_alert"]
    assert len(trail) == len(monitoring["alerts"])
    lines = (out / "output" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["message"] for line in lines] == [alert["message"] for alert in monitoring["alerts"]]
    assert "## Monitoring" in (latest / "report.md").read_text(encoding="utf-8")
    # Every period is a release each partner's own ledger charged.
    for site in SITES:
        spent = [e for e in read_entries(out / "nodes" / site / "trail.jsonl") if e["kind"] == "privacy_spent"]
        assert len(spent) == PERIODS, site
