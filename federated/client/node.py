"""Starting a partner's node: check the local data, then run Flower's `flower-supernode`.

The node's config points the ClientApp at the partner's data, manifest and trail; the
ClientApp itself comes from this installed Accord, never from the coordinator.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from crypto.node_auth import NodeAuthKey
from federated.audit import AuditTrail
from federated.audit.keys import pinned_fingerprint
from federated.client.data import PartnerFile, check_partner_file, load_manifest
from federated.client.progress import TrailFollower
from federated.client.settings import NodeSettings
from federated.errors import ConfigError
from federated.runtime.flower import (
    flower_env,
    parse_address,
    require_transport,
    start_reaper,
)
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
    log_file: Path | None = None  # Flower's own output and the node's lines (default: WORKDIR/node.log)
    log_level: str = "INFO"  # Flower's log level in the log file (FLWR_LOG_LEVEL)
    health_server_address: str | None = None  # flower-supernode --health-server-address HOST:PORT

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
        if self.health_server_address is not None:
            command += ["--health-server-address", self.health_server_address]
        return command

    @property
    def log_path(self) -> Path:
        return self.log_file or self.flwr_home.parent / "node.log"


def check_local_data(data: Path, manifest: Path) -> PartnerFile:
    """Check the partner's data exactly as a task would, in one pass bounded by a batch (raises on any mismatch)."""
    return check_partner_file(data, load_manifest(manifest))


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
    log_file: Path | None = None,
    log_level: str = "INFO",
    health_server_address: str | None = None,
) -> tuple[NodeLaunch, PartnerFile]:
    host, _ = parse_address(coordinator, option="--coordinator")
    if health_server_address is not None:
        parse_address(health_server_address, option="--health-server-address")
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
        log_file=log_file.resolve() if log_file is not None else None, log_level=log_level.upper(),
        health_server_address=health_server_address,
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


def run_node(launch: NodeLaunch, say: Callable[[str], None]) -> NodeExit:
    """Run the SuperNode in the foreground until it exits or this process is told to stop.

    Flower's output (and uvicorn's, and its reconnection attempts) goes to the log file; `say` gets
    the node's own lines: one per task, read from the partner's trail, and connection changes.
    Flower's explanation of an error exit is kept.
    """
    launch.flwr_home.mkdir(parents=True, exist_ok=True)
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    AuditTrail(launch.settings.trail, actor=launch.settings.partner_id)
    start_reaper()  # the SuperNode, its SuperExec and ClientApps end with this command, even on SIGKILL
    env = flower_env(launch.flwr_home) | {"FLWR_LOG_LEVEL": launch.log_level}
    process = subprocess.Popen(
        launch.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    tail: deque[str] = deque(maxlen=200)
    log = open(launch.log_path, "a", encoding="utf-8")
    lock = threading.Lock()

    def note(line: str) -> None:
        """A node line: on the console and, timestamped, in the log file."""
        say(line)
        with lock:
            if not log.closed:
                log.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} accord: {_MARKUP.sub('', line)}\n")
                log.flush()

    connection = ConnectionWatch(launch.coordinator, note)

    def relay() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with lock:
                if not log.closed:  # the SuperExec may hold the pipe a while after the SuperNode ended
                    log.write(_ANSI.sub("", line))
                    log.flush()
            tail.append(line)
            connection.feed(line)

    follower = TrailFollower(launch.settings.trail, note)
    follower.start()
    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        code = process.wait()
        reader.join(timeout=2)  # the SuperExec it spawned inherits the pipe and may outlive it a while
    finally:
        follower.stop()
        with lock:
            log.close()
    return NodeExit(code, flower_exit_message(list(tail)))


_MARKUP = re.compile(r"\[/?[a-z ]*\]")


class ConnectionWatch:
    """Says once that the coordinator is unreachable (Flower retries quietly, in the log), and once that it is back."""

    def __init__(self, coordinator: str, say: Callable[[str], None]) -> None:
        self.coordinator, self.say, self.lost = coordinator, say, False

    def feed(self, line: str) -> None:
        if "Connection attempt failed" in line and not self.lost:
            self.lost = True
            self.say(f"[yellow]the coordinator at {self.coordinator} is unreachable[/]; retrying quietly (Flower's attempts go to the log)")
        elif self.lost and ("Connection successful" in line or "[RUN" in line):
            self.lost = False
            self.say(f"connected to the coordinator at {self.coordinator} again")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def flower_exit_message(lines: Iterable[str]) -> str:
    """The last "Exit Code: N ... For more information" block Flower printed, without colours."""
    text = [_ANSI.sub("", line).rstrip() for line in lines]
    starts = [i for i, line in enumerate(text) if "Exit Code:" in line]
    if not starts:
        return ""
    block: list[str] = []
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
