"""Real study outputs for the dashboard's tests, made without Flower: the demo's hospitals evaluated through the
coordinator's real ServerApp logic (`run_study`) over the in-process grid, each partner its real node pipeline
under its data contract (hospital-c's, edited, refuses evaluation; hospital-b's allows ε = 5 per release), then the evidence pack exported."""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest
import rfc8785
import tomli_w
from flwr.supercore.task_identity import TaskIdentity

from examples.hospitals.prepare import COORDINATOR_KEY, HOSPITALS, prepare
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.evidence.export import export_pack
from federated.audit.evidence.layout import keep_submitted_study
from federated.local.inprocess import InProcessGrid, node_config
from federated.server.app import run_study
from federated.server.context import RoundContext
from federated.study import load_study, resolve_models

ROOT = Path(__file__).resolve().parents[2]
STUDY_ID = "dashboard-demo"
REFUSING = "hospital-c"
EPSILON = 5.0  # two releases spend the contracts' whole ε = 10 per study


def _study_file(hospitals: Path, out: Path) -> Path:
    document = tomllib.loads((ROOT / "configs" / "demo-evaluation.toml").read_text(encoding="utf-8"))
    document.update(id=STUDY_ID, output_dir=str(out), round_timeout_s=5, cohort_timeout_s=5, rounds=2)
    document["evaluation"]["privacy"]["epsilon"] = EPSILON
    for model in document["models"]:
        model["path"] = str(hospitals / "models" / f"{model['name']}.onnx")
    path = hospitals / "study.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def _edit_contract(contract: Path, **changes: object) -> None:
    document = tomllib.loads(contract.read_text(encoding="utf-8"))
    document.update(changes)
    contract.write_text(tomli_w.dumps(document), encoding="utf-8")


def run_demo_study(root: Path) -> dict[str, Path]:
    """Write a completed two-round study under root/output/dashboard-demo; return where everything is."""
    hospitals, out = root / "hospitals", root / "output" / STUDY_ID
    prepare(hospitals)
    data = hospitals / "data"
    _edit_contract(data / f"{REFUSING}.contract.toml", allowed_purposes=["training"])
    _edit_contract(data / "hospital-b.contract.toml",
                   protections={"require_dp": True, "max_epsilon_per_release": EPSILON, "require_encryption": False})
    study_file = _study_file(hospitals, out)
    study = load_study(study_file)
    study_sha256 = hashlib.sha256(study_file.read_bytes()).hexdigest()
    key = hospitals / COORDINATOR_KEY  # where prepare() makes the key the contracts allow
    nodes = {}
    for index, (name, *_) in enumerate(HOSPITALS, start=1):
        nodes[index] = node_config(name, data / f"{name}.csv", data / f"{name}.toml", root / "nodes") | {
            "contract": str(data / f"{name}.contract.toml")}
    out.mkdir(parents=True)
    keep_submitted_study(study_file, out)
    models = resolve_models(study, study_file)
    trail = AuditTrail(out / "coordinator-trail.jsonl", actor="coordinator")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("_run_id", "_node_id", "_task_id"):  # the identity a ServerApp process has
            patch.setattr(TaskIdentity, name, 1)
        audit = CoordinatorAudit.for_study(trail, key, study_id=study.id)
        trail.append("study_started", study=study.id, study_sha256=study_sha256, rounds=study.rounds,
                     min_cohort=study.min_cohort, models={m.name: m.sha256 for m in models}, coordinator_key=audit.fingerprint)
        run_study(RoundContext(InProcessGrid(nodes), trail, audit, study=study, study_sha256=study_sha256), models, run_id=1)
        audit.checkpoint()
    pack = out / "evidence.zip"
    summary = export_pack(out, pack, study_file=study_file, key=key,
                          partner_trails=[root / "nodes" / name for name, *_ in HOSPITALS],
                          partner_manifests=[hospitals / "data" / f"{name}.toml" for name, *_ in HOSPITALS if name != REFUSING])
    assert summary.problem is None, summary.problem
    return {"output": root / "output", "study": out, "pack": pack, "nodes": root / "nodes", "hospitals": hospitals,
            "coordinator_pub": key.with_name("coordinator.key.pub")}


def tampered_copy(study: Path, into: Path) -> Path:
    """A copy of a study's output whose coordinator trail says a round had other contributors (a forged entry)."""
    copy = into / study.name
    shutil.copytree(study, copy)
    (copy / "evidence.zip").unlink()
    trail = copy / "coordinator-trail.jsonl"
    lines = trail.read_bytes().split(b"\n")
    index = next(i for i, line in enumerate(lines) if b'"round_completed"' in line)
    entry = json.loads(lines[index])
    entry["details"]["contributors"] = ["hospital-a"]
    lines[index] = rfc8785.dumps(entry)  # canonical, so the forgery is caught by the hash chain, not by its form
    trail.write_bytes(b"\n".join(lines))
    return copy
