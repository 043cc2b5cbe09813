"""The README's demo: three hospitals and a coordinator on 127.0.0.1, one joint evaluation.

Prepares the data and models, starts `python -m federated.server` (which starts the
SuperLink), then three `python -m federated.client` nodes, waits for the study to finish
and stops the nodes. Exits with the coordinator's exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from examples.hospitals.prepare import HOSPITALS, prepare
from federated.localhost import LocalFederation, Partner

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    demo = ROOT / "demo"
    prepare(demo)
    federation = LocalFederation(workdir=demo / "nodes")
    try:
        federation.start_coordinator(ROOT / "configs" / "demo-evaluation.toml")
        for name, *_ in HOSPITALS:
            federation.start_partner(Partner(name, demo / "data" / f"{name}.csv", demo / "data" / f"{name}.toml"))
        code = federation.coordinator.wait()
    finally:
        federation.stop()
    print(f"\nPartner trails and logs: {demo / 'nodes'}/<hospital>/", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
