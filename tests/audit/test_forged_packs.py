"""A coordinator forging its own evidence pack: cutting, editing, re-signing, leaving partners out.

The coordinator holds its signing key, so it can rewrite its trail, re-sign every checkpoint
and the manifest, and export whatever it likes. What it cannot do is make partners cosign, or
change what partners kept. Each test forges a pack the way such a coordinator would and checks
that `verify` fails, or, where the auditor explicitly allows missing partners, says "verified
with gaps" and lists them; never "verified".
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from accord.errors import ExitCode
from federated.audit import AuditTrail, read_entries
from federated.audit.__main__ import cli
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.evidence.export import export_pack
from federated.audit.evidence.layout import partner_evidence
from federated.audit.evidence.verify import Verdict, verify_evidence
from tests.audit.conftest import SimulatedStudy

runner = CliRunner()
PARTNERS = ["hospital-a", "hospital-b"]


def _notes(out: Path) -> list[Path]:
    return sorted((out / "coordinator-trail.checkpoints" / "log").glob("*.note"))


def _size(note: Path) -> int:
    return int(note.read_text().split("\n")[1])


def _cut_back_to_checkpoint(out: Path, number: int) -> int:
    """Cut the trail to the size of checkpoint `number` and drop every later checkpoint: a
    consistent, validly signed, shorter history. Returns the new trail length."""
    notes = _notes(out)
    size = _size(notes[number])
    trail = out / "coordinator-trail.jsonl"
    trail.write_bytes(b"".join(trail.read_bytes().splitlines(keepends=True)[:size]))
    for note in notes[number + 1:]:
        note.unlink()
    return size


def _edit_results(out: Path) -> None:
    results = json.loads((out / "results.json").read_text())
    results["rounds"][0]["pooled"]["m"]["accuracy"] = 0.99
    (out / "results.json").write_text(json.dumps(results, indent=2))


def _forge(study: SimulatedStudy, tmp_path: Path, *, partner_trails: list[Path] = ()) -> Path:
    """Cut back to the checkpoint partners cosigned before round 2, edit results.json, re-export
    (which re-signs MANIFEST.json with the coordinator's key)."""
    study.run()
    _cut_back_to_checkpoint(study.out, 1)
    _edit_results(study.out)
    pack = tmp_path / "forged.zip"
    export_pack(study.out, pack, partner_trails=partner_trails)
    return pack


def _verify_with_partners(study: SimulatedStudy) -> Verdict:
    return verify_evidence(study.out, partner_trails=[partner_evidence(p.workdir) for p in study.partners])


def _verify_cli(pack: Path, *extra: str):
    done = runner.invoke(cli, ["verify", str(pack), "--json", *extra])
    return done, json.loads(done.stdout[done.stdout.index("{"):])


def test_a_cut_edited_and_resigned_pack_without_partner_folders_fails(study, tmp_path):
    pack = _forge(study, tmp_path)
    done, verdict = _verify_cli(pack)
    assert done.exit_code == ExitCode.VERIFICATION_FAILED
    assert verdict["verdict"] == "not verified" and "MANIFEST.sig: the coordinator signed this manifest" in verdict["checks"]
    assert verdict["problem"].startswith("report/report.md, report/results.json: no surviving trail entry covers them")


def test_a_forged_pack_fails_even_when_missing_partners_are_allowed(study, tmp_path):
    pack = _forge(study, tmp_path)
    done, verdict = _verify_cli(pack, "--allow-missing-partners")
    assert done.exit_code == ExitCode.VERIFICATION_FAILED
    assert "no surviving trail entry covers them" in verdict["problem"] and "VERIFIED WITH GAPS" not in done.output


def test_a_cut_trail_re_extended_with_a_new_report_fails(study, tmp_path):
    study.run()
    size = _cut_back_to_checkpoint(study.out, 1)
    study.finish(study.coordinator(), seal=False)  # a fresh report, signed by the coordinator alone
    problem = verify_evidence(study.out, allow_missing_partners=True).problem
    assert problem.startswith(f"the report (trail entry {size}, report_written) is not inside a checkpoint a partner "
                              f"cosigned (the last checkpoint a partner cosigned covers entries 0–{size - 1})")


def test_an_unsealed_report_fails_naming_the_entry(study):
    """As packs written before the closing seal existed: the report rests on the coordinator's word."""
    coordinator = study.start()
    for round_number in (1, 2):
        study.run_round(coordinator, round_number)
    study.finish(coordinator, seal=False)
    problem = _verify_with_partners(study).problem
    written = next(e["seq"] for e in read_entries(study.trail_path) if e["kind"] == "report_written")
    assert problem.startswith(f"the report (trail entry {written}, report_written) is not inside a checkpoint a partner cosigned")


def test_a_report_file_the_trail_never_recorded_fails(study):
    study.run()
    (study.out / "extra.png").write_bytes(b"\x89PNG a plot added later")
    problem = _verify_with_partners(study).problem
    assert problem.startswith("extra.png is not among the report files the trail recorded (entry")


def test_a_partner_checkpoint_beyond_the_cut_trail_fails(study, tmp_path):
    pack = _forge(study, tmp_path, partner_trails=[p.workdir for p in study.partners])
    verdict = verify_evidence(pack)
    size = _size(_notes(study.out)[-1])
    assert verdict.problem.startswith("hospital-a cosigned the coordinator's checkpoint of size ")
    assert f"but the coordinator's trail holds only {size} entries: the coordinator's log was rolled back or truncated" in verdict.problem


def _honest_pack_without_partners(study: SimulatedStudy, tmp_path: Path) -> Path:
    study.run()
    pack = tmp_path / "pack.zip"
    summary = export_pack(study.out, pack)
    assert summary.problem is None and len(summary.gaps) == 2
    return pack


def test_a_pack_without_the_partner_folders_the_trail_names_fails(study, tmp_path):
    done, verdict = _verify_cli(_honest_pack_without_partners(study, tmp_path))
    assert done.exit_code == ExitCode.VERIFICATION_FAILED
    assert verdict["problem"].startswith("partners the trail names have no folder in the pack: hospital-a, hospital-b:")
    assert verdict["problem"].endswith("(pass --allow-missing-partners to accept this gap)")


def test_allowing_missing_partners_gives_verified_with_gaps_and_its_own_exit_code(study, tmp_path):
    done, verdict = _verify_cli(_honest_pack_without_partners(study, tmp_path), "--allow-missing-partners")
    assert done.exit_code == ExitCode.VERIFIED_WITH_GAPS == 8
    assert verdict["verdict"] == "verified with gaps" and verdict["ok"] is False and verdict["problem"] is None
    assert [gap.split(":")[0] for gap in verdict["gaps"]] == PARTNERS
    assert "VERIFIED WITH GAPS (2)" in done.output


def test_a_study_directory_verified_without_partner_trails_names_them(study):
    study.run()
    problem = verify_evidence(study.out).problem
    assert problem.startswith("partners the trail names handed over no trail (--partner-trail): hospital-a, hospital-b:")


def test_a_pack_with_every_partner_folder_verifies_without_gaps(study, tmp_path):
    study.run()
    pack = tmp_path / "pack.zip"
    export_pack(study.out, pack, partner_trails=[p.workdir for p in study.partners])
    verdict = verify_evidence(pack)
    assert verdict.ok and verdict.status == "verified" and not verdict.gaps
    assert "all 2 partners the trail names handed over their trails" in verdict.checks
    assert any("is inside a checkpoint partners cosigned" in check for check in verdict.checks)


def test_a_copied_output_directory_can_be_forged_only_by_cutting(study, tmp_path):
    """The same cut on a study's output directory (not a pack) fails the same way."""
    study.run()
    copy = tmp_path / "copy"
    shutil.copytree(study.out, copy)
    _cut_back_to_checkpoint(copy, 1)
    assert "no surviving trail entry covers them" in verify_evidence(copy, allow_missing_partners=True).problem


class _SecondLog(SimulatedStudy):
    """The same coordinator key and study id, but another log (origin) than the one partners cosigned first."""

    def coordinator(self) -> CoordinatorAudit:
        return CoordinatorAudit(AuditTrail(self.trail_path, actor="coordinator"), self.identity, study_id="s1-again")


def test_a_study_whose_log_was_swapped_for_another_fails(study, tmp_path):
    study.run()
    second = _SecondLog(tmp_path / "second", study.partners, identity=study.identity)
    second.run()  # partners' trails now hold study s1 under two coordinator logs
    problem = verify_evidence(second.out, partner_trails=[partner_evidence(p.workdir) for p in study.partners]).problem
    assert problem.startswith("hospital-a's trail entry ")
    assert problem.endswith("for study s1, but the evidence holds log accord.coordinator/s1-again: the coordinator's log was replaced")


def test_a_second_copy_of_a_report_file_in_a_subfolder_fails(study, tmp_path):
    study.run()
    pack = tmp_path / "pack.zip"
    export_pack(study.out, pack, partner_trails=[p.workdir for p in study.partners])
    extracted = tmp_path / "pack"
    shutil.unpack_archive(pack, extracted)
    (extracted / "report" / "copy").mkdir()
    (extracted / "report" / "copy" / "results.json").write_text("{}")
    manifest = json.loads((extracted / "MANIFEST.json").read_text())  # the coordinator re-lists it (and could re-sign)
    manifest["files"]["report/copy/results.json"] = hashlib.sha256(b"{}").hexdigest()
    (extracted / "MANIFEST.json").write_text(json.dumps(manifest))
    (extracted / "MANIFEST.sig").unlink()
    assert verify_evidence(extracted).problem.startswith("report/copy/results.json is not among the report files the trail recorded")
