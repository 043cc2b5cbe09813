"""The README's demo: three hospitals and a coordinator on 127.0.0.1, one joint evaluation.

Prepares the data, models, contracts and the coordinator's key, starts
`python -m federated.server` (which starts the SuperLink), then three
`python -m federated.client` nodes, each under its hospital's data contract, waits for the
study to finish and stops the nodes; then exports the evidence pack (demo/evidence.zip) and
verifies it offline. Exits with the first non-zero exit code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from examples.hospitals.prepare import HOSPITALS, prepare
from federated.local.localhost import LocalFederation, Partner

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    demo = ROOT / "demo"
    # Each run is a fresh deployment: a node never serves a study id again once it was sealed.
    for previous in (demo / "nodes", demo / "output"):
        shutil.rmtree(previous, ignore_errors=True)
    prepare(demo)
    federation = LocalFederation(workdir=demo / "nodes")
    try:
        federation.start_coordinator(ROOT / "configs" / "demo-evaluation.toml", "--key", str(demo / "keys" / "coordinator.key"))
        for name, *_ in HOSPITALS:
            data = demo / "data"
            partner = Partner(name, data / f"{name}.csv", data / f"{name}.toml")
            federation.start_partner(partner, "--contract", str(data / f"{name}.contract.toml"))
        code = federation.coordinator.wait()
    finally:
        federation.stop()
    print(f"\nPartner trails and logs: {demo / 'nodes'}/<hospital>/", file=sys.stderr)
    if code != 0:
        return code
    return export_and_verify(demo)


def export_and_verify(demo: Path) -> int:
    """Hand the study to an auditor: the evidence pack, then its offline verification."""
    audit = [sys.executable, "-m", "federated.audit"]
    trails = [arg for name, *_ in HOSPITALS for arg in ("--partner-trail", str(demo / "nodes" / name))]
    manifests = [arg for name, *_ in HOSPITALS for arg in ("--partner-manifest", str(demo / "data" / f"{name}.toml"))]
    pack = demo / "evidence.zip"
    export = subprocess.call([*audit, "export", "--study", str(ROOT / "configs" / "demo-evaluation.toml"), "--out", str(pack),
                              "--key", str(demo / "keys" / "coordinator.key"), *trails, *manifests])
    if export != 0:
        return export
    return subprocess.call([*audit, "verify", str(pack), "--coordinator-key", str(demo / "keys" / "coordinator.key.pub")])


if __name__ == "__main__":
    sys.exit(main())
