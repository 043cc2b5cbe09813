"""The coordinator CLI's work: start or attach to a SuperLink, submit the study, follow it.

Progress comes from the coordinator's own audit trail (the ServerApp appends to it as the
study runs), so what the operator sees is what the trail records.

Each run writes to a folder of its own, OUTPUT_DIR/runs/RUN_ID/ (`federated.runtime.runs`; the
ServerApp gets it in the run config), and OUTPUT_DIR/latest points to the newest. The signing key
stays beside the runs (default OUTPUT_DIR/coordinator.key); before any Flower process starts, a key
other than the one that signed the earlier runs is refused, naming that key's file.

Secure mode (required off 127.0.0.1): TLS on the SuperLink plus Flower's SuperNode
authentication (`flower-superlink --enable-supernode-auth`). Flower then refuses to
self-register nodes; only the partners' public keys registered here, through Flower's Control
API (`flwr supernode register`), can activate a node, so only authorized partners ever appear
in the cohort. The registered keys (name, node id, fingerprint) go into the trail.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.hashing import sha256_file
from crypto import Identity
from crypto.node_auth import AuthorizedNode
from federated.audit import AuditTrail
from federated.audit.evidence.layout import keep_submitted_study
from federated.audit.keys import (
    COORDINATOR_KEY_NAME,
    RUN_CONFIG_KEY,
    load_or_create_identity,
)
from federated.errors import ConfigError, FlowerRuntimeError
from federated.runtime.flower import (
    is_loopback,
    parse_address,
    register_supernode,
    require_transport,
    run_log,
    run_status,
    start_process,
    stop_process,
    submit_run,
    wait_for_port,
    write_bundle,
    write_connection,
)
from federated.runtime.runs import (
    RUN_CONFIG_EXPECTED_WAIT,
    RUN_CONFIG_RUN_DIR,
    mark_latest,
    new_run_dir,
    run_directories,
)
from federated.reporting.results import StudyResults
from federated.runtime.simulation import SIMULATION_HE_SECRET
from federated.server.app import TRAIL_NAME, trail_path
from federated.server.encryption import load_study_context
from federated.study import Study, load_study, resolve_models

_POLL_S = 0.5
_STATUS_EVERY_S = 5.0


@dataclass(frozen=True)
class Transport:
    insecure: bool
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_ca_certfile: Path | None = None
    supernode_auth: bool = False  # Flower's SuperNode authentication: registered node keys only

    def superlink_args(self) -> list[str]:
        if self.insecure:
            return ["--insecure"]
        return [
            "--ssl-certfile", str(self.ssl_certfile), "--ssl-keyfile", str(self.ssl_keyfile),
            "--ssl-ca-certfile", str(self.ssl_ca_certfile), *(["--enable-supernode-auth"] if self.supernode_auth else []),
        ]

    def check(self, host: str, *, attach: bool, authorized_nodes: bool) -> None:
        """Refuse a transport that is not secure mode off loopback, or that Flower would refuse."""
        has_certificates = None not in (self.ssl_certfile, self.ssl_keyfile, self.ssl_ca_certfile)
        require_transport(host, insecure=self.insecure, has_certificates=has_certificates, option="--superlink/--host")
        if self.supernode_auth and self.insecure:
            raise ConfigError("--supernode-auth needs TLS (--ssl-certfile, --ssl-keyfile, --ssl-ca-certfile), not --insecure")
        if attach:
            if self.supernode_auth:
                raise ConfigError(
                    "--supernode-auth applies to a SuperLink this command starts; with --superlink, that SuperLink's "
                    "operator enables it (flower-superlink --enable-supernode-auth); --authorized-nodes still registers keys"
                )
            return
        if self.supernode_auth and not authorized_nodes:
            raise ConfigError("--supernode-auth needs --authorized-nodes: without registered keys no partner can connect")
        if authorized_nodes and not self.supernode_auth:
            raise ConfigError("--authorized-nodes takes effect only with --supernode-auth")
        if not is_loopback(host) and not self.supernode_auth:
            raise ConfigError(
                f"--host {host}: off 127.0.0.1 the SuperLink runs in secure mode, TLS and SuperNode authentication: "
                "add --supernode-auth --authorized-nodes DIR"
            )


@dataclass(frozen=True)
class Simulation:
    """Run the study under Flower's simulation engine (Ray) with `partners` virtual nodes,
    whose data are the `partner-NNN.csv`/`.toml` files in `data_dir`."""

    partners: int
    data_dir: Path
    cpus_per_partner: int = 1

    def federation_config(self) -> dict[str, int]:
        return {"num-supernodes": self.partners, "client-resources-num-cpus": self.cpus_per_partner}


@dataclass
class Submission:
    study: Study
    study_file: Path
    run_id: int
    flwr_home: Path
    superlink: subprocess.Popen[bytes] | None
    coordinator_key: Path | None = None
    key_created: bool = False  # the CLI says so: partners pin this key on first contact
    authorized: list[dict[str, Any]] | None = None  # node keys registered with the SuperLink (name, node, fingerprint)
    output_dir: Path | None = None  # the study's output_dir; `study.output_dir` is this run's folder under it


def earlier_coordinator_key(output_dir: Path) -> tuple[str, str | None] | None:
    """(fingerprint, key file) of the coordinator key that signed the latest earlier run in `output_dir`."""
    trails = [run / TRAIL_NAME for run in reversed(run_directories(output_dir))] + [output_dir / TRAIL_NAME]
    for trail in trails:
        if not trail.is_file():
            continue
        for line in trail.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("kind") == "study_submitted" and entry["details"].get("coordinator_key"):
                return entry["details"]["coordinator_key"], entry["details"].get("coordinator_key_file")
    return None


def check_coordinator_key(key: Path, output_dir: Path) -> None:
    """Refuse, naming both files, a `--key` that is not the key earlier runs in `output_dir` were signed with:
    partners pinned that key and refuse a coordinator whose key changed."""
    earlier = earlier_coordinator_key(output_dir)
    if earlier is None:
        return
    fingerprint, earlier_file = earlier
    if key.is_file():
        current = Identity.load(key).fingerprint
        if current == fingerprint:
            return
        found = f"{key} holds key {current}"
    else:
        found = f"{key} does not exist (a new key would be created there)"
    where = f" in {earlier_file}" if earlier_file else ""
    raise ConfigError(
        f"coordinator key: earlier runs in {output_dir} were signed with key {fingerprint}{where}, but {found}; "
        f"partners pinned the earlier key and would refuse this one: pass --key {earlier_file or 'THAT-KEY-FILE'}"
    )


def register_authorized_nodes(nodes: list[AuthorizedNode], flwr_home: Path) -> list[dict[str, Any]]:
    """Register each partner's SuperNode public key with the SuperLink; what the trail records."""
    registered = []
    for node in nodes:
        node_id = register_supernode(node.line, node.name, flwr_home)
        registered.append({"name": node.name, "node": None if node_id is None else str(node_id), "fingerprint": node.fingerprint})
    return registered


