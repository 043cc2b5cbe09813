"""The checkpoint exchange between a coordinator and its partners, without Flower in between.

Each round the coordinator attaches its audit record to a task, the partner checks and
cosigns, seals its reply with its own checkpoint, and the coordinator takes the reply: the
same calls the ServerApp and ClientApp make, driven message by message.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from accord.hashing import sha256_bytes
from crypto import Identity, open_note
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.errors import AuditRefusal
from federated.audit.exchange import ReplyAudit, attach, read_reply_audit, read_task_audit
from federated.audit.log import cosigner
from federated.audit.partner_audit import PartnerAudit
from federated.audit.store import CheckpointStore
from federated.protocol import ModelRef, PartnerInfo, TaskSpec, build_reply, build_task
from federated.study import EvaluationSettings

MODEL = b"onnx model bytes"


def _spec(round_number: int, model: bytes = MODEL) -> TaskSpec:
    return TaskSpec(
        study="s1", round=round_number, study_sha256="a" * 64,
        models=[ModelRef(name="m", sha256=sha256_bytes(model), output="probabilities")],
        evaluation=EvaluationSettings(score_bins=10, calibration_bins=5),
    )


@dataclass
class Partner:
    name: str
    workdir: Path
    identity: Identity = field(default_factory=Identity.generate)
    coordinator_key: str | None = None

    @property
    def trail(self) -> Path:
        return self.workdir / "trail.jsonl"

    def handle(self, content) -> tuple:
        """What the ClientApp does with one task: check, log, work, seal."""
        trail = AuditTrail(self.trail, actor=self.name)
        audit = PartnerAudit(self.trail, self.identity, partner_id=self.name, coordinator_key=self.coordinator_key)
        spec = TaskSpec.model_validate_json(content.config_records["task"]["spec"])
        try:
            fields = audit.check_task(content, spec.sha256())
        except AuditRefusal as exc:
            trail.append("task_refused", clause="audit", reason=str(exc))
            info = PartnerInfo(partner=self.name, status="refused", clause="audit", reason=str(exc))
            return audit.seal(build_reply(info, {})), info
        trail.append("task_received", study=spec.study, round=spec.round, task_sha256=spec.sha256(), **fields)
        trail.append("result_sent", study=spec.study, round=spec.round, payload_sha256="b" * 64)
        info = PartnerInfo(partner=self.name, status="ok")
        return audit.seal(build_reply(info, {})), info


@dataclass
class Study:
    out: Path
    partners: list[Partner]
    identity: Identity = field(default_factory=Identity.generate)

    def coordinator(self) -> CoordinatorAudit:
        trail = AuditTrail(self.out / "coordinator-trail.jsonl", actor="coordinator")
        return CoordinatorAudit(trail, self.identity, study_id="s1")

    def run_round(self, coordinator: CoordinatorAudit, round_number: int, *, lose: set[str] = frozenset()) -> dict[str, str | None]:
        """One round; replies of partners in `lose` never reach the coordinator."""
        spec = _spec(round_number)
        problems: dict[str, str | None] = {}
        for node, partner in enumerate(self.partners, start=1):
            content = build_task(spec, {"m": MODEL})
            coordinator.trail.append("task_sent", node=str(node), **coordinator.attach_task(content, node, spec.sha256()))
            reply, info = partner.handle(content)
            if partner.name in lose:
                continue
            problems[partner.name] = coordinator.receive(
                node, reply, partner=partner.name, accepted=info.status == "ok", where={"study": "s1", "round": round_number}
            ) or (None if info.status == "ok" else f"refused: {info.reason}")
        coordinator.trail.append("round_completed", study="s1", round=round_number)
        coordinator.checkpoint()
        return problems


@pytest.fixture
def study(tmp_path: Path) -> Study:
    return Study(tmp_path / "out", [Partner(f"hospital-{x}", tmp_path / f"node-{x}") for x in "ab"])


def _run(study: Study, rounds: int) -> CoordinatorAudit:
    coordinator = study.coordinator()
    coordinator.checkpoint()
    for round_number in range(1, rounds + 1):
        assert study.run_round(coordinator, round_number) == {p.name: None for p in study.partners}
    return coordinator


def test_partners_cosign_every_checkpoint_they_are_sent(study):
    coordinator = _run(study, 2)
    checkpoints = coordinator.log.checkpoints()
    assert len(checkpoints) == 3  # cohort ready, after round 1, after round 2
    partners = [cosigner(CheckpointStore.beside(p.trail).own.read_key()) for p in study.partners]
    for signed in checkpoints[:2]:
        opened = open_note(signed.note.text, verifiers=[coordinator.log.verifier, *partners])
        assert opened.signers == (coordinator.origin, "accord.partner/hospital-a", "accord.partner/hospital-b")
    assert len(open_note(checkpoints[2].note.text, verifiers=[coordinator.log.verifier]).signers) == 1


def test_partner_keeps_the_cosigned_checkpoints_and_its_countersigned_own(study):
    coordinator = _run(study, 2)
    store = CheckpointStore.beside(study.partners[0].trail)
    assert len(store.peer(coordinator.origin).notes()) == 2
    own = store.own.notes()
    assert len(own) == 2
    # the first reply's checkpoint came back countersigned with the second task
    opened = open_note(own[0].text, verifiers=[store.own.read_key(), cosigner(coordinator.log.verifier)])
    assert opened.signers == ("accord.partner/hospital-a", coordinator.origin)


def test_coordinator_records_cosignatures_and_countersignatures_in_its_trail(study):
    coordinator = _run(study, 2)
    from federated.audit import read_entries

    kinds = [e["kind"] for e in read_entries(coordinator.trail.path)]
    assert kinds.count("cosignature_received") == 4
    assert kinds.count("partner_checkpoint_countersigned") == 4


def test_steady_state_tasks_carry_one_proof(study):
    coordinator = _run(study, 2)
    content = build_task(_spec(3), {"m": MODEL})
    coordinator.attach_task(content, 1, _spec(3).sha256())
    record = read_task_audit(content)
    assert len(record.proofs) == 1
    assert set(record.held) == {"accord.partner/hospital-a", "accord.partner/hospital-b"}
    assert record.countersigned


def test_a_lost_reply_is_covered_by_an_extra_proof(study):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    assert study.run_round(coordinator, 1) == {p.name: None for p in study.partners}
    study.run_round(coordinator, 2, lose={"hospital-a"})
    assert study.run_round(coordinator, 3) == {p.name: None for p in study.partners}


def test_partner_refuses_a_coordinator_log_that_went_backwards(study, tmp_path):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    study.run_round(coordinator, 1)
    saved = tmp_path / "saved"
    shutil.copytree(study.out, saved)
    study.run_round(coordinator, 2)
    study.run_round(coordinator, 3)  # partners cosign the checkpoint after round 2
    shutil.rmtree(study.out)
    shutil.copytree(saved, study.out)  # the whole output directory rolled back to an older valid copy
    problems = study.run_round(study.coordinator(), 4)
    assert "went backwards: this side cosigned its checkpoint of size" in problems["hospital-a"]


def test_partner_refuses_a_forked_coordinator_log(study):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    study.run_round(coordinator, 1)
    # the coordinator rewrites history: a fresh trail under the same key and origin
    shutil.rmtree(study.out)
    fresh = study.coordinator()
    for index in range(40):
        fresh.trail.append("task_sent", node=str(index))
    fresh.checkpoint()
    problems = study.run_round(fresh, 2)
    assert "offers no consistency proof from size" in problems["hospital-a"]


def test_partner_refuses_a_coordinator_whose_key_changed(study):
    coordinator = _run(study, 1)
    study.identity = Identity.generate()
    shutil.rmtree(CheckpointStore.beside(coordinator.trail.path).root)
    problems = study.run_round(study.coordinator(), 2)
    assert "the coordinator's key changed: this node pinned" in problems["hospital-a"]


def test_partner_with_a_pinned_key_refuses_any_other(study):
    study.partners[0].coordinator_key = "f" * 64
    coordinator = study.coordinator()
    coordinator.checkpoint()
    problems = study.run_round(coordinator, 1)
    assert "this node only accepts " + "f" * 64 in problems["hospital-a"]
    assert problems["hospital-b"] is None


def test_partner_refuses_a_task_whose_models_changed_after_signing(study):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    spec = _spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 1, spec.sha256())
    forged = _spec(1, model=b"a poisoned model")
    content.config_records["task"]["spec"] = forged.canonical().decode()
    with pytest.raises(AuditRefusal, match="is not signed by the coordinator key .*changed after signing"):
        PartnerAudit(study.partners[0].trail, study.partners[0].identity, partner_id="hospital-a").check_task(content, forged.sha256())


def test_coordinator_refuses_a_partner_log_that_went_backwards(study, tmp_path):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    study.run_round(coordinator, 1)
    node = study.partners[0].workdir
    saved = tmp_path / "node-a-saved"
    shutil.copytree(node, saved)
    study.run_round(coordinator, 2)
    shutil.rmtree(node)
    shutil.copytree(saved, node)  # the partner's trail and store rolled back to an older valid copy
    problems = study.run_round(coordinator, 3)
    assert "the trail of hospital-a went backwards" in problems["hospital-a"]


def _reply_with(study: Study, coordinator: CoordinatorAudit, **changes) -> str | None:
    spec = _spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 1, spec.sha256())
    reply, info = study.partners[0].handle(content)
    record = read_reply_audit(reply).model_copy(update=changes)
    attach(reply, ReplyAudit.model_validate(record.model_dump()))
    return coordinator.receive(1, reply, partner="hospital-a", accepted=True, where={"study": "s1", "round": 1})


def test_coordinator_refuses_results_without_a_cosignature(study):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    problem = _reply_with(study, coordinator, cosignature="")
    assert "returned results without cosigning the coordinator's checkpoint of size" in problem


def test_coordinator_refuses_a_forged_cosignature(study):
    coordinator = study.coordinator()
    coordinator.checkpoint()
    impostor = Partner("hospital-a", study.out / "impostor")
    spec = _spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 7, spec.sha256())
    forged_line = read_reply_audit(impostor.handle(content)[0]).cosignature
    problem = _reply_with(study, coordinator, cosignature=forged_line)
    assert "the cosignature by accord.partner/hospital-a of checkpoint size" in problem and "does not verify" in problem
