"""The README's demo: three hospitals and a coordinator on 127.0.0.1, one joint evaluation.

Prepares the data, models, contracts and the coordinator's key (demo/output/coordinator.key, where the
coordinator CLI looks by default), starts `python -m federated.server` (which starts the SuperLink), then
three `python -m federated.client` nodes, each under its hospital's data contract, waits for the
study to finish and stops the nodes; then exports the evidence pack of that run (demo/evidence.zip) and
verifies it offline. Exits with the first non-zero exit code.

Each run writes to its own folder, demo/output/runs/RUN_ID/; demo/output/latest points to the newest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from examples.hospitals.prepare import COORDINATOR_KEY, HOSPITALS, prepare
from federated.local.localhost import LocalFederation, Partner
from federated.runtime.runs import RUNS

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    demo = ROOT / "demo"
    # Each run is a fresh deployment of the nodes: a node never serves a study id again once it was sealed.
    # The coordinator's runs stay side by side under demo/output/runs/, all signed by the same key.
    shutil.rmtree(demo / "nodes", ignore_errors=True)
    if (demo / "output").is_dir() and not (demo / "output" / RUNS).is_dir():
        shutil.rmtree(demo / "output")  # an output folder of the older, flat layout
    prepare(demo)
    federation = LocalFederation(workdir=demo / "nodes")
    try:
        federation.start_coordinator(ROOT / "configs" / "demo-evaluation.toml")  # its key: demo/output/coordinator.key
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
    contracts = [arg for name, *_ in HOSPITALS for arg in ("--partner-contract", str(demo / "data" / f"{name}.contract.toml"))]
    pack = demo / "evidence.zip"
    key = demo / COORDINATOR_KEY
    # The study file's output_dir is demo/output: export reads its latest run (demo/output/latest).
    export = subprocess.call([*audit, "export", "--study", str(ROOT / "configs" / "demo-evaluation.toml"), "--out", str(pack),
                              "--key", str(key), *trails, *manifests, *contracts])
    if export != 0:
        return export
    return subprocess.call([*audit, "verify", str(pack), "--coordinator-key", f"{key}.pub"])


if __name__ == "__main__":
    sys.exit(main())
