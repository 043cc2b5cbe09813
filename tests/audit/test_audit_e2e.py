"""A real federation (SuperLink and three SuperNodes as processes) runs a two-round study; its
evidence pack, with the partners' hand-overs, exports and verifies through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crypto import NoteVerifier, SignatureType, open_note
from federated.audit import read_entries
from federated.audit.store import CheckpointStore
from tests.e2e.conftest import federation, hospitals, partners, write_study  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(300)


def _audit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "federated.audit", *args], capture_output=True, text=True, timeout=120)


def test_two_round_study_exports_a_pack_that_verifies_with_partner_cosignatures(tmp_path, hospitals, partners, federation):  # noqa: F811
    study = write_study(tmp_path, hospitals, id="audit-e2e", rounds=2)
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in partners:
        federation.start_partner(partner)
    assert federation.coordinator.wait(timeout=240) == 0, (tmp_path / "coordinator.log").read_text()
    out = tmp_path / "out"
    assert "created the coordinator's signing key" in (tmp_path / "coordinator.log").read_text()

    pack = tmp_path / "evidence.zip"
    args = ["export", "--study", str(study), "--out", str(pack), "--json"]
    for partner in partners:
        args += ["--partner-trail", str(tmp_path / "nodes" / partner.name), "--partner-manifest", str(partner.manifest)]
    exported = _audit(*args)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["manifest_signed"] is True

    coordinator_key = (out / "coordinator.key.pub").resolve()
    verified = _audit("verify", str(pack), "--coordinator-key", str(coordinator_key), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verdict = json.loads(verified.stdout)
    assert verdict["ok"] and len([c for c in verdict["checks"] if c.startswith("hospital-")]) == 3

    # Both tasks carried a checkpoint every partner cosigned; each partner's first reply came back countersigned.
    store = CheckpointStore.beside(out / "latest" / "coordinator-trail.jsonl")  # the run's folder
    coordinator = store.own.read_key()
    cosigners = [NoteVerifier(o, store.peer(o).read_key().public_key, SignatureType.COSIGNATURE_V1) for o in store.peer_origins()]
    notes = store.own.notes()
    assert len(notes) == 4  # before round 1, before round 2, before the seal, at the end
    for note in notes[:3]:
        opened = open_note(note.text, verifiers=[coordinator, *cosigners])
        assert sorted(opened.cosignature_times) == [f"accord.partner/{p.name}" for p in partners]
    for partner in partners:
        node = CheckpointStore.beside(tmp_path / "nodes" / partner.name / "trail.jsonl")
        assert len(node.peer(coordinator.name).notes()) == 3
        countersigned = open_note(node.own.notes()[0].text, verifiers=[
            node.own.read_key(), NoteVerifier(coordinator.name, coordinator.public_key, SignatureType.COSIGNATURE_V1)])
        assert countersigned.signers == (f"accord.partner/{partner.name}", coordinator.name)
    kinds = [e["kind"] for e in read_entries(out / "latest" / "coordinator-trail.jsonl")]
    assert kinds.count("cosignature_received") == 9 and kinds[-1] == "study_completed"
    # Everything up to the report is cosigned: only the seal's own records and the closing entry are not.
    uncosigned = [n for n in verdict["notes"] if "after the last checkpoint partners cosigned" in n]
    report = kinds.index("report_written")
    assert all(int(n.split("–")[0].split()[-1]) > report for n in uncosigned), uncosigned

    shown = _audit("show", str(pack), "--json")
    assert shown.returncode == 0 and any(row["kind"] == "checkpoint_signed" for row in json.loads(shown.stdout))
    assert Path(pack).stat().st_size > 0
