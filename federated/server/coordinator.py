"""The coordinator CLI's work: start or attach to a SuperLink, submit the study, follow it.

Progress comes from the coordinator's own audit trail (the ServerApp appends to it as the
study runs), so what the operator sees is what the trail records.
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
from federated.audit import AuditTrail
from federated.audit.evidence import keep_submitted_study
from federated.audit.keys import COORDINATOR_KEY_NAME, RUN_CONFIG_KEY, load_or_create_identity
from federated.errors import FlowerRuntimeError
from federated.flower_runtime import (
    parse_address,
    run_log,
    run_status,
    start_process,
    stop_process,
    submit_run,
    wait_for_port,
    write_bundle,
    write_connection,
)
from federated.server.app import trail_path
from federated.study import Study, load_study, resolve_models

_POLL_S = 0.5
_STATUS_EVERY_S = 5.0


@dataclass(frozen=True)
class Transport:
    insecure: bool
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_ca_certfile: Path | None = None

    def superlink_args(self) -> list[str]:
        if self.insecure:
            return ["--insecure"]
        return [
            "--ssl-certfile", str(self.ssl_certfile), "--ssl-keyfile", str(self.ssl_keyfile),
            "--ssl-ca-certfile", str(self.ssl_ca_certfile),
        ]


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
    superlink: subprocess.Popen | None
    coordinator_key: Path | None = None
    key_created: bool = False  # the CLI says so: partners pin this key on first contact


def start_superlink(
    host: str, port: int, transport: Transport, flwr_home: Path, log_path: Path, *, simulation: bool = False
) -> subprocess.Popen:
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
) -> Submission:
    """Validate and hash the study, make sure a SuperLink runs, submit the run, log it."""
    study_file = Path(study_file).resolve()
    study = load_study(study_file)
    models = resolve_models(study, study_file)
    study_sha256 = sha256_file(study_file)
    study.output_dir.mkdir(parents=True, exist_ok=True)
    key = (key or study.output_dir / COORDINATOR_KEY_NAME).resolve()
    identity, key_created = load_or_create_identity(key)
    keep_submitted_study(study_file, study.output_dir)
    flwr_home = (flwr_home or study.output_dir / ".flwr").resolve()
    process = None
    if superlink is None:
        address = f"{host}:{port}"
        process = start_superlink(
            host, port, transport, flwr_home, study.output_dir / "superlink.log", simulation=simulation is not None
        )
    else:
        parse_address(superlink, option="--superlink")
        address = superlink
    try:
        write_connection(flwr_home, address, insecure=transport.insecure, root_certificates=transport.ssl_ca_certfile)
        bundle = write_bundle(
            flwr_home / "bundle", name=f"accord-{study.id}".lower().replace("_", "-").replace(".", "-"),
            run_config={"study-file": str(study_file), "study-sha256": study_sha256, RUN_CONFIG_KEY: str(key)}
            | ({"simulation-dir": str(simulation.data_dir.resolve())} if simulation else {}),
        )
        run_id = submit_run(bundle, flwr_home, federation_config=simulation.federation_config() if simulation else None)
    except Exception:
        if process is not None:
            stop_process(process)
        raise
    AuditTrail(trail_path(study), actor="coordinator").append(
        "study_submitted", study=study.id, study_sha256=study_sha256, flower_run=str(run_id),
        superlink=address, models={m.name: m.sha256 for m in models}, coordinator_key=identity.fingerprint,
    )
    return Submission(study, study_file, run_id, flwr_home, process, key, key_created)


def follow(submission: Submission, on_entry: Callable[[dict[str, Any]], None], *, timeout_s: float) -> dict[str, Any]:
    """Feed new trail entries of this run to `on_entry` until the study ends; return results.

    Raises `FlowerRuntimeError` if Flower reports the run finished without a result, or
    nothing ends within `timeout_s`.
    """
    path = trail_path(submission.study)
    position = _start_of_run(path, submission.run_id)
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


def _start_of_run(path: Path, run_id: int) -> int:
    """Byte offset just after this run's `study_submitted` entry."""
    offset = 0
    with open(path, "rb") as handle:
        for line in handle:
            offset += len(line)
            entry = json.loads(line)
            if entry["kind"] == "study_submitted" and entry["details"].get("flower_run") == str(run_id):
                return offset
    raise FlowerRuntimeError(f"{path}: no study_submitted entry for run {run_id}")


def _read_results(submission: Submission, final_entry: dict[str, Any]) -> dict[str, Any]:
    results_path = submission.study.output_dir / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    if results.get("flower_run") != str(submission.run_id):
        reason = final_entry["details"].get("reason", "no results written")
        raise FlowerRuntimeError(f"study {submission.study.id} failed: {reason}")
    return results


def expected_duration_s(study: Study) -> float:
    """A generous bound on a study's wall time, used as the CLI's watchdog."""
    return study.cohort_timeout_s + study.rounds * (study.round_timeout_s + 60) + 120