def start_superlink(
    host: str, port: int, transport: Transport, flwr_home: Path, log_path: Path, *, simulation: bool = False
) -> subprocess.Popen[bytes]:
    command = [
        "flower-superlink", *transport.superlink_args(), "--disable-runtime-dependency-installation",
        "--host", host, "--port", str(port), *(["--simulation"] if simulation else []),
    ]
    process = start_process(command, flwr_home, log_path)
    try:
        wait_for_port(host, port, timeout_s=60, process=process)
    except FlowerRuntimeError as exc:
        stop_process(process)
        raise FlowerRuntimeError(f"SuperLink on {host}:{port} did not start ({exc}); see {log_path}") from None
    return process


def submit_study(
    study_file: Path,
    *,
    superlink: str | None,
    host: str,
    port: int,
    transport: Transport,
    flwr_home: Path | None,
    simulation: Simulation | None = None,
    key: Path | None = None,
    authorized_nodes: list[AuthorizedNode] | None = None,
    wait_for_partners_s: float | None = None,
) -> Submission:
    """Validate and hash the study, make sure a SuperLink runs, register the authorized
    partners' node keys, submit the run, log it."""
    study_file = Path(study_file).resolve()
    study = load_study(study_file)
    models = resolve_models(study, study_file)
    he_context = load_study_context(study, study_file)  # refuses a secret key before anything starts
    if he_context is not None and simulation is not None and not (simulation.data_dir / SIMULATION_HE_SECRET).is_file():
        raise ConfigError(
            f"{study_file}: encryption is enabled; in simulation every virtual partner reads the study's secret "
            f"context from {simulation.data_dir / SIMULATION_HE_SECRET} (copy he-secret-context.json there)"
        )
    study_sha256 = sha256_file(study_file)
    output_dir = study.output_dir.resolve()
    key = (key or output_dir / COORDINATOR_KEY_NAME).resolve()
    check_coordinator_key(key, output_dir)  # before any Flower process starts
    identity, key_created = load_or_create_identity(key)
    flwr_home = (flwr_home or output_dir / ".flwr").resolve()
    run_dir = new_run_dir(output_dir)  # never an earlier run's folder
    study = study.model_copy(update={"output_dir": run_dir})
    keep_submitted_study(study_file, run_dir)
    process = None
    if superlink is None:
        address = f"{host}:{port}"
        process = start_superlink(host, port, transport, flwr_home, run_dir / "superlink.log", simulation=simulation is not None)
    else:
        parse_address(superlink, option="--superlink")
        address = superlink
    try:
        write_connection(flwr_home, address, insecure=transport.insecure, root_certificates=transport.ssl_ca_certfile)
        authorized = register_authorized_nodes(authorized_nodes, flwr_home) if authorized_nodes else None
        bundle = write_bundle(
            flwr_home / "bundle", name=f"accord-{study.id}".lower().replace("_", "-").replace(".", "-"),
            run_config={"study-file": str(study_file), "study-sha256": study_sha256, RUN_CONFIG_KEY: str(key),
                        RUN_CONFIG_RUN_DIR: str(run_dir)}
            | ({RUN_CONFIG_EXPECTED_WAIT: str(wait_for_partners_s)} if wait_for_partners_s is not None else {})
            | ({"simulation-dir": str(simulation.data_dir.resolve())} if simulation else {}),
        )
        run_id = submit_run(bundle, flwr_home, federation_config=simulation.federation_config() if simulation else None)
    except Exception:
        if process is not None:
            stop_process(process)
        raise
    trail = AuditTrail(trail_path(study), actor="coordinator")
    if authorized is not None:
        trail.append("nodes_authorized", study=study.id, superlink=address, nodes=authorized)
    he: dict[str, Any] = {"he_fingerprint": he_context.fingerprint} if he_context is not None else {}
    trail.append(
        "study_submitted", study=study.id, study_sha256=study_sha256, flower_run=str(run_id),
        superlink=address, models={m.name: m.sha256 for m in models}, coordinator_key=identity.fingerprint,
        coordinator_key_file=str(key), run_dir=str(run_dir), **he,
    )
    mark_latest(output_dir, run_dir)
    return Submission(study, study_file, run_id, flwr_home, process, key, key_created, authorized, output_dir)


