"""DP evaluation over real Flower: noise at the partners, budgets their nodes enforce."""

from __future__ import annotations

import json
import sqlite3

import pytest

from federated.audit import read_entries
from federated.client.refusals import NodeLog, fixed_reason
from tests.e2e.conftest import write_study

pytestmark = pytest.mark.timeout(300)


def test_dp_evaluation_spends_each_partners_budget_and_a_capped_node_refuses(tmp_path, hospitals, partners, federation):
    study = write_study(tmp_path, hospitals, rounds=2)
    study.write_text(study.read_text() + "[evaluation.privacy]\nenabled = true\nepsilon = 1.0\ndelta = 1e-6\n")
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    federation.start_partner(partners[0])
    federation.start_partner(partners[1])
    federation.start_partner(partners[2], "--max-epsilon", "1.5")  # pays for round 1, not round 2
    assert federation.coordinator.wait(timeout=240) == 0, (tmp_path / "coordinator.log").read_text()
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    first, second = results["rounds"]
    assert sorted(first["contributors"]) == ["hospital-a", "hospital-b", "hospital-c"]
    assert sorted(second["contributors"]) == ["hospital-a", "hospital-b"]
    (refusal,) = second["refused"]
    assert refusal["partner"] == "hospital-c" and refusal["clause"] == "privacy"
    assert refusal["reason"] == fixed_reason("privacy")  # the remaining budget stays in the node's local log
    (logged,) = NodeLog.beside(tmp_path / "nodes" / "hospital-c" / "trail.jsonl").records()
    assert "remaining" in logged["detail"]
    # Metrics carry the noise's standard error; the privacy report counts what each partner spent.
    assert first["standard_errors"]["logreg"]["accuracy"] > 0
    assert 0 <= first["pooled"]["logreg"]["accuracy"] <= 1
    report = results["privacy"]
    assert report["hospital-a"]["basic_composition"]["epsilon"] == pytest.approx(2.0)
    assert report["hospital-c"]["basic_composition"]["epsilon"] == pytest.approx(1.0)
    assert report["hospital-a"]["prv_composition"]["epsilon"] <= 2.0
    # The partner's own ledger agrees, and its trail recorded the spend and the refusal.
    with sqlite3.connect(tmp_path / "nodes" / "hospital-c" / "budget.sqlite") as ledger:
        assert ledger.execute("SELECT SUM(epsilon) FROM spends").fetchone()[0] == pytest.approx(1.0)
    entries = [e for e in read_entries(tmp_path / "nodes" / "hospital-c" / "trail.jsonl") if e["round"] is not None]  # None: the seal
    kinds = [e["kind"] for e in entries]
    assert kinds.count("privacy_spent") == 1 and kinds[-1] == "task_refused"
