"""A coordinator and three partner nodes, each a separate process, over a real SuperLink."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from federated.audit import read_entries
from federated.client.data import load_manifest, load_partner_data
from federated.client.refusals import NodeLog, fixed_reason
from federated.evaluation.onnx_model import predict_probabilities
from federated.local.localhost import Partner
from tests.e2e.conftest import write_study

pytestmark = pytest.mark.timeout(300)


def _kinds(path: Path) -> list[str]:
    return [entry["kind"] for entry in read_entries(path)]


def _run(federation, study: Path, partners: list[Partner], tmp_path: Path) -> tuple[int, dict]:
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in partners:
        federation.start_partner(partner)
    code = federation.coordinator.wait(timeout=240)
    results_path = tmp_path / "out" / "latest" / "results.json"
    return code, json.loads(results_path.read_text()) if results_path.exists() else {}


def test_pooled_metrics_equal_sklearn_on_concatenated_data(tmp_path, hospitals, partners, federation):
    code, results = _run(federation, write_study(tmp_path, hospitals), partners, tmp_path)
    assert code == 0, (tmp_path / "coordinator.log").read_text()
    final = results["rounds"][-1]
    assert sorted(final["contributors"]) == ["hospital-a", "hospital-b", "hospital-c"]
    loaded = [load_partner_data(p.data, load_manifest(p.manifest)) for p in partners]
    labels = np.concatenate([d.labels for d in loaded])
    for name in ("logreg", "mlp"):
        model = (hospitals / "models" / f"{name}.onnx").read_bytes()
        scores = np.concatenate([predict_probabilities(name, model, "probabilities", d.features)[:, 1] for d in loaded])
        predicted = (scores >= 0.5).astype(int)
        pooled = final["pooled"][name]
        assert pooled["count"] == labels.size
        assert pooled["accuracy"] == skm.accuracy_score(labels, predicted)
        assert pooled["f1"] == pytest.approx(skm.f1_score(labels, predicted), rel=1e-12)
        assert pooled["precision"] == pytest.approx(skm.precision_score(labels, predicted), rel=1e-12)
        assert pooled["recall"] == pytest.approx(skm.recall_score(labels, predicted), rel=1e-12)
        assert pooled["brier"] == pytest.approx(skm.brier_score_loss(labels, scores), rel=1e-9)
        assert abs(pooled["auroc"] - skm.roc_auc_score(labels, scores)) <= pooled["auroc_bound"] + 1e-12
        # hospital-c's manifest forbids per-partner release.
        assert final["matrix"][name]["hospital-c"] is None
        assert final["matrix"][name]["hospital-a"]["count"] == 200
    out = tmp_path / "out" / "latest"  # this run's folder (federated.runtime.runs)
    assert {"report.md", "roc-logreg.png", "calibration-mlp.png"} <= {p.name for p in out.iterdir()}
    entries = read_entries(out / "coordinator-trail.jsonl")
    assert [e["round"] for e in entries if e["kind"] == "result_received"] == [1, 1, 1, None, None, None]
    assert entries[-1]["kind"] == "study_completed"
    # The seal: every partner cosigned a checkpoint that covers the whole study up to its report.
    report = next(e["seq"] for e in entries if e["kind"] == "report_written")
    sealed = {e["details"]["partner"]: e["details"]["size"] for e in entries if e["kind"] == "cosignature_received" and e["round"] is None}
    assert set(sealed) == {p.name for p in partners} and min(sealed.values()) > report
    for partner in partners:
        assert _kinds(tmp_path / "nodes" / partner.name / "trail.jsonl")[-3:] == ["task_received", "task_accepted", "result_sent"]


def test_partner_whose_data_does_not_fit_is_refused_and_study_goes_on(tmp_path, hospitals, partners, federation):
    manifest = load_manifest(partners[1].manifest)
    narrow = tmp_path / "hospital-d.toml"
    narrow.write_text(
        partners[1].manifest.read_text().replace('"mean_radius", ', "").replace('dataset_id = "hospital-b"', 'dataset_id = "hospital-d"')
    )
    assert len(load_manifest(narrow).features) == len(manifest.features) - 1
    code, results = _run(federation, write_study(tmp_path, hospitals), [*partners, Partner("hospital-d", partners[1].data, narrow)], tmp_path)
    assert code == 0
    final = results["rounds"][-1]
    assert len(final["contributors"]) == 3
    (refusal,) = final["refused"]
    assert refusal["partner"] == "hospital-d" and refusal["clause"] == "model"
    # Data shapes never leave the node: the reason is the clause's fixed sentence, the detail is in its local log.
    assert refusal["reason"] == fixed_reason("model")
    partner_trail = read_entries(tmp_path / "nodes" / "hospital-d" / "trail.jsonl")
    refused = [e for e in partner_trail if e["kind"] == "task_refused"]
    assert len(refused) == 1 and refused[0]["round"] == 1 and refused[0]["details"]["reason"] == fixed_reason("model")
    (logged,) = NodeLog.beside(tmp_path / "nodes" / "hospital-d" / "trail.jsonl").records()
    assert "expects 30 features, this partner's data has 29" in logged["detail"]
    assert partner_trail[-1]["kind"] == "result_sent" and partner_trail[-1]["round"] is None  # it still sealed the study
    coordinator = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    assert any(e["kind"] == "task_refused" and e["details"].get("partner") == "hospital-d" for e in coordinator)


def _kill_after_first_round(federation, tmp_path: Path, name: str) -> None:
    trail = tmp_path / "out" / "latest" / "coordinator-trail.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if trail.exists() and b'"kind":"round_completed"' in trail.read_bytes():
            federation.kill_partner(name)
            return
        time.sleep(0.05)
    raise AssertionError("round 1 never completed")


def test_partner_killed_mid_study_round_completes_with_the_rest(tmp_path, hospitals, partners, federation):
    study = write_study(tmp_path, hospitals, rounds=2, min_cohort=2, round_timeout_s=40)
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in partners:
        federation.start_partner(partner)
    _kill_after_first_round(federation, tmp_path, "hospital-b")
    assert federation.coordinator.wait(timeout=200) == 0
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    first, second = results["rounds"]
    assert len(first["contributors"]) == 3
    assert sorted(second["contributors"]) == ["hospital-a", "hospital-c"]
    assert len(second["missing"]) == 1
    coordinator = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    assert [e["round"] for e in coordinator if e["kind"] == "partner_missing"] == [2]  # the seal skips the lost node
    sealed = {e["details"]["partner"] for e in coordinator if e["kind"] == "cosignature_received" and e["round"] is None}
    assert sealed == {"hospital-a", "hospital-c"}


def test_study_stops_when_a_lost_partner_leaves_the_cohort_too_small(tmp_path, hospitals, partners, federation):
    study = write_study(tmp_path, hospitals, rounds=2, min_cohort=3, round_timeout_s=40)
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in partners:
        federation.start_partner(partner)
    _kill_after_first_round(federation, tmp_path, "hospital-c")
    assert federation.coordinator.wait(timeout=200) == 4
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    assert results["status"] == "cohort_too_small"
    assert "round 2: only 2 partners contributed" in results["message"]
    assert results["rounds"][1]["pooled"] == {}  # nothing released below the minimum cohort
    assert "only 2 partners contributed" in (tmp_path / "coordinator.log").read_text()
    assert _kinds(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")[-1] == "study_failed"
