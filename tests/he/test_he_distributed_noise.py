"""Distributed noise on the encrypted path, end to end in one process: the coordinator's real round logic and
the partners' real pipeline, with data contracts. Partners whose contract opts in add a share N(0, σ²/t) of the
noise, the others the full local noise; the pooled variance is the true one, each ledger charges the release's ε
and records the share's own, and the privacy report shows both guarantees."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from accord.hashing import sha256_file
from crypto import Identity, fingerprint
from federated.audit import AuditTrail, read_entries
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.audit.keys import load_or_create_identity
from federated.evaluation.dp_release import array_scales, calibrate
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import ModelRef, TaskSpec
from federated.reporting.privacy_report import reported_privacy
from federated.server.context import RoundContext
from federated.server.encryption import EncryptedAggregation
from federated.server.rounds import run_round
from federated.study import Governance, Study
from privacy import BudgetLedger
from privacy.release import noise_share
from tests.he.conftest import STUDY, hospital_files, install_node_keys

pytestmark = pytest.mark.usefixtures("flower_task_identity")

MODELS = ("logreg",)
GOVERNANCE = Governance(jurisdiction="EU", legal_basis="consent", accepted_licences=["demo-licence"], retention_days=30)


def write_contract(path: Path, data: Path, coordinator: str, *, max_honest_required: int | None) -> Path:
    """A hospital's contract for these tests; `max_honest_required` set: it opts into distributed noise."""
    protections: dict[str, object] = {"require_dp": True}
    if max_honest_required is not None:
        protections |= {"allow_distributed_noise": True, "max_honest_required": max_honest_required}
    path.write_text(tomli_w.dumps({
        "dataset_id": data.stem, "data_sha256": sha256_file(data), "licence": "demo-licence", "provenance": "demo",
        "sensitivity": "special_category", "jurisdictions": ["EU"], "legal_bases": ["consent"],
        "allowed_purposes": ["evaluation"], "allowed_coordinators": [coordinator], "protections": protections,
        "budget": {"max_epsilon_per_study": 10.0, "max_epsilon_total": 10.0}, "min_cohort": 2, "retention_days": 30,
        "expires": date(2099, 12, 31),
    }), encoding="utf-8")
    return path


@pytest.fixture
def seeded_partner_noise(monkeypatch):
    """The partners' noise from one seeded generator, drawn in node order (a node draws it from the OS)."""
    from federated.client import tasks

    rng, privatize = np.random.default_rng(20261130), tasks.privatize
    monkeypatch.setattr(tasks, "privatize", lambda statistics, settings, **share: privatize(statistics, settings, rng=rng, **share))


def _round(tmp_path: Path, hospitals: Path, keys, node_keys, *, opted_in: dict[str, int | None]):
    install_node_keys(node_keys, tmp_path / "nodes")
    coordinator_key = tmp_path / "coordinator.key"
    load_or_create_identity(coordinator_key)
    coordinator = fingerprint(Identity.load(coordinator_key).public_key)
    nodes = {}
    for index, (name, data, manifest) in enumerate(hospital_files(hospitals), start=1):
        contract = write_contract(tmp_path / f"{name}.contract.toml", data, coordinator, max_honest_required=opted_in[name])
        nodes[index] = node_config(name, data, manifest, tmp_path / "nodes", keys.secret) | {
            "contract": str(contract), "coordinator-key": coordinator}
    study = Study.model_validate({
        "id": STUDY, "purpose": "evaluation", "output_dir": str(tmp_path / "out"), "round_timeout_s": 0.5,
        "models": [{"name": m, "path": str(hospitals / "models" / f"{m}.onnx")} for m in MODELS],
        "evaluation": {"score_bins": 10, "privacy": {"enabled": True, "epsilon": 1.0, "noise": "distributed"}},
        "encryption": {"enabled": True, "public_context": str(keys.public)}, "governance": GOVERNANCE.model_dump(),
    })
    trail = AuditTrail(tmp_path / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, coordinator_key, study_id=study.id)
    spec = TaskSpec(study=study.id, round=1, study_sha256="0" * 64, evaluation=study.evaluation, governance=GOVERNANCE,
                    min_cohort=2, models=[ModelRef(name=m, sha256=sha256_file(hospitals / "models" / f"{m}.onnx"),
                                                   output="probabilities") for m in MODELS])
    models = {m: (hospitals / "models" / f"{m}.onnx").read_bytes() for m in MODELS}
    encryption = EncryptedAggregation.for_study(study, tmp_path / "study.toml")
    context = RoundContext(InProcessGrid(nodes), trail, audit, study=study, study_sha256="0" * 64, encryption=encryption)
    outcome = run_round(context, spec, models)
    return outcome, spec


