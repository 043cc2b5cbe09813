"""Attack (a): a model that fails on purpose, so that onnxruntime's error names a record's values.

Before issue 12 the exception text was the refusal reason: it reached the coordinator in plaintext,
landed in both trails and cost nothing. Now the coordinator gets a fixed sentence per clause; the
detail stays in the node's local log; the failure is charged like the release it replaced and ends
the study on that node. The tests count what the coordinator can tell apart, not only that it was refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from federated.audit import read_entries
from federated.client.refusals import NodeLog, fixed_reason
from privacy import BudgetLedger
from tests.adversarial.conftest import EXACT, appears, leaking_model, partner_features

COLUMN = 3  # mean_area: three or four digits, distinct in every row probed here
ROWS = range(5)


def _secrets(hospitals, name: str) -> list[str]:
    """The numbers onnxruntime names for each probed row: int64(float32(value) × 100)."""
    features = partner_features(hospitals, name)
    return [str(int((np.float32(features[row, COLUMN]) * np.float32(100)).astype(np.int64))) for row in ROWS]


def test_five_rows_probed_give_five_identical_answers_so_zero_bits_leak(coordinator, hospitals):
    secrets = _secrets(hospitals, "hospital-b")
    assert len(set(secrets)) == len(ROWS)  # the old reason would have told all five apart
    outcomes = set()
    for row in ROWS:  # one study per row: the node serves no second failing task in a study
        _, collected = coordinator.evaluate(f"leak-{row}", 1, {"probe": leaking_model(row=row, column=COLUMN)}, to=["hospital-b"])
        assert not collected.accepted
        outcomes |= {(refusal["clause"], refusal["reason"]) for refusal in collected.refused}
    assert outcomes == {("model", fixed_reason("model"))}
    assert math.log2(len(outcomes)) == 0  # bits the coordinator learns about the rows beyond "the model failed"


def test_no_digit_of_the_data_reaches_the_coordinator_or_the_partners_trail(coordinator, hospitals):
    secrets = _secrets(hospitals, "hospital-b")
    for row in ROWS:
        coordinator.evaluate(f"leak-{row}", 1, {"probe": leaking_model(row=row, column=COLUMN)}, to=["hospital-b"])
    received = coordinator.everything_received()
    partner_trail = (coordinator.partner_dir("hospital-b") / "trail.jsonl").read_text(encoding="utf-8")
    leaked = [secret for secret in secrets if appears(secret, received) or appears(secret, partner_trail)]
    assert leaked == []
    for shape_text in ("Input shape", "{130,30}", "requested shape"):  # the record count is withheld under DP too
        assert shape_text not in received and shape_text not in partner_trail
    # The detail exists, and stayed on the node: its local log names every value.
    log = NodeLog.beside(coordinator.partner_dir("hospital-b") / "trail.jsonl").path.read_text(encoding="utf-8")
    assert all(appears(secret, log) for secret in secrets)


def test_a_failing_model_is_charged_like_the_release_it_replaced(coordinator, hospitals):
    for row in ROWS:
        coordinator.evaluate(f"leak-{row}", 1, {"probe": leaking_model(row=row, column=COLUMN)}, to=["hospital-b"])
    ledger = BudgetLedger.open_existing(coordinator.partner_dir("hospital-b") / "budget.sqlite")
    assert ledger.spent() == pytest.approx(len(ROWS) * 1.0)  # ε = 1 per failed task, as a release would cost
    assert [spend.release for spend in ledger.spends()] == ["release-1/evaluation"] * len(ROWS)
    spent = [e for e in read_entries(coordinator.partner_dir("hospital-b") / "trail.jsonl") if e["kind"] == "privacy_spent"]
    assert [e["details"]["outcome"] for e in spent] == ["task_failed"] * len(ROWS)


def test_after_one_failure_the_node_runs_nothing_more_of_that_study(coordinator, hospitals):
    secrets = _secrets(hospitals, "hospital-b")
    coordinator.evaluate("leak", 1, {"probe": leaking_model(row=0, column=COLUMN)}, to=["hospital-b"])
    _, second = coordinator.evaluate("leak", 2, {"probe": leaking_model(row=1, column=COLUMN)}, to=["hospital-b"])
    (refusal,) = second.refused
    assert refusal["clause"] == "study" and "stopped serving study 'leak'" in refusal["reason"]
    log = NodeLog.beside(coordinator.partner_dir("hospital-b") / "trail.jsonl").path.read_text(encoding="utf-8")
    assert appears(secrets[0], log) and not appears(secrets[1], log)  # row 1 was never read by the model
    ledger = BudgetLedger.open_existing(coordinator.partner_dir("hospital-b") / "budget.sqlite")
    assert ledger.spent(study_id="leak") == pytest.approx(1.0)


def test_without_dp_a_failure_is_not_charged_but_still_ends_the_study_on_that_node(coordinator, hospitals):
    _, first = coordinator.evaluate("leak", 1, {"probe": leaking_model(row=0, column=COLUMN)}, to=["hospital-a"], evaluation=EXACT)
    _, second = coordinator.evaluate("leak", 2, {"probe": leaking_model(row=1, column=COLUMN)}, to=["hospital-a"], evaluation=EXACT)
    assert [r["clause"] for r in first.refused + second.refused] == ["model", "study"]
    entries = read_entries(coordinator.partner_dir("hospital-a") / "trail.jsonl")
    assert not any(e["kind"] == "privacy_spent" for e in entries)  # no DP, so no ε to charge
