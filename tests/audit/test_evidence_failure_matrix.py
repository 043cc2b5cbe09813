"""The failure matrix: every way of tampering with the evidence is found, with a precise message.

Each test runs a two-round study (simulated message by message, see conftest), damages one
thing the way an attacker or an accident would, and checks that offline verification names
the damage; an untouched study and pack verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from crypto import Identity, sign_note
from federated.audit import AuditTrail, read_entries
from federated.audit.evidence.export import export_pack
from federated.audit.evidence.layout import partner_evidence
from federated.audit.evidence.verify import Verdict, verify_evidence
from federated.audit.store import CheckpointStore
from tests.audit.conftest import SimulatedStudy


def _verify(study: SimulatedStudy, *, partners: bool = False, coordinator_key: str | None = None) -> Verdict:
    handed = [partner_evidence(p.workdir) for p in study.partners] if partners else []
    return verify_evidence(study.out, coordinator_key=coordinator_key, partner_trails=handed)


def _lines(study: SimulatedStudy) -> list[bytes]:
    return study.trail_path.read_bytes().splitlines(keepends=True)


def _write_lines(study: SimulatedStudy, lines: list[bytes]) -> None:
    study.trail_path.write_bytes(b"".join(lines))


def _notes(study: SimulatedStudy) -> list[Path]:
    return sorted((study.out / "coordinator-trail.checkpoints" / "log").glob("*.note"))


def test_an_untouched_study_verifies_with_partner_evidence(study):
    study.run()
    verdict = _verify(study, partners=True)
    assert verdict.ok, verdict.problem
    assert any("cosignatures by 2 partners verify" in check for check in verdict.checks)


def test_pinning_another_coordinator_key_fails(study):
    study.run()
    verdict = _verify(study, coordinator_key="0" * 64)
    assert "not by the key you pinned (" + "0" * 64 in verdict.problem


def test_a_flipped_bit_in_an_entry_breaks_the_chain_at_the_next_line(study):
    study.run()
    lines = _lines(study)
    lines[5] = lines[5].replace(b'"round":1', b'"round":3')  # one bit: '1' (0x31) -> '3' (0x33)
    _write_lines(study, lines)
    assert "coordinator-trail.jsonl: line 7: chain broken" in _verify(study).problem


def test_a_flipped_bit_in_the_last_entry_contradicts_the_signed_checkpoint(study):
    study.run()
    lines = _lines(study)
    lines[-1] = lines[-1].replace(b'"rounds":2', b'"rounds":3')
    _write_lines(study, lines)
    problem = _verify(study).problem
    assert "does not match coordinator-trail.jsonl: the Merkle root of its first" in problem
    assert "an entry was changed, inserted, removed or reordered" in problem


def test_two_swapped_entries_are_found(study):
    study.run()
    lines = _lines(study)
    lines[4], lines[5] = lines[5], lines[4]
    _write_lines(study, lines)
    assert "line 5: sequence number 5, expected 4" in _verify(study).problem


def test_a_deleted_middle_entry_is_found(study):
    study.run()
    lines = _lines(study)
    del lines[6]
    _write_lines(study, lines)
    assert "line 7: sequence number 7, expected 6" in _verify(study).problem


def test_a_deleted_last_entry_is_found_by_the_signed_checkpoint(study):
    study.run()
    lines = _lines(study)
    _write_lines(study, lines[:-1])
    problem = _verify(study).problem
    assert f"covers {len(lines)} entries, but coordinator-trail.jsonl holds only {len(lines) - 1}" in problem
    assert "entries were removed from its end" in problem


def test_a_trail_replaced_by_an_older_valid_copy_is_found(study, tmp_path):
    coordinator = study.start()
    study.run_round(coordinator, 1)
    older = tmp_path / "older-trail.jsonl"
    shutil.copyfile(study.trail_path, older)
    study.run_round(coordinator, 2)
    study.finish(coordinator)
    shutil.copyfile(older, study.trail_path)  # a valid, shorter history
    assert "entries were removed from its end (truncation or rollback)" in _verify(study).problem


def test_a_rollback_of_trail_and_checkpoints_together_is_exposed_by_partners(study, tmp_path):
    coordinator = study.start()
    study.run_round(coordinator, 1)
    older = tmp_path / "older-output"
    shutil.copytree(study.out, older)
    study.run_round(coordinator, 2)
    study.run_round(coordinator, 3)
    study.finish(coordinator)
    shutil.rmtree(study.out)
    shutil.copytree(older, study.out)  # everything the coordinator holds, rolled back consistently
    study.finish(study.coordinator(), seal=False)  # partners refuse to seal a log that went backwards
    # On its own, the rewritten report rests on the coordinator's word alone...
    assert "is not inside a checkpoint a partner cosigned" in _verify(study).problem
    problem = _verify(study, partners=True).problem  # ...and partners hold cosigned later checkpoints
    assert "hospital-a cosigned the coordinator's checkpoint of size" in problem
    assert "the coordinator's log was rolled back or truncated" in problem


def test_a_torn_tail_is_repaired_logged_and_still_verifies(study):
    study.run()
    with open(study.trail_path, "ab") as handle:
        handle.write(b'{"actor":"coordinator","details":{},"kind":"study_comp')
    assert "last line is torn (no newline); reopen the trail to repair it" in _verify(study, partners=True).problem
    AuditTrail(study.trail_path, actor="coordinator")  # the next open cuts the torn record and logs it
    repaired = read_entries(study.trail_path)[-1]
    assert repaired["kind"] == "trail_repaired" and repaired["details"]["bytes_dropped"] == 54
    assert _verify(study, partners=True).ok


def test_a_checkpoint_signed_by_an_unknown_key_is_found(study):
    study.run()
    note = _notes(study)[1]
    text = note.read_text()
    body = text[: text.index("\n\n") + 1]
    note.write_text(sign_note(body, name="accord.coordinator/s1", private_key=Identity.generate().private_key))
    problem = _verify(study).problem
    assert "coordinator checkpoint 1 (coordinator-trail.checkpoints/log/00000001.note) is not signed by the expected key" in problem


def test_a_missing_cosignature_is_found(study):
    study.run()
    note = _notes(study)[0]
    lines = note.read_text().splitlines(keepends=True)
    note.write_text("".join(line for line in lines if "accord.partner/hospital-b" not in line))
    problem = _verify(study).problem
    assert "cosignature missing: trail entry" in problem
    assert "records that hospital-b cosigned checkpoint size" in problem


def test_a_forged_cosignature_is_found(study):
    study.run()
    note = _notes(study)[0]
    lines = note.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "accord.partner/hospital-a" in line)
    prefix, encoded = lines[index].rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01  # flip one bit of the signature
    lines[index] = f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    note.write_text("".join(lines))
    problem = _verify(study).problem
    assert "the cosignature_v1 signature by accord.partner/hospital-a" in problem
    assert "does not verify: the cosignature was forged or altered" in problem


def test_a_checkpoint_whose_size_goes_backwards_is_found(study):
    study.run()
    first, second = _notes(study)[1], _notes(study)[2]
    first_text, second_text = first.read_text(), second.read_text()
    first.write_text(second_text)
    second.write_text(first_text)
    problem = _verify(study).problem
    assert "coordinator checkpoint 2 (coordinator-trail.checkpoints/log/00000002.note) has size" in problem
    assert "smaller than checkpoint 1's size" in problem and "the log went backwards" in problem


def test_a_partner_trail_changed_after_the_coordinator_countersigned_it_is_found(study):
    study.run()
    trail = study.partners[0].trail
    lines = trail.read_bytes().splitlines(keepends=True)
    shutil.rmtree(CheckpointStore.beside(trail).root / "log")  # the partner drops its own checkpoints...
    trail.write_bytes(b"".join(lines[:3]))  # ...and cuts its trail
    problem = _verify(study, partners=True).problem
    assert "the coordinator holds hospital-a's checkpoint of size" in problem
    assert "the partner's trail was truncated or rolled back" in problem


def test_a_report_changed_after_it_was_written_is_found(study):
    study.run()
    (study.out / "report.md").write_text("# a nicer report\n")
    assert "report.md does not match the SHA-256 the trail recorded when the report was written" in _verify(study).problem


def _pack(study: SimulatedStudy, tmp_path: Path) -> Path:
    study.run()
    pack = tmp_path / "pack.zip"
    summary = export_pack(study.out, pack, partner_trails=[p.workdir for p in study.partners],
                          partner_manifests=[study.partners[0].manifest])
    assert summary.problem is None
    return pack


def _rewrite_member(pack: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(pack) as bundle:
        members = {info.filename: bundle.read(info.filename) for info in bundle.infolist()}
    members[name] = data
    with zipfile.ZipFile(pack, "w") as bundle:
        for member, content in members.items():
            bundle.writestr(member, content)


def test_an_exported_pack_verifies(study, tmp_path):
    verdict = verify_evidence(_pack(study, tmp_path))
    assert verdict.ok, verdict.problem
    assert "MANIFEST.sig: the coordinator signed this manifest" in verdict.checks
    assert sum(check.startswith("hospital-") for check in verdict.checks) == 2


def test_a_pack_file_that_does_not_match_its_manifest_is_found(study, tmp_path):
    pack = _pack(study, tmp_path)
    _rewrite_member(pack, "models/m.md", b"# Model card: trust me\n")
    problem = verify_evidence(pack).problem
    assert problem.startswith("models/m.md: SHA-256 ") and "does not match MANIFEST.json" in problem


def test_a_manifest_edited_to_match_a_changed_file_breaks_its_signature(study, tmp_path):
    pack = _pack(study, tmp_path)
    with zipfile.ZipFile(pack) as bundle:
        manifest = json.loads(bundle.read("MANIFEST.json"))
    manifest["files"]["models/m.md"] = hashlib.sha256(b"# Model card: trust me\n").hexdigest()
    _rewrite_member(pack, "MANIFEST.json", json.dumps(manifest).encode())
    _rewrite_member(pack, "models/m.md", b"# Model card: trust me\n")
    assert verify_evidence(pack).problem == (
        "MANIFEST.sig signs another manifest than MANIFEST.json: the manifest changed after it was signed"
    )


def test_a_file_slipped_into_a_pack_is_found(study, tmp_path):
    pack = _pack(study, tmp_path)
    with zipfile.ZipFile(pack, "a") as bundle:
        bundle.writestr("report/extra.md", "# more")
    assert verify_evidence(pack).problem == "report/extra.md is in the pack but not listed in MANIFEST.json"


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt"])
def test_a_pack_member_outside_the_pack_is_refused(study, tmp_path, member):
    pack = _pack(study, tmp_path)
    with zipfile.ZipFile(pack, "a") as bundle:
        bundle.writestr(member, "x")
    assert verify_evidence(pack).problem == f"{pack}: member {member!r} would be written outside the pack"
