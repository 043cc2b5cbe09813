"""The checkpoint exchange between a coordinator and its partners, without Flower in between.

Each round the coordinator attaches its audit record to a task, the partner checks and
cosigns, seals its reply with its own checkpoint, and the coordinator takes the reply: the
same calls the ServerApp and ClientApp make, driven message by message.
"""

from __future__ import annotations

import shutil

import pytest

from crypto import Identity, open_note
from federated.audit import AuditTrail, read_entries
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.errors import AuditRefusal
from federated.audit.log import cosigner
from federated.audit.partner_audit import PartnerAudit
from federated.audit.store import CheckpointStore
from federated.messages.audit_exchange import (
    ReplyAudit,
    attach,
    read_reply_audit,
    read_task_audit,
)
from federated.messages.evaluation import build_task
from tests.audit.conftest import MODEL, SimulatedPartner, SimulatedStudy, task_spec


def _run(study: SimulatedStudy, rounds: int) -> CoordinatorAudit:
    coordinator = study.start()
    for round_number in range(1, rounds + 1):
        assert study.run_round(coordinator, round_number) == {p.name: None for p in study.partners}
    coordinator.checkpoint()
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
    kinds = [e["kind"] for e in read_entries(coordinator.trail.path)]
    assert kinds.count("cosignature_received") == 4
    assert kinds.count("partner_checkpoint_countersigned") == 4


def test_steady_state_tasks_carry_one_proof(study):
    coordinator = _run(study, 2)
    content = build_task(task_spec(3), {"m": MODEL})
    coordinator.attach_task(content, 1, task_spec(3).sha256())
    record = read_task_audit(content)
    assert len(record.proofs) == 1
    assert set(record.held) == {"accord.partner/hospital-a", "accord.partner/hospital-b"}
    assert record.countersigned


def test_a_lost_reply_is_covered_by_an_extra_proof(study):
    coordinator = study.start()
    assert study.run_round(coordinator, 1) == {p.name: None for p in study.partners}
    study.run_round(coordinator, 2, lose={"hospital-a"})
    assert study.run_round(coordinator, 3) == {p.name: None for p in study.partners}


def test_partner_refuses_a_coordinator_log_that_went_backwards(study, tmp_path):
    coordinator = study.start()
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
    coordinator = study.start()
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
    coordinator = study.start()
    problems = study.run_round(coordinator, 1)
    assert "this node only accepts " + "f" * 64 in problems["hospital-a"]
    assert problems["hospital-b"] is None


def test_partner_refuses_a_task_whose_models_changed_after_signing(study):
    coordinator = study.start()
    spec = task_spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 1, spec.sha256())
    forged = task_spec(1, model=b"a poisoned model")
    content.config_records["task"]["spec"] = forged.canonical().decode()
    with pytest.raises(AuditRefusal, match="is not signed by the coordinator key .*changed after signing"):
        PartnerAudit(study.partners[0].trail, study.partners[0].identity, partner_id="hospital-a").check_task(content, forged.sha256())


def test_coordinator_refuses_a_partner_log_that_went_backwards(study, tmp_path):
    coordinator = study.start()
    study.run_round(coordinator, 1)
    node = study.partners[0].workdir
    saved = tmp_path / "node-a-saved"
    shutil.copytree(node, saved)
    study.run_round(coordinator, 2)
    shutil.rmtree(node)
    shutil.copytree(saved, node)  # the partner's trail and store rolled back to an older valid copy
    problems = study.run_round(coordinator, 3)
    assert "the trail of hospital-a went backwards" in problems["hospital-a"]


def _reply_with(study: SimulatedStudy, coordinator: CoordinatorAudit, **changes) -> str | None:
    spec = task_spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 1, spec.sha256())
    reply, info = study.partners[0].handle(content)
    record = read_reply_audit(reply).model_copy(update=changes)
    attach(reply, ReplyAudit.model_validate(record.model_dump()))
    return coordinator.receive(1, reply, partner="hospital-a", accepted=True, where={"study": "s1", "round": 1})


def test_coordinator_refuses_results_without_a_cosignature(study):
    coordinator = study.start()
    problem = _reply_with(study, coordinator, cosignature="")
    assert "returned results without cosigning the coordinator's checkpoint of size" in problem


def test_coordinator_refuses_a_forged_cosignature(study):
    coordinator = study.start()
    impostor = SimulatedPartner("hospital-a", study.out / "impostor")
    spec = task_spec(1)
    content = build_task(spec, {"m": MODEL})
    coordinator.attach_task(content, 7, spec.sha256())
    forged_line = read_reply_audit(impostor.handle(content)[0]).cosignature
    problem = _reply_with(study, coordinator, cosignature=forged_line)
    assert "the cosignature by accord.partner/hospital-a of checkpoint size" in problem and "does not verify" in problem


def _second_study(study: SimulatedStudy, identity: Identity) -> CoordinatorAudit:
    """The same coordinator starting another study (a new log) with a new key."""
    trail = AuditTrail(study.out.parent / "out-2" / "coordinator-trail.jsonl", actor="coordinator")
    return CoordinatorAudit(trail, identity, study_id="s2")


def test_a_new_coordinator_key_is_accepted_for_new_logs_when_given_explicitly(study):
    _run(study, 1)
    new_key = Identity.generate()
    study.partners[0].coordinator_key = new_key.fingerprint  # restarted with --coordinator-key
    problems = study.run_round(_second_study(study, new_key), 1)
    assert problems["hospital-a"] is None
    assert "the coordinator's key changed: this node pinned" in problems["hospital-b"]
    assert "restart the node with --coordinator-key" in problems["hospital-b"]


def test_a_known_log_under_another_key_is_refused_even_if_that_key_is_accepted(study):
    coordinator = _run(study, 1)
    study.identity = Identity.generate()
    shutil.rmtree(CheckpointStore.beside(coordinator.trail.path).root)
    study.partners[0].coordinator_key = study.identity.fingerprint
    problems = study.run_round(study.coordinator(), 2)
    assert "the coordinator's log accord.coordinator/s1 was signed with key" in problems["hospital-a"]
    assert "a log's key never changes" in problems["hospital-a"]
