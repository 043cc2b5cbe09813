"""The monitoring example: a deployed model watched at three sites over four data snapshots, as a real federation.

Prepares the sites' data, snapshots, contracts, the deployed model and the coordinator's key under
demo/monitoring/ (`examples.monitoring.prepare`), starts `python -m federated.server` and three
`python -m federated.client` nodes on 127.0.0.1, runs the monitoring study (one DP evaluation round per
snapshot, each compared with the first) and prints the alerts. Expected: alerts at site-c, whose labels
drift, and none at site-a or site-b. Exits non-zero if the study fails or the alerts are not the expected ones.

The run's outputs (results.json with its "monitoring" section, report, trail, alerts.jsonl) are under
demo/monitoring/output/ (latest run: demo/monitoring/output/latest); the dashboard reads them there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from examples.monitoring.prepare import DEGRADING, SITES, prepare
from federated.local.localhost import LocalFederation, Partner

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "demo" / "monitoring"


def alerted_partners(results: dict[str, object]) -> set[str | None]:
    monitoring = results.get("monitoring") or {}
    assert isinstance(monitoring, dict)
    return {alert.get("partner") for alert in monitoring.get("alerts", [])}


def main(out: Path = OUT) -> int:
    shutil.rmtree(out, ignore_errors=True)  # a fresh deployment: nodes, state and runs
    study = prepare(out)
    federation = LocalFederation(workdir=out / "nodes")
    try:
        federation.start_coordinator(study, log=out / "nodes" / "coordinator.log")
        for name in SITES:
            data = out / "data"
            federation.start_partner(Partner(name, data / f"{name}.csv", data / f"{name}.toml"),
                                     "--contract", str(data / f"{name}.contract.toml"))
        assert federation.coordinator is not None
        code = federation.coordinator.wait()
    finally:
        federation.stop()
    output = out / "output" / "latest"
    if code != 0:
        print(f"the coordinator exited with code {code}; see {out / 'nodes'}", file=sys.stderr)
        return code
    results = json.loads((output / "results.json").read_text(encoding="utf-8"))
    for alert in results["monitoring"]["alerts"]:
        print(f"ALERT {alert['message']}")
    partners = alerted_partners(results)
    print(f"\nmonitoring outputs (results.json, report, trail): {output.resolve()}")
    print(f"alerts as JSON lines: {(out / 'output' / 'alerts.jsonl').resolve()}")
    if DEGRADING not in partners or partners & (set(SITES) - {DEGRADING}):
        print(f"unexpected alerts: at {sorted(str(p) for p in partners)}, expected {DEGRADING} and no other site",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the example's folder, emptied first (default: demo/monitoring/)")
    sys.exit(main(parser.parse_args().out))
