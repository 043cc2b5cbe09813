"""The simulation layout: where each virtual partner of Flower's simulation engine finds its files.

A simulation's data directory holds, for virtual partner N, `partner-NNN.csv` and `partner-NNN.toml`
(data and manifest), its trail under `trails/`, and — for encrypted studies — the one study secret
context every virtual partner reads. The coordinator checks the layout before it submits a run; the
ClientApp reads it for each message. Both sides use these names, so they live here, below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SIMULATION_HE_SECRET = "he-secret-context.json"  # in simulation, every virtual partner's secret context


def partner_name(index: int) -> str:
    """The name of virtual partner `index` (Flower's `partition-id`)."""
    return f"partner-{index:03d}"


@dataclass(frozen=True)
class VirtualPartnerFiles:
    name: str
    data: Path
    manifest: Path
    trail: Path
    he_secret_context: Path | None


def virtual_partner_files(directory: Path, index: int) -> VirtualPartnerFiles:
    name = partner_name(index)
    secret = directory / SIMULATION_HE_SECRET
    return VirtualPartnerFiles(name, directory / f"{name}.csv", directory / f"{name}.toml",
                               directory / "trails" / f"{name}.jsonl", secret if secret.is_file() else None)
