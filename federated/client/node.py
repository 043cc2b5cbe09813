"""Starting a partner's node: check the local data, then run Flower's `flower-supernode`.

The node's config points the ClientApp at the partner's data, manifest and trail; the
ClientApp itself comes from this installed Accord, never from the coordinator.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from federated.audit import AuditTrail
from federated.audit.keys import pinned_fingerprint
from federated.client.settings import NodeSettings
from federated.data import PartnerData, load_manifest, load_partner_data
from federated.errors import ConfigError
from federated.flower_runtime import flower_env, parse_address, require_transport


@dataclass(frozen=True)
class NodeLaunch:
    settings: NodeSettings
    coordinator: str
    runtime_port: int
    insecure: bool
    root_certificates: Path | None
    flwr_home: Path
    max_retries: int | None = None
    max_wait_time_s: float | None = None

    def command(self) -> list[str]:
        command = ["flower-supernode", "--superlink", self.coordinator, "--port", str(self.runtime_port)]
        command += ["--insecure"] if self.insecure else ["--root-certificates", str(self.root_certificates)]
        command += ["--node-config", self.settings.to_node_config()]
        if self.max_retries is not None:
            command += ["--max-retries", str(self.max_retries)]
        if self.max_wait_time_s is not None:
            command += ["--max-wait-time", str(self.max_wait_time_s)]
        return command


def check_local_data(data: Path, manifest: Path) -> PartnerData:
    """Load and check the partner's data exactly as a task would (raises on any mismatch)."""
    return load_partner_data(data, load_manifest(manifest))


def prepare_node(
    *,
    data: Path,
    manifest: Path,
    coordinator: str,
    partner_id: str | None,
    workdir: Path,
    runtime_port: int,
    insecure: bool,
    root_certificates: Path | None,
    max_retries: int | None = None,
    max_wait_time_s: float | None = None,
    key: Path | None = None,
    coordinator_key: str | None = None,
    ledger: Path | None = None,
    max_epsilon: float | None = None,
    max_epsilon_per_study: float | None = None,
) -> tuple[NodeLaunch, PartnerData]:
    host, _ = parse_address(coordinator, option="--coordinator")
    require_transport(host, insecure=insecure, has_certificates=root_certificates is not None, option="--coordinator")
    loaded = check_local_data(data, manifest)
    workdir = workdir.resolve()
    settings = NodeSettings(
        partner_id=partner_id or loaded.manifest.dataset_id,
        data=data.resolve(),
        manifest=manifest.resolve(),
        trail=workdir / "trail.jsonl",
        key=(key or workdir / "node.key").resolve(),
        coordinator_key=pinned_fingerprint(coordinator_key) if coordinator_key else None,
        ledger=(ledger or workdir / "budget.sqlite").resolve(),
        max_epsilon_total=_cap("--max-epsilon", max_epsilon),
        max_epsilon_per_study=_cap("--max-epsilon-per-study", max_epsilon_per_study),
    )
    settings.to_node_config()  # refuses paths Flower's node-config syntax cannot carry
    launch = NodeLaunch(
        settings, coordinator, runtime_port, insecure, root_certificates, workdir / ".flwr", max_retries, max_wait_time_s
    )
    return launch, loaded


def _cap(option: str, value: float | None) -> float:
    if value is None:
        return float("inf")
    if not value > 0:
        raise ConfigError(f"{option}: must be a positive number of ε (got {value})")
    return value


def run_node(launch: NodeLaunch) -> int:
    """Run the SuperNode in the foreground until it exits or this process is told to stop."""
    launch.flwr_home.mkdir(parents=True, exist_ok=True)
    AuditTrail(launch.settings.trail, actor=launch.settings.partner_id)
    process = subprocess.Popen(launch.command(), env=flower_env(launch.flwr_home))

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    return process.wait()
