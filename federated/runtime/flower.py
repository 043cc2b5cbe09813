"""Driving Flower's own entry points: SuperLink, SuperNode and the `flwr` CLI.

Accord never copies Flower code: it starts `flower-superlink` and `flower-supernode` as
processes and submits runs with `flwr run`. Every process gets a private FLWR_HOME,
telemetry and update checks off, and this interpreter's `bin` on PATH (Flower spawns
`flwr-serverapp`, `flwr-clientapp` and `flower-superexec` by name).

No Flower process outlives the command that started it, even one killed with SIGKILL: each
carries this command's tag in its environment, and a watchdog (`federated.runtime.reaper`,
started with the first long-lived process) ends every tagged process once the command is gone.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

from federated.errors import ConfigError, FlowerRuntimeError
from federated.runtime.reaper import TAG_VARIABLE

CONNECTION_NAME = "accord"
APP_COMPONENTS = {"serverapp": "federated.server.app:app", "clientapp": "federated.client.app:app"}
_TAG = f"{os.getpid()}-{secrets.token_hex(8)}"  # this command's tag (a fork keeps it: a child's processes are ours)
_reaper: subprocess.Popen[bytes] | None = None


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for a Flower process: private home, no telemetry, this venv's tools first."""
    env = dict(os.environ)
    # SuperExec polls for work every second by default; a round waits on it twice.
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.2")
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    env[TAG_VARIABLE] = _TAG  # inherited by whatever Flower spawns: the reaper finds them all by it
    return env


def start_reaper() -> None:
    """Start, once per command, the watchdog that ends this command's Flower processes when it dies."""
    global _reaper
    if _reaper is not None and _reaper.poll() is None:
        return
    environment = {k: v for k, v in os.environ.items() if k != TAG_VARIABLE}
    _reaper = subprocess.Popen(
        [sys.executable, "-m", "federated.runtime.reaper", str(os.getpid()), _TAG], env=environment,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def parse_address(address: str, *, option: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option}: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_transport(host: str, *, insecure: bool, has_certificates: bool, option: str) -> None:
    """Plain HTTP only on loopback; anywhere else TLS certificates are required."""
    if insecure and not is_loopback(host):
        raise ConfigError(f"{option}: --insecure is only allowed for 127.0.0.1/localhost, not {host!r}")
    if not insecure and not has_certificates:
        raise ConfigError(f"{option}: give TLS certificates, or --insecure for a 127.0.0.1 demo")


def wait_for_port(host: str, port: int, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise FlowerRuntimeError(f"Flower process exited with code {process.returncode} before {host}:{port} opened")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise FlowerRuntimeError(f"nothing listens on {host}:{port} after {timeout_s:g} s")


def write_connection(flwr_home: Path, address: str, *, insecure: bool, root_certificates: Path | None) -> None:
    """The `flwr` CLI's config: one SuperLink connection named `accord`."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    connection: dict[str, Any] = {"address": address}
    if insecure:
        connection["insecure"] = True
    if root_certificates is not None:
        connection["root-certificates"] = str(Path(root_certificates).resolve())
    document = {"superlink": {"default": CONNECTION_NAME, CONNECTION_NAME: connection}}
    (flwr_home / "config.toml").write_text(tomli_w.dumps(document), encoding="utf-8")


def write_bundle(bundle_dir: Path, *, name: str, run_config: dict[str, Any]) -> Path:
    """A Flower app bundle holding configuration only: the components are modules of the
    installed `federated` package, so the partner runs its own Accord, never shipped code."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    for stale in bundle_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    document = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": name, "version": "1.0.0", "dependencies": []},
        "tool": {"flwr": {"app": {"publisher": "accord", "components": APP_COMPONENTS, "config": run_config}}},
    }
    (bundle_dir / "pyproject.toml").write_text(tomli_w.dumps(document), encoding="utf-8")
    return bundle_dir


def _flwr(args: list[str], flwr_home: Path, *, timeout_s: float = 60) -> dict[str, Any]:
    try:
        done = subprocess.run(
            ["flwr", *args, "--format", "json"], env=flower_env(flwr_home), capture_output=True,
            text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        raise FlowerRuntimeError(f"`flwr {' '.join(args)}` did not answer within {timeout_s:g} s") from None
    payload: dict[str, Any]
    try:
        payload = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        payload = {}
    if done.returncode != 0 or not payload.get("success", False):
        detail = payload.get("error-message") or (done.stderr or done.stdout).strip()[-800:]
        raise FlowerRuntimeError(f"`flwr {' '.join(args)}` failed: {detail}")
    return payload


def submit_run(bundle_dir: Path, flwr_home: Path, *, federation_config: dict[str, int] | None = None) -> int:
    """Submit the bundle as a Flower run (`flwr run`); return the run id.

    `federation_config` (e.g. `num-supernodes`) is for a SuperLink started with `--simulation`.
    """
    extra = ["--federation-config", " ".join(f"{k}={v}" for k, v in federation_config.items())] if federation_config else []
    payload = _flwr(["run", str(bundle_dir), CONNECTION_NAME, *extra], flwr_home)
    return int(payload["run-id"])


def register_supernode(public_key_line: str, name: str, flwr_home: Path) -> int | None:
    """Register a SuperNode's public key with the SuperLink (`flwr supernode register`).

    Returns the node id Flower assigned, or None if the key was already registered (Flower
    reports "Public key already in use" and does not say which node holds it).
    """
    key_file = flwr_home / "supernode-keys" / f"{name}.pub"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(public_key_line + "\n", encoding="utf-8")
    try:
        payload = _flwr(["supernode", "register", str(key_file), CONNECTION_NAME, "--name", name], flwr_home)
    except FlowerRuntimeError as exc:
        if "[code: 23]" in str(exc):  # ApiErrorCode.PUBLIC_KEY_ALREADY_IN_USE
            return None
        raise
    return int(payload["node-id"])


def run_status(run_id: int, flwr_home: Path) -> str:
    """Flower's status of a run, e.g. `running` or `finished:completed`."""
    payload = _flwr(["ls", CONNECTION_NAME, "--run-id", str(run_id)], flwr_home)
    return str(payload["runs"][0]["status"])


def run_log(run_id: int, flwr_home: Path) -> str:
    """The ServerApp's log of a run, as `flwr log --show` prints it."""
    done = subprocess.run(
        ["flwr", "log", str(run_id), CONNECTION_NAME, "--show"], env=flower_env(flwr_home),
        capture_output=True, text=True, timeout=60, check=False,
    )
    return done.stdout + done.stderr


def start_process(command: list[str], flwr_home: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a Flower process in its own session, its output in `log_path`; it ends when this command does."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start_reaper()
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, env=flower_env(flwr_home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], *, grace_s: float = 10) -> None:
    """Stop a process group started by `start_process` (SIGTERM, then SIGKILL)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
