"""Federated training in deployment mode: a coordinator and three partner nodes on 127.0.0.1.

Prepares three non-IID digits partners, starts `python -m federated.server` (SuperLink)
and three `python -m federated.client` nodes (SuperNodes), runs `configs/digits-training.toml`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from examples.digits.prepare import partner_name, prepare_digits, write_initial_weights
from federated.local.localhost import LocalFederation, Partner

ROOT = Path(__file__).resolve().parents[2]
PARTNERS = 3


def main() -> int:
    data = ROOT / "demo" / "digits"
    prepare_digits(data, partners=PARTNERS)
    write_initial_weights(data, architecture="cnn")
    federation = LocalFederation(workdir=ROOT / "demo" / "digits-nodes")
    try:
        federation.start_coordinator(ROOT / "configs" / "digits-training.toml")
        for index in range(PARTNERS):
            name = partner_name(index)
            federation.start_partner(Partner(name, data / f"{name}.csv", data / f"{name}.toml"))
        return federation.coordinator.wait()
    finally:
        federation.stop()


if __name__ == "__main__":
    sys.exit(main())
