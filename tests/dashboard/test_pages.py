"""What the pages say, over plain HTTP: a partner's tasks, ε and contract; a damaged trail named as such; an
empty output folder (the monitoring section: test_monitoring_pages.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from starlette.testclient import TestClient

from examples.hospitals.prepare import _write_contract
from federated.audit.keys import pinned_fingerprint
from federated.dashboard import PartnerSources, Sources, coordinator_app, partner_app
from federated.dashboard.partner import load_partner

LOCAL = "http://127.0.0.1:8050"


def _get(app, path: str = "/") -> str:
    response = TestClient(app, base_url=LOCAL).get(path)
    assert response.status_code == 200
    return response.text


def test_the_partner_view_lists_refused_tasks_with_their_clause(partner_node):
    view = load_partner(PartnerSources(partner_node["trail"]))
    assert [(r["study"], r["clause"]) for r in view.refused] == [("s2", "allowed_purposes")]
    assert [(a["study"], a["round"]) for a in view.accepted] == [("s1", 1), ("s1", 2)]


def test_the_partner_view_takes_spent_and_remaining_from_the_ledger(partner_node):
    view = load_partner(PartnerSources(partner_node["trail"], ledger=partner_node["ledger"]))
    assert view.budget == [{"study": "s1", "spent": 3.0, "remaining": 2.0, "cap": 5.0, "releases": 2}]
    assert view.total == {"spent": 3.0, "remaining": 17.0, "cap": 20.0}


def test_without_a_ledger_the_partner_view_sums_the_trails_privacy_spent_entries(partner_node):
    view = load_partner(PartnerSources(partner_node["trail"]))
    assert [(b["study"], b["spent"], b["remaining"]) for b in view.budget] == [("s1", 3.0, None)]
    assert "privacy_spent" in view.budget_source


def test_the_contract_is_shown_in_words(partner_node, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hospital-b.csv").write_text("x\n")
    _write_contract(tmp_path, "hospital-b", True, "f" * 64)
    body = _get(partner_app(PartnerSources(partner_node["trail"], contract=tmp_path / "data" / "hospital-b.contract.toml")))
    assert "Purposes allowed: evaluation." in body
    assert "every release must be differentially private, at most ε = 2 per release" in body
    assert "ε ≤ 10 per study and ≤ 50 in total" in body


def test_a_damaged_partner_trail_is_named_and_not_read_past(partner_node):
    lines = partner_node["trail"].read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"task_accepted", b"task_refused")  # line 3, the first task_accepted
    partner_node["trail"].write_bytes(b"\n".join(lines))
    view = load_partner(PartnerSources(partner_node["trail"]))
    assert view.problems and "fails verification" in view.problems[0] and not view.refused


def test_a_damaged_coordinator_trail_is_named_on_the_study_page(hostile_study):
    trail = hostile_study / "coordinator-trail.jsonl"
    trail.write_bytes(trail.read_bytes().replace(b"study_started", b"study_stopped", 1))
    body = _get(coordinator_app(Sources(hostile_study.parent)), "/study/hostile")
    assert 'id="trail-problem"' in body and "line 3: chain broken" in body


def test_an_output_folder_without_studies_says_so(tmp_path: Path):
    assert "No study output here yet" in _get(coordinator_app(Sources(tmp_path)))


def test_the_output_folder_may_be_one_study(hostile_study):
    body = _get(coordinator_app(Sources(hostile_study)))
    assert 'href="/study/hostile"' in body


def test_the_shift_table_flags_the_partners_and_features_results_flag(hostile_study):
    results = json.loads((hostile_study / "results.json").read_text())
    results["rounds"][0]["shift"] = {"reference": "the other partners pooled", "psi_threshold": 0.25, "js_threshold": 0.2,
                                     "partners": {"hospital-a": {"age": {"psi": 0.4, "js": 0.1, "flagged": True},
                                                                 "size": {"psi": 0.01, "js": 0.02, "flagged": False}}}}
    (hostile_study / "results.json").write_text(json.dumps(results))
    body = _get(coordinator_app(Sources(hostile_study.parent)), "/study/hostile")
    assert '<tr data-partner="hospital-a" data-feature="age" class="flagged">' in body
    assert '<tr data-partner="hospital-a" data-feature="size">' in body


def _verdict(body: str) -> str:
    return body.split('id="verdict"', 1)[1].split(">", 1)[1].split("<", 1)[0]


def test_a_pack_named_on_the_command_line_is_offered_for_its_study_and_verifies(demo, tmp_path):
    study = tmp_path / "output" / demo["study"].name
    shutil.copytree(demo["study"], study)
    pack = (study / "evidence.zip").rename(tmp_path / "evidence.zip")
    key = pinned_fingerprint(str(demo["coordinator_pub"]))
    http = TestClient(coordinator_app(Sources(study.parent, packs=(pack,), coordinator_key=key)), base_url=LOCAL)
    assert 'data-pack="evidence.zip"' in http.get(f"/study/{study.name}").text
    assert _verdict(http.post(f"/study/{study.name}/verify/evidence.zip").text) == "VERIFIED"


def test_a_pack_checked_against_another_pinned_coordinator_key_fails(demo):
    http = TestClient(coordinator_app(Sources(demo["output"], coordinator_key="0" * 64)), base_url=LOCAL)
    body = http.post(f"/study/{demo['study'].name}/verify/evidence.zip").text
    assert _verdict(body) == "FAILED" and "0" * 64 in body


def test_verifying_a_file_the_study_does_not_hold_is_not_found(demo):
    http = TestClient(coordinator_app(Sources(demo["output"])), base_url=LOCAL)
    assert http.post(f"/study/{demo['study'].name}/verify/report.md").status_code == 404


def test_a_matrix_cell_a_partner_withheld_is_shown_as_withheld(hostile_study):
    results = json.loads((hostile_study / "results.json").read_text())
    results["rounds"][0].update(contributors=["hospital-a", "hospital-c"],
                                pooled={"m": {"accuracy": 0.9, "auroc": 0.95}},
                                matrix={"m": {"hospital-a": {"accuracy": 0.875, "auroc": 0.9375}, "hospital-c": None}})
    (hostile_study / "results.json").write_text(json.dumps(results))
    body = _get(coordinator_app(Sources(hostile_study.parent)), "/study/hostile")
    assert '<td data-partner="hospital-a">0.8750 / 0.9375</td>' in body
    assert '<td data-partner="hospital-c"><span class="withheld">withheld by partner</span></td>' in body


def test_an_ece_the_dp_noise_swamps_is_shown_as_not_estimable_with_its_reason(hostile_study):
    results = json.loads((hostile_study / "results.json").read_text())
    results["rounds"][0].update(contributors=["hospital-a", "hospital-c"],
                                pooled={"m": {"accuracy": 0.9, "ece": None, "brier": 0.1}},
                                standard_errors={"m": {"accuracy": 0.01, "ece": 0.2, "brier": 0.02}},
                                validation={"m": {"ece_not_estimable": "ECE not estimable: noise 0.30 of the count"}})
    (hostile_study / "results.json").write_text(json.dumps(results))
    body = _get(coordinator_app(Sources(hostile_study.parent)), "/study/hostile")
    assert ('<td data-metric="ece"><span class="value not-estimable" title="ECE not estimable: noise 0.30 of the '
            'count">not estimable at this ε</span></td>') in body
    assert '<td data-metric="brier"><span class="value">0.1000</span> <span class="se">± 0.0200</span></td>' in body
