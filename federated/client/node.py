"""Starting a partner's node: check the local data, then run Flower's `flower-supernode`.

The node's config points the ClientApp at the partner's data, manifest and trail; the
ClientApp itself comes from this installed Accord, never from the coordinator.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from crypto.node_auth import NodeAuthKey
from federated.audit import AuditTrail
from federated.audit.keys import pinned_fingerprint
from federated.client.data import PartnerData, load_manifest, load_partner_data
from federated.client.settings import NodeSettings
from federated.errors import ConfigError
from federated.runtime.flower import flower_env, parse_address, require_transport, start_reaper
from privacy.contract import load_contract


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
    auth_key: Path | None = None  # SuperNode authentication key (OpenSSH EC), registered by the coordinator

    def command(self) -> list[str]:
        command = ["flower-supernode", "--superlink", self.coordinator, "--port", str(self.runtime_port)]
        command += ["--insecure"] if self.insecure else ["--root-certificates", str(self.root_certificates)]
        command += ["--node-config", self.settings.to_node_config()]
        if self.max_retries is not None:
            command += ["--max-retries", str(self.max_retries)]
        if self.max_wait_time_s is not None:
            command += ["--max-wait-time", str(self.max_wait_time_s)]
        if self.auth_key is not None:
            command += ["--auth-supernode-private-key", str(self.auth_key)]
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
    auth_key: Path | None = None,
    he_secret_context: Path | None = None,
    contract: Path | None = None,
) -> tuple[NodeLaunch, PartnerData]:
    host, _ = parse_address(coordinator, option="--coordinator")
    require_transport(host, insecure=insecure, has_certificates=root_certificates is not None, option="--coordinator")
    if auth_key is not None:
        if insecure:
            raise ConfigError("--auth-key: Flower's SuperNode authentication needs TLS (--root-certificates), not --insecure")
        NodeAuthKey.load(auth_key)  # the checks flower-supernode makes, with a message naming the file
    loaded = check_local_data(data, manifest)
    if contract is not None:
        # The node refuses to start under a contract that does not govern this data or has expired.
        load_contract(contract).check_data(loaded.data_sha256, today=date.today(), source=str(contract))
    if he_secret_context is not None:
        from crypto.he_keys import load_secret_context

        load_secret_context(he_secret_context)  # refuse to start with a file that is not a usable secret context
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
        he_secret_context=he_secret_context.resolve() if he_secret_context is not None else None,
        contract=contract.resolve() if contract is not None else None,
    )
    settings.to_node_config()  # refuses paths Flower's node-config syntax cannot carry
    launch = NodeLaunch(
        settings, coordinator, runtime_port, insecure, root_certificates, workdir / ".flwr", max_retries, max_wait_time_s,
        auth_key=auth_key.resolve() if auth_key is not None else None,
    )
    return launch, loaded


def _cap(option: str, value: float | None) -> float:
    if value is None:
        return float("inf")
    if not value > 0:
        raise ConfigError(f"{option}: must be a positive number of ε (got {value})")
    return value


@dataclass(frozen=True)
class NodeExit:
    code: int
    flower_error: str  # Flower's own explanation of an error exit ("Exit Code: N" block), or ""

    @property
    def normal(self) -> bool:
        return self.code in (0, -signal.SIGINT, -signal.SIGTERM)


def run_node(launch: NodeLaunch) -> NodeExit:
    """Run the SuperNode in the foreground until it exits or this process is told to stop.

    Its output passes through to stderr; Flower's explanation of an error exit is kept.
    """
    launch.flwr_home.mkdir(parents=True, exist_ok=True)
    AuditTrail(launch.settings.trail, actor=launch.settings.partner_id)
    start_reaper()  # the SuperNode, its SuperExec and ClientApps end with this command, even on SIGKILL
    process = subprocess.Popen(
        launch.command(), env=flower_env(launch.flwr_home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace",
    )

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    tail: deque[str] = deque(maxlen=200)

    def relay() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    code = process.wait()
    reader.join(timeout=2)  # the SuperExec it spawned inherits the pipe and may outlive it a while
    return NodeExit(code, flower_exit_message(list(tail)))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def flower_exit_message(lines: Iterable[str]) -> str:
    """The last "Exit Code: N ... For more information" block Flower printed, without colours."""
    text = [_ANSI.sub("", line).rstrip() for line in lines]
    starts = [i for i, line in enumerate(text) if "Exit Code:" in line]
    if not starts:
        return ""
    block = []
    for line in text[starts[-1]:]:
        if line.startswith("For more information") or (block and not line):
            break
        block.append(line[line.index("Exit Code:"):] if not block else line)
    return "\n".join(block)


def explain_exit(result: NodeExit, launch: NodeLaunch) -> str:
    """A message that says why Flower stopped this node, and what the partner can do about it."""
    said = f"\nFlower said: {result.flower_error}" if result.flower_error else ""
    where = f"the SuperLink at {launch.coordinator}"
    if "[code: 2004]" in result.flower_error:  # FLEET_NODE_ACTIVATION_FAILED: unknown public key
        public = f"{launch.auth_key}.pub" if launch.auth_key else "this node's public key"
        return (
            f"{where} rejected this node: its SuperNode key is not registered there. Send {public} to the "
            f"coordinator (it registers keys with --authorized-nodes), or check that --auth-key is the key you sent.{said}"
        )
    if "[code: 2001]" in result.flower_error:  # FLEET_SUPERNODE_REGISTRATION_DISABLED: no key given
        return (
            f"{where} rejected this node: it requires SuperNode authentication. Start the node with --auth-key "
            f"(create a key with `python -m crypto.keys identity`) and have the coordinator register its public half.{said}"
        )
    if "CERTIFICATE_VERIFY_FAILED" in result.flower_error or "SSL" in result.flower_error:
        return (
            f"TLS with {where} failed: its certificate does not verify against --root-certificates "
            f"{launch.root_certificates} (another CA, or a certificate that does not name this host).{said}"
        )
    return f"flower-supernode exited with code {result.code}.{said}"