def follow(submission: Submission, on_entry: Callable[[dict[str, Any]], None], *, timeout_s: float) -> dict[str, Any]:
    """Feed new trail entries of this run to `on_entry` until the study ends; return results.

    Raises `FlowerRuntimeError` if Flower reports the run finished without a result, or
    nothing ends within `timeout_s`.
    """
    path = trail_path(submission.study)
    position = 0  # the run's folder holds this run's trail only
    deadline = time.monotonic() + timeout_s
    next_status = time.monotonic() + _STATUS_EVERY_S
    while True:
        # Flower's status is read before the trail, so a run that finished after writing its
        # last entry is never mistaken for one that finished without results.
        now = time.monotonic()
        finished = False
        if now > next_status:
            next_status = now + _STATUS_EVERY_S
            status = run_status(submission.run_id, submission.flwr_home)
            finished = status.startswith("finished")
        with open(path, "rb") as handle:
            handle.seek(position)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        position += len(complete)
        for line in complete.splitlines():
            entry = json.loads(line)
            on_entry(entry)
            if entry["kind"] in ("study_completed", "study_failed"):
                return _read_results(submission, entry)
        if finished:
            log = run_log(submission.run_id, submission.flwr_home)
            raise FlowerRuntimeError(f"Flower run {submission.run_id} ended ({status}) without results:\n{log[-3000:]}")
        if now > deadline:
            raise FlowerRuntimeError(f"study {submission.study.id} did not finish within {timeout_s:g} s")
        time.sleep(_POLL_S)


def _read_results(submission: Submission, final_entry: dict[str, Any]) -> dict[str, Any]:
    results_path = submission.study.output_dir / "results.json"
    results = StudyResults.read(results_path) if results_path.is_file() else None
    if results is None or results.flower_run != str(submission.run_id):
        reason = final_entry["details"].get("reason", "no results written")
        raise FlowerRuntimeError(f"study {submission.study.id} failed: {reason}")
    return results.document()


def expected_duration_s(study: Study) -> float:
    """A generous bound on a study's wall time, used as the CLI's watchdog."""
    return study.cohort_timeout_s + study.rounds * (study.round_timeout_s + 60) + 120