def test_opted_in_partners_add_a_share_and_the_pooled_variance_is_the_true_one(tmp_path, hospitals, keys, node_keys,
                                                                               seeded_partner_noise):
    # Cohort of 3, t = ⌈3/2⌉ = 2: hospitals a and b opt in (up to 2 honest), c's contract does not.
    outcome, spec = _round(tmp_path, hospitals, keys, node_keys,
                           opted_in={"hospital-a": 2, "hospital-b": 2, "hospital-c": None})
    assert sorted(outcome.contributors) == ["hospital-a", "hospital-b", "hospital-c"]
    central = calibrate(spec.layout(), spec.evaluation.privacy, len(MODELS))
    share = noise_share(central, honest_required=2)
    noise = outcome.privacy
    for name in ("hospital-a", "hospital-b"):
        assert noise[name]["sigma"] == pytest.approx(central.sigma / math.sqrt(2), rel=1e-12)
        assert noise[name]["epsilon"] == 1.0
        assert noise[name]["distributed"] == {"honest_required": 2, "cohort": 3, "central_sigma": pytest.approx(central.sigma),
                                              "share_epsilon": pytest.approx(share.epsilon)}
    assert noise["hospital-c"]["sigma"] == pytest.approx(central.sigma) and noise["hospital-c"]["distributed"] is None
    # The decrypted sum's noise: two shares of σ²/2 and one full σ², which is what the standard errors redraw.
    from federated.server.pooling import _noise_variance

    class Reply:
        def __init__(self, record: dict) -> None:
            from federated.messages.common import NoiseInfo
            self.info = type("Info", (), {"noise": NoiseInfo.model_validate(record)})()

    variance = _noise_variance([Reply(record) for record in noise.values()], spec.layout())  # type: ignore[list-item]
    assert variance is not None
    assert variance["hist_pos"] == pytest.approx(2 * central.sigma**2, rel=1e-9)
    assert variance["brier_sum"] == pytest.approx(2 * (central.sigma * array_scales(spec.layout())["brier_sum"]) ** 2)
    assert outcome.standard_errors["logreg"]["accuracy"] > 0 and 0.5 < outcome.pooled["logreg"]["accuracy"] <= 1.0


def test_each_ledger_charges_per_its_contract_and_the_report_shows_both_guarantees(tmp_path, hospitals, keys, node_keys,
                                                                                   seeded_partner_noise):
    outcome, spec = _round(tmp_path, hospitals, keys, node_keys,
                           opted_in={"hospital-a": 2, "hospital-b": 3, "hospital-c": None})
    share = noise_share(calibrate(spec.layout(), spec.evaluation.privacy, len(MODELS)), honest_required=2)
    spends = {name: BudgetLedger.open_existing(tmp_path / "nodes" / name / "budget.sqlite").spends()
              for name in ("hospital-a", "hospital-b", "hospital-c")}
    for name in ("hospital-a", "hospital-b"):
        (spend,) = spends[name]
        assert spend.epsilon == 1.0 and spend.share_epsilon == pytest.approx(share.epsilon)
        assert (spend.honest_required, spend.cohort) == (2, 3)
        logged = [e["details"] for e in read_entries(tmp_path / "nodes" / name / "trail.jsonl") if e["kind"] == "privacy_spent"]
        assert logged[0]["share_epsilon"] == spend.share_epsilon
    (local,) = spends["hospital-c"]
    assert local.epsilon == 1.0 and local.share_epsilon is None  # not opted in: local noise, one guarantee
    report = reported_privacy({"study": STUDY, "rounds": [outcome.summary()]})
    assert report["hospital-a"]["basic_composition"]["epsilon"] == 1.0
    assert report["hospital-a"]["own_share"]["basic_composition"]["epsilon"] == pytest.approx(share.epsilon)
    assert report["hospital-a"]["assumption"]["releases"] == [{"round": 1, "honest_required": 2, "cohort": 3}]
    assert "own_share" not in report["hospital-c"]


def test_a_study_whose_t_exceeds_its_pinned_cohort_does_not_start(tmp_path, hospitals, keys):
    from federated.errors import ConfigError

    study = Study.model_validate({
        "id": STUDY, "purpose": "evaluation", "output_dir": str(tmp_path / "out"),
        "models": [{"name": "logreg", "path": str(hospitals / "models" / "logreg.onnx")}],
        "evaluation": {"privacy": {"enabled": True, "noise": "distributed", "honest_required": 4}},
        "encryption": {"enabled": True, "public_context": str(keys.public)},
    })
    with pytest.raises(ConfigError, match=r"study.toml: evaluation.privacy.honest_required: the distributed guarantee needs 4 "
                                          r"honest contributors, and the cohort .* has 3"):
        EncryptedAggregation.for_study(study, tmp_path / "study.toml")
