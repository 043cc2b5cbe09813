"""The README's demo: three hospitals and a coordinator on 127.0.0.1, one joint evaluation.

Prepares the data, models, contracts and the coordinator's key (demo/output/coordinator.key, where the
coordinator CLI looks by default), starts `python -m federated.server` (which starts the SuperLink), then
three `python -m federated.client` nodes, each under its hospital's data contract, waits for the
study to finish and stops the nodes; then exports the evidence pack of that run (demo/evidence.zip) and
verifies it offline, and prints the address of the dashboard over the runs (`make dashboard` serves it).
Exits with the first non-zero exit code.

Each run writes to its own folder, demo/output/runs/RUN_ID/; demo/output/latest points to the newest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from examples.hospitals.prepare import COORDINATOR_KEY, HOSPITALS, prepare
from federated.dashboard.__main__ import DEFAULT_PORT, address_line
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
    code = export_and_verify(demo)
    if code == 0:
        print_dashboard_line(demo)
    return code


def print_dashboard_line(demo: Path) -> None:
    """Where the dashboard over this demo will be, and the command that serves it (`make dashboard`); the demo
    does not start it, so that `make demo` ends."""
    command = (f"python -m federated.dashboard --output {demo.relative_to(ROOT) / 'output' / RUNS} "
               f"--pack {demo.relative_to(ROOT) / 'evidence.zip'} --coordinator-key {demo.relative_to(ROOT) / COORDINATOR_KEY}.pub")
    print(f"\n{address_line('127.0.0.1', DEFAULT_PORT, None)} — serve it with `make dashboard` ({command})")


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
