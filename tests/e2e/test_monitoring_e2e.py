"""The monitoring example as a real federation: alerts at the drifting site, none at the stable ones."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from examples.monitoring.prepare import COORDINATOR_KEY, DEGRADING, PERIODS, SITES
from federated.audit.trail import read_entries

ROOT = Path(__file__).resolve().parents[2]


def test_the_monitoring_example_alerts_at_the_drifting_site_only(monitoring_example_out: Path) -> None:
    out = monitoring_example_out  # the example, run once per session (tests/conftest.py)
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


def test_the_monitoring_runs_evidence_pack_exports_and_verifies(monitoring_example_out: Path, tmp_path: Path) -> None:
    """An auditor's pack of the example's run: exported with the sites' trails, manifests and contracts, then
    verified offline against the pinned coordinator key; its model card carries the monitoring section."""
    out = monitoring_example_out
    audit = [sys.executable, "-m", "federated.audit"]
    partners = [arg for site in SITES for arg in ("--partner-trail", str(out / "nodes" / site),
                                                  "--partner-manifest", str(out / "data" / f"{site}.toml"),
                                                  "--partner-contract", str(out / "data" / f"{site}.contract.toml"))]
    pack, key = tmp_path / "evidence.zip", out / COORDINATOR_KEY
    export = subprocess.run([*audit, "export", "--study", str(out / "study.toml"), "--out", str(pack), "--key", str(key),
                             *partners], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    verify = subprocess.run([*audit, "verify", str(pack), "--coordinator-key", f"{key}.pub"], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    assert f"VERIFIED: {pack}" in verify.stdout + verify.stderr
    results = json.loads((out / "output" / "latest" / "results.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(pack) as archive:
        card = archive.read("models/deployed.md").decode("utf-8")
    assert "## Monitoring" in card
    assert all(alert["message"] in card for alert in results["monitoring"]["alerts"])
