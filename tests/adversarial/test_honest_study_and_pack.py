"""The protections leave an honest study whole, and the evidence pack counts what partners really spent.

An honest evaluation study (three rounds, DP, then the seal) runs through the server's own
`run_study` against the partners' real pipeline. Its pack's privacy report is built from the
partners' `privacy_spent` trail entries, so a coordinator that rewrites the ε in results.json is
contradicted by the pack itself, and a pack without partner trails says that it has none.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from flwr.supercore.task_identity import TaskIdentity

from examples.hospitals.prepare import COORDINATOR_KEY
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.evidence.export import export_pack
from federated.client.refusals import NodeLog
from federated.server.app import run_study
from federated.server.context import RoundContext
from federated.study import Study, resolve_models
from privacy import BudgetLedger
from tests.adversarial.conftest import GOVERNANCE, HostileCoordinator

ROUNDS = 3
PARTNERS = ["hospital-a", "hospital-b", "hospital-c"]


@pytest.fixture(scope="module")
def honest_run(hospitals, tmp_path_factory):
    """An honest three-round DP evaluation study, sealed: the partners and the study's output directory."""
    workdir = tmp_path_factory.mktemp("honest")
    coordinator = HostileCoordinator(hospitals, workdir)  # here it behaves: it runs the server's own study
    study = Study.model_validate({
        "id": "honest", "purpose": "evaluation", "rounds": ROUNDS, "min_cohort": 2, "round_timeout_s": 1,
        "cohort_timeout_s": 1, "output_dir": str(workdir / "out"),
        "models": [{"name": "logreg", "path": str(hospitals / "models" / "logreg.onnx")}],
        "evaluation": {"score_bins": 10, "calibration_bins": 5, "privacy": {"enabled": True, "epsilon": 1.0}},
        "governance": GOVERNANCE.model_dump(),
    })
    trail = AuditTrail(study.output_dir / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, hospitals / COORDINATOR_KEY, study_id=study.id)
    context = RoundContext(coordinator.grid, trail, audit, study=study, study_sha256="0" * 64)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("_run_id", "_node_id", "_task_id"):
            patch.setattr(TaskIdentity, name, 1)
        results = run_study(context, resolve_models(study, workdir / "study.toml"), run_id=1)
    assert results.status == "completed", results.message
    return coordinator, study.output_dir


@pytest.fixture
def honest(honest_run, tmp_path):
    """A fresh copy of the honest study's output directory (tests may forge it)."""
    shutil.copytree(honest_run[1], tmp_path / "out")
    return tmp_path / "out"


@pytest.fixture
def partners(honest_run):
    return honest_run[0]


def _pack_report(pack) -> dict:
    with zipfile.ZipFile(pack) as bundle:
        return json.loads(bundle.read("privacy/privacy-report.json"))


def test_an_honest_study_is_answered_every_round_and_charged_once_per_round(partners, honest):
    results = json.loads((honest / "results.json").read_text())
    assert [sorted(r["contributors"]) for r in results["rounds"]] == [PARTNERS] * ROUNDS
    for partner in PARTNERS:
        ledger = BudgetLedger.open_existing(partners.partner_dir(partner) / "budget.sqlite")
        assert [s.release for s in ledger.spends()] == [f"release-{n}/evaluation" for n in range(1, ROUNDS + 1)]
        assert ledger.spent(study_id="honest") == pytest.approx(ROUNDS * 1.0)


def test_the_packs_privacy_report_is_what_the_partners_trails_record(partners, honest, tmp_path):
    pack = export_pack(honest, tmp_path / "pack.zip", partner_trails=[partners.partner_dir(p) for p in PARTNERS]).pack
    report = _pack_report(pack)
    assert report["source"] == "partner trails (privacy_spent entries)"
    assert {p: entry["spent"]["epsilon"] for p, entry in report["partners"].items()} == pytest.approx({p: 3.0 for p in PARTNERS})
    assert report["differs_from_coordinator_claim"] == [] and report["partners_without_trail"] == {}


def test_a_coordinator_that_understates_epsilon_is_contradicted_by_the_pack(partners, honest, tmp_path):
    results = json.loads((honest / "results.json").read_text())
    for entry in results["privacy"].values():
        entry["basic_composition"]["epsilon"] = 1.0  # "one release only"
    (honest / "results.json").write_text(json.dumps(results))
    pack = export_pack(honest, tmp_path / "pack.zip", partner_trails=[partners.partner_dir(p) for p in PARTNERS]).pack
    report = _pack_report(pack)
    assert report["differs_from_coordinator_claim"] == PARTNERS
    assert all(entry["spent"]["epsilon"] == pytest.approx(3.0) for entry in report["partners"].values())
    with zipfile.ZipFile(pack) as bundle:
        markdown = bundle.read("privacy/privacy-report.md").decode()
    assert "The coordinator's claim differs from the partner's trail for: hospital-a, hospital-b, hospital-c" in markdown


def test_a_pack_without_partner_trails_says_the_epsilon_is_only_claimed(honest, tmp_path):
    report = _pack_report(export_pack(honest, tmp_path / "pack.zip").pack)
    assert report["source"] == "none: no partner trail in the pack" and report["partners"] == {}
    assert sorted(report["partners_without_trail"]) == PARTNERS
    with zipfile.ZipFile(tmp_path / "pack.zip") as bundle:
        assert "only the coordinator's claim" in bundle.read("privacy/privacy-report.md").decode()


def test_the_node_log_never_travels_in_a_pack(partners, honest, hospitals, tmp_path):
    model = {"logreg": (hospitals / "models" / "logreg.onnx").read_bytes()}
    partners.evaluate("another", 1, model, to=["hospital-b"])
    _, again = partners.evaluate("another", 1, model, to=["hospital-b"])
    assert [r["clause"] for r in again.refused] == ["study"]  # the refusal's detail went to the node log
    log = NodeLog.beside(partners.partner_dir("hospital-b") / "trail.jsonl")
    assert log.records()
    pack = export_pack(honest, tmp_path / "pack.zip", partner_trails=[partners.partner_dir(p) for p in PARTNERS]).pack
    with zipfile.ZipFile(pack) as bundle:
        assert not [name for name in bundle.namelist() if name.endswith(".node.log") or "studies" in name]
