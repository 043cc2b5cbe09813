"""A whole federation on one machine: the coordinator CLI and partner nodes as processes.

Used by the demo and the end-to-end tests; each process is the same command a real
coordinator or partner would type, bound to 127.0.0.1 on free ports. Plain HTTP
(`--insecure`) unless `tls` is given: then the SuperLink serves TLS and partners verify it
against the CA (secure mode; node authentication options go in the `extra` arguments).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from federated.runtime.flower import stop_process, wait_for_port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1")
    return env


@dataclass
class Partner:
    name: str
    data: Path
    manifest: Path


@dataclass(frozen=True)
class LocalTLS:
    """The SuperLink's certificate, its key and the CA partners trust (`python -m crypto.keys ca`)."""

    ca_certificate: Path
    certificate: Path
    key: Path

    def coordinator_args(self) -> list[str]:
        return ["--ssl-certfile", str(self.certificate), "--ssl-keyfile", str(self.key), "--ssl-ca-certfile", str(self.ca_certificate)]

    def partner_args(self) -> list[str]:
        return ["--root-certificates", str(self.ca_certificate)]


@dataclass
class LocalFederation:
    """Start with `start_coordinator`, then `start_partner` for each; `stop` ends all."""

    workdir: Path
    port: int = field(default_factory=free_port)
    coordinator: subprocess.Popen[bytes] | None = None
    partners: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tls: LocalTLS | None = None

    def start_coordinator(self, study: Path, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        transport = self.tls.coordinator_args() if self.tls else ["--insecure"]
        command = [sys.executable, "-m", "federated.server", "--study", str(study), *transport, "--port", str(self.port), *extra]
        if self.tls is not None and log is None:
            log = self.workdir / "coordinator.log"  # read below: partners may only start once keys are registered
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        output = open(log, "ab") if log else None
        self.coordinator = subprocess.Popen(command, env=_quiet_env(), stdout=output, stderr=subprocess.STDOUT if output else None)
        wait_for_port("127.0.0.1", self.port, timeout_s=90, process=self.coordinator)
        if self.tls is not None and log is not None:  # (log is set above whenever tls is)
            # With SuperNode authentication a node whose key is not registered yet is refused at once.
            _wait_for_text(log, "submitted study", process=self.coordinator, timeout_s=90)
        return self.coordinator

    def start_partner(self, partner: Partner, *extra: str) -> subprocess.Popen[bytes]:
        node_dir = self.workdir / partner.name
        node_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "federated.client", "--data", str(partner.data), "--manifest", str(partner.manifest),
            "--coordinator", f"127.0.0.1:{self.port}", *(self.tls.partner_args() if self.tls else ["--insecure"]),
            "--port", str(free_port()),
            "--partner-id", partner.name, "--workdir", str(node_dir), "--log-file", str(node_dir / "flower.log"), *extra,
        ]
        # node.log: what the partner's console shows (a line per task, errors); flower.log: Flower's own output.
        with open(node_dir / "node.log", "ab") as log:
            process = subprocess.Popen(command, env=_quiet_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.partners[partner.name] = process
        return process

    def stop_partner(self, name: str) -> None:
        stop_process(self.partners[name], grace_s=5)

    def kill_partner(self, name: str) -> None:
        """SIGKILL a partner's whole process group, as if its machine vanished."""
        import signal

        os.killpg(self.partners[name].pid, signal.SIGKILL)
        self.partners[name].wait()

    def stop(self) -> None:
        for name in list(self.partners):
            if self.partners[name].poll() is None:
                self.stop_partner(name)
        if self.coordinator is not None and self.coordinator.poll() is None:
            self.coordinator.terminate()
            try:
                self.coordinator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.coordinator.kill()


def _wait_for_text(path: Path, text: str, *, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"the coordinator exited with code {process.returncode}; see {path}")
        time.sleep(0.2)
    raise TimeoutError(f"{path} does not say {text!r} after {timeout_s:g} s")
