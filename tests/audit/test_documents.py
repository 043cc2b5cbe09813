"""The auditor's documents say what the study's [governance] and the partners' contracts declare, in words."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from federated.audit.evidence.documents import (
    model_card,
    privacy_report_markdown,
    record_of_processing,
    record_of_processing_markdown,
    timeline_markdown,
)
from federated.audit.evidence.export import export_pack

ROOT = Path(__file__).resolve().parents[2]
STUDY = tomllib.loads((ROOT / "configs" / "demo-evaluation.toml").read_text(encoding="utf-8"))
CONTRACT = tomllib.loads((ROOT / "configs" / "contract-example.toml").read_text(encoding="utf-8"))
MANIFEST = {"dataset_id": "hospital-a", "description": "Breast-cancer records of hospital-a.",
            "features": ["mean radius", "mean texture"], "label": "malignant", "subgroup": "age_band"}
RESULTS = {"study": "demo-evaluation", "purpose": "evaluation", "status": "completed",
           "models": [{"name": "logreg", "sha256": "a" * 64}],
           "rounds": [{"round": 1, "contributors": ["hospital-a"], "pooled": {"logreg": {"count": 40.0, "accuracy": 0.9}},
                       "matrix": {}, "subgroups": {}}]}
TRAIL = {"hospital-a": {"manifest_sha256": ["b" * 64], "data_sha256": ["c" * 64], "contract_sha256": ["d" * 64],
                        "records_per_round": {"1": 40}}}


def _record(study=STUDY, contracts=None, manifests=None):
    return record_of_processing(RESULTS, study, {"hospital-a": MANIFEST} if manifests is None else manifests, TRAIL,
                                "e" * 64, {"hospital-a": CONTRACT} if contracts is None else contracts)


def test_the_record_names_the_controller_the_study_declares():
    record = _record()
    assert record["controller"]["declared"] == "Accord demo consortium"
    markdown = record_of_processing_markdown(record)
    assert "**Accord demo consortium**, as the study's `[governance]` declares." in markdown
    assert "None" not in markdown


def test_the_record_says_so_when_the_study_declares_no_controller():
    markdown = record_of_processing_markdown(_record(study={"title": "t"}))
    assert "Not declared: the study's `[governance]` names no controller." in markdown


def test_the_record_states_the_study_retention_and_each_contracts_limit():
    record = _record()
    assert record["retention"]["days"] == 180 and record["retention"]["contracts"] == {"hospital-a": 365}
    markdown = record_of_processing_markdown(record)
    assert "keeps the study's results for 180 days, as the study's [governance] declares" in markdown
    assert "- hospital-a's contract allows at most 365 days" in markdown
    assert "come later" not in markdown


def test_without_any_declared_retention_the_record_says_not_declared():
    markdown = record_of_processing_markdown(_record(study={}, contracts={}))
    assert "Not declared: neither the study's [governance] (retention_days) nor a contract handed over sets one." in markdown


def test_data_categories_are_words_not_json():
    markdown = record_of_processing_markdown(_record())
    assert "- Features (2): mean radius, mean texture" in markdown
    assert "- Label: malignant" in markdown
    assert "- Sensitivity (contract): special category" in markdown
    assert "- Legal bases the contract allows: consent, public_interest" in markdown
    assert "{" not in markdown and '["' not in markdown


def test_the_record_lists_declared_recipients_jurisdiction_and_legal_basis():
    markdown = record_of_processing_markdown(_record())
    assert "- consortium steering committee (declared by the study's [governance])" in markdown
    assert "The study declares jurisdiction EU; hospital-a's contract permits EU." in markdown
    assert "- Legal basis: consent" in markdown


def test_the_record_keeps_its_machine_readable_json_shape():
    record = _record()
    assert json.loads(json.dumps(record)) == record
    assert record["categories_of_data_subjects_and_personal_data"]["hospital-a"]["contract"]["retention_days"] == 365
    assert "allowed_coordinators" not in record["categories_of_data_subjects_and_personal_data"]["hospital-a"]["contract"]


def test_a_model_card_shows_pooled_metrics_in_a_table_and_a_singular_partner():
    card = model_card(RESULTS["models"][0], RESULTS, STUDY)
    assert card.startswith("# Model card — `logreg`\n")
    assert "Round 1, 1 partner (hospital-a)." in card
    assert "| count | accuracy | precision |" in card and "| 40 | 0.9000 | — |" in card
    assert "Breast-cancer classifiers: pooled performance across three hospitals" in card
    assert "\n\n\n" not in card


def test_the_privacy_report_without_dp_says_no_budget_was_spent():
    text = privacy_report_markdown(RESULTS)
    assert text.startswith("# Privacy report — study `demo-evaluation`\n")
    assert "Differential privacy was **off** in this study" in text


def test_a_timeline_cell_cannot_break_its_table():
    text = timeline_markdown("s1", [{"time": "t", "actor": "a|b", "kind": "k", "round": 1, "detail": "x|y\nz"}])
    assert "| t | a\\|b | k | 1 | x\\|y z |" in text


def test_a_contract_the_trail_never_declared_is_refused_by_name(study, tmp_path):
    study.run()
    contract = tmp_path / "contract.toml"
    contract.write_text('dataset_id = "x"\n')
    with pytest.raises(Exception, match="--partner-contract .*contract.toml: its SHA-256 .* is not declared"):
        export_pack(study.out, tmp_path / "pack.zip", partner_contracts=[contract])


def test_a_real_pack_with_contracts_handed_over_fills_the_record_and_verifies(tmp_path):
    import zipfile

    from examples.hospitals.prepare import COORDINATOR_KEY
    from tests.dashboard.study_outputs import REFUSING, run_demo_study

    study = run_demo_study(tmp_path)
    data = study["hospitals"] / "data"
    contributors = [f"hospital-{x}" for x in "abc" if f"hospital-{x}" != REFUSING]
    summary = export_pack(study["study"], tmp_path / "pack.zip", study_file=study["hospitals"] / "study.toml",
                          key=study["hospitals"] / COORDINATOR_KEY,
                          partner_trails=[study["nodes"] / name for name in contributors],
                          partner_manifests=[data / f"{name}.toml" for name in contributors],
                          partner_contracts=[data / f"{name}.contract.toml" for name in contributors])
    assert summary.problem is None, summary.problem
    with zipfile.ZipFile(summary.pack) as pack:
        record = pack.read("processing/record-of-processing.md").decode()
        assert {f"partners/{name}/contract.toml" for name in contributors} <= set(pack.namelist())
    assert "**Accord demo consortium**" in record and "for 180 days" in record
    for name in contributors:
        days = tomllib.loads((data / f"{name}.contract.toml").read_text(encoding="utf-8"))["retention_days"]
        assert f"- {name}'s contract allows at most {days} days" in record
        assert f"### {name}" in record
    assert "Features (30):" in record and "`{" not in record


def test_a_contract_in_a_pack_that_its_partner_never_declared_fails_verification(study, tmp_path):
    import hashlib
    import zipfile

    from federated.audit.evidence.verify import verify_evidence

    study.run()
    export_pack(study.out, tmp_path / "pack.zip", partner_trails=[p.workdir for p in study.partners])
    with zipfile.ZipFile(tmp_path / "pack.zip") as bundle:
        bundle.extractall(tmp_path / "pack")
    contract = tmp_path / "pack" / "partners" / "hospital-a" / "contract.toml"
    contract.write_text('dataset_id = "hospital-a"\nretention_days = 3650\n')
    manifest_file = tmp_path / "pack" / "MANIFEST.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["files"]["partners/hospital-a/contract.toml"] = hashlib.sha256(contract.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
    (tmp_path / "pack" / "MANIFEST.sig").unlink()
    problem = verify_evidence(tmp_path / "pack").problem
    assert problem and "partners/hospital-a/contract.toml hashes to" in problem and "hospital-a never declared" in problem


def test_a_model_card_says_an_ece_the_dp_noise_swamps_is_not_estimable():
    final = {"round": 1, "contributors": ["hospital-a"], "matrix": {}, "subgroups": {},
             "pooled": {"logreg": {"count": 40.0, "accuracy": 0.9, "ece": None}},
             "validation": {"logreg": {"ece_not_estimable": "ECE not estimable: noise 0.30 of the count"}}}
    card = model_card(RESULTS["models"][0], {**RESULTS, "rounds": [final]}, STUDY)
    row = next(line for line in card.splitlines() if line.startswith("| 40 |"))
    cells = dict(zip(("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece",
                      "log_loss"), (c.strip() for c in row.strip("|").split("|")), strict=True))
    assert cells["ece"] == "not estimable at this ε" and cells["accuracy"] == "0.9000" and cells["brier"] == "—"


def test_a_monitoring_studys_model_card_lists_its_periods_alerts_and_stop():
    alert = {"period": 2, "model": "logreg", "partner": "hospital-a", "metric": "accuracy", "baseline": 0.9, "value": 0.6,
             "difference": -0.3, "p_value": 1e-5, "threshold": 0.1, "message": "period 2: logreg accuracy fell"}
    other = {**alert, "model": "mlp", "message": "period 2: mlp accuracy fell"}
    periods = [{"period": n, "round": n, "status": "completed", "contributors": ["hospital-a"],
                "pooled": {"logreg": {"accuracy": value}}, "per_partner": {}, "comparisons": []}
               for n, value in ((1, 0.9), (2, 0.6))]
    monitoring = {"schedule": {"kind": "snapshots", "interval_s": None, "periods": 3},
                  "baseline": {"kind": "first_period", "period": 1, "reference": None},
                  "thresholds": {"accuracy": {"max_drop": 0.1, "alpha": 0.001}, "ece": {"max_drop": 0.1, "alpha": 0.001}},
                  "periods": periods, "alerts": [alert, other],
                  "stopped": {"period": 3, "reason": "hospital-a declared no snapshot 3", "partner": "hospital-a"}}
    card = model_card(RESULTS["models"][0], {**RESULTS, "purpose": "monitoring", "monitoring": monitoring}, STUDY)
    section = card.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    assert "2 periods (snapshots schedule), each compared with period 1." in section
    assert "| 1 | completed | hospital-a | 0.9000 | — | 0 |" in section
    assert "| 2 | completed | hospital-a | 0.6000 | — | 1 |" in section
    assert "- period 2, hospital-a, accuracy: period 2: logreg accuracy fell" in section
    assert "mlp" not in section  # another model's alert is on that model's card
    assert "stopped at period 3 (hospital-a): hospital-a declared no snapshot 3" in section
    assert "## Monitoring" not in model_card(RESULTS["models"][0], RESULTS, STUDY)
