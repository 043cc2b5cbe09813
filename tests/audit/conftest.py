"""A study driven message by message, without Flower: the calls the ServerApp and ClientApp make.

`SimulatedStudy` writes what a real evaluation study leaves behind — the coordinator's trail
and checkpoint store, the submitted study file, results.json and report.md (with their
hashes in the trail, sealed: partners cosign a checkpoint covering them), and each partner's
node directory — in well under a second, so the failure matrix can tamper with fresh copies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from accord.hashing import sha256_bytes
from crypto import Identity
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.errors import AuditRefusal
from federated.audit.evidence.layout import SUBMITTED_STUDY
from federated.audit.partner_audit import PartnerAudit
from federated.messages.common import PartnerInfo, payload_sha256
from federated.messages.evaluation import ModelRef, TaskSpec, build_reply, build_task
from federated.messages.seal import SealSpec, build_seal_reply, build_seal_task
from federated.study import EvaluationSettings

MODEL = b"onnx model bytes"
STUDY_TOML = 'id = "s1"\npurpose = "evaluation"\ntitle = "A simulated study"\noutput_dir = "."\n'


def task_spec(round_number: int, model: bytes = MODEL) -> TaskSpec:
    return TaskSpec(
        study="s1", round=round_number, study_sha256=sha256_bytes(STUDY_TOML.encode()),
        models=[ModelRef(name="m", sha256=sha256_bytes(model), output="probabilities")],
        evaluation=EvaluationSettings(score_bins=10, calibration_bins=5),
    )


@dataclass
class SimulatedPartner:
    name: str
    workdir: Path
    identity: Identity = field(default_factory=Identity.generate)
    coordinator_key: str | None = None

    @property
    def trail(self) -> Path:
        return self.workdir / "trail.jsonl"

    @property
    def manifest(self) -> Path:
        path = self.workdir / "manifest.toml"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            path.write_text(f'dataset_id = "{self.name}"\nfeatures = ["x"]\nlabel = "y"\nsha256 = "{"c" * 64}"\n')
        return path

    def handle(self, content):
        """What the ClientApp does with one task: check and cosign, log, work, seal."""
        trail = AuditTrail(self.trail, actor=self.name)
        audit = PartnerAudit(self.trail, self.identity, partner_id=self.name, coordinator_key=self.coordinator_key)
        spec = TaskSpec.model_validate_json(content.config_records["task"]["spec"])
        where = {"study": spec.study, "round": spec.round}
        try:
            checked = audit.check_task(content, spec.sha256())
        except AuditRefusal as exc:
            trail.append("task_refused", clause="audit", reason=str(exc), task_sha256=spec.sha256(), **where)
            info = PartnerInfo(partner=self.name, status="refused", clause="audit", reason=str(exc))
            return audit.attach_reply_audit(build_reply(info, {})), info
        trail.append("task_received", task_sha256=spec.sha256(), **checked, **where)
        manifest_sha256 = hashlib.sha256(self.manifest.read_bytes()).hexdigest()
        trail.append("task_accepted", manifest_sha256=manifest_sha256, count=10, **where)
        trail.append("result_sent", payload_sha256=sha256_bytes(f"{self.name}/{spec.round}".encode()), **where)
        info = PartnerInfo(partner=self.name, status="ok", manifest_sha256=manifest_sha256, count=10)
        return audit.attach_reply_audit(build_reply(info, {})), info

    def handle_seal(self, content, spec: SealSpec):
        """What the ClientApp does with the closing seal: check and cosign, no data."""
        trail = AuditTrail(self.trail, actor=self.name)
        audit = PartnerAudit(self.trail, self.identity, partner_id=self.name, coordinator_key=self.coordinator_key)
        where = {"study": spec.study, "round": None}
        trail.append("task_received", task_sha256=spec.sha256(), step="seal", **audit.check_task(content, spec.sha256()), **where)
        info = PartnerInfo(partner=self.name, status="ok")
        trail.append("result_sent", payload_sha256=payload_sha256(info), step="seal", **where)
        return audit.attach_reply_audit(build_seal_reply(info)), info


@dataclass
class SimulatedStudy:
    out: Path
    partners: list[SimulatedPartner]
    identity: Identity = field(default_factory=Identity.generate)

    @property
    def trail_path(self) -> Path:
        return self.out / "coordinator-trail.jsonl"

    def coordinator(self) -> CoordinatorAudit:
        trail = AuditTrail(self.trail_path, actor="coordinator")
        return CoordinatorAudit(trail, self.identity, study_id="s1")

    def start(self) -> CoordinatorAudit:
        coordinator = self.coordinator()
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / "coordinator.key").exists():
            self.identity.save(self.out / "coordinator.key")
        (self.out / SUBMITTED_STUDY).write_text(STUDY_TOML)
        coordinator.trail.append("study_started", study="s1", study_sha256=sha256_bytes(STUDY_TOML.encode()),
                                 models={"m": sha256_bytes(MODEL)}, coordinator_key=coordinator.fingerprint)
        return coordinator

    def run_round(self, coordinator: CoordinatorAudit, round_number: int, *, lose: frozenset[str] = frozenset()) -> dict[str, str | None]:
        """One round as rounds.collect_replies runs it; replies of partners in `lose` never arrive."""
        spec = task_spec(round_number)
        where = {"study": "s1", "round": round_number}
        coordinator.checkpoint()
        problems: dict[str, str | None] = {}
        for node, partner in enumerate(self.partners, start=1):
            content = build_task(spec, {"m": MODEL})
            sent = coordinator.attach_task(content, node, spec.sha256())
            coordinator.trail.append("task_sent", node=str(node), task_sha256=spec.sha256(), **sent, **where)
            reply, info = partner.handle(content)
            if partner.name in lose:
                continue
            problem = coordinator.receive(node, reply, partner=partner.name, accepted=info.status == "ok", where=where)
            problems[partner.name] = problem or (None if info.status == "ok" else f"refused: {info.reason}")
            if problem is None and info.status == "ok":
                coordinator.trail.append("result_received", node=str(node), partner=partner.name, count=10,
                                         payload_sha256=sha256_bytes(f"{partner.name}/{round_number}".encode()),
                                         manifest_sha256=info.manifest_sha256, data_sha256="", **where)
        coordinator.trail.append("round_completed", contributors=[p for p, v in problems.items() if v is None], **where)
        return problems

    def seal(self, coordinator: CoordinatorAudit) -> None:
        """The closing seal (server.app.seal_study): every partner cosigns a checkpoint covering the report."""
        spec = SealSpec(study="s1", rounds=2, status="completed")
        where = {"study": "s1", "round": None}
        coordinator.checkpoint()
        for node, partner in enumerate(self.partners, start=1):
            content = build_seal_task(spec)
            sent = coordinator.attach_task(content, node, spec.sha256())
            coordinator.trail.append("task_sent", node=str(node), task_sha256=spec.sha256(), **sent, **where)
            reply, info = partner.handle_seal(content, spec)
            assert coordinator.receive(node, reply, partner=partner.name, accepted=True, where=where) is None
            coordinator.trail.append("result_received", node=str(node), partner=partner.name,
                                     payload_sha256=payload_sha256(info), **where)

    def finish(self, coordinator: CoordinatorAudit, *, seal: bool = True) -> None:
        results = {"study": "s1", "purpose": "evaluation", "status": "completed", "message": "",
                   "study_sha256": sha256_bytes(STUDY_TOML.encode()),
                   "models": [{"name": "m", "sha256": sha256_bytes(MODEL), "path": "m.onnx"}],
                   "rounds": [{"round": 1, "contributors": [p.name for p in self.partners], "refused": [], "missing": [],
                               "pooled": {"m": {"count": 20.0, "accuracy": 0.9}}, "matrix": {}, "subgroups": {}}]}
        (self.out / "results.json").write_text(json.dumps(results, indent=2))
        (self.out / "report.md").write_text("# Study `s1` — evaluation report\n")
        files = {name: hashlib.sha256((self.out / name).read_bytes()).hexdigest() for name in ("results.json", "report.md")}
        coordinator.trail.append("report_written", study="s1", files=files)
        if seal:
            self.seal(coordinator)
        coordinator.trail.append("study_completed", study="s1", rounds=2)
        coordinator.checkpoint()

    def run(self, rounds: int = 2) -> CoordinatorAudit:
        coordinator = self.start()
        for round_number in range(1, rounds + 1):
            assert self.run_round(coordinator, round_number) == {p.name: None for p in self.partners}
        self.finish(coordinator)
        return coordinator


@pytest.fixture
def study(tmp_path: Path) -> SimulatedStudy:
    return SimulatedStudy(tmp_path / "out", [SimulatedPartner(f"hospital-{x}", tmp_path / "nodes" / f"hospital-{x}") for x in "ab"])
