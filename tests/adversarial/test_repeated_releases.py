"""Attacks (b)-(d): one DP release bought once and collected many times.

The coordinator picks study ids and round numbers and signs every task afresh (a new nonce, so the
replay cache does not see a replay). Before issue 12 the ledger's release id was `round-<r>/...`, so
round 1 sent 300 times was 300 fresh noisy releases for one ε. Each test counts the releases that
came out and the ε the partner's own ledger charged; they must match.
"""

from __future__ import annotations

import pytest

from federated.audit import read_entries
from federated.client.study_state import StudyState
from privacy import BudgetLedger

EPSILON = 1.0  # per release (tests.adversarial.conftest.EVALUATION)


def _logreg(hospitals) -> dict[str, bytes]:
    return {"logreg": (hospitals / "models" / "logreg.onnx").read_bytes()}


def _ledger(coordinator, name: str = "hospital-b") -> BudgetLedger:
    return BudgetLedger.open_existing(coordinator.partner_dir(name) / "budget.sqlite")


def _releases(collected) -> set[str]:
    return {reply.payload_sha256() for reply in collected.accepted}


def test_the_same_round_sent_50_times_is_answered_once_and_charged_once(coordinator, hospitals):
    releases: set[str] = set()
    answers, clauses = 0, set()
    for _ in range(50):  # each freshly signed: a new nonce, a valid signature, the same (study, round)
        _, collected = coordinator.evaluate("repeat", 1, _logreg(hospitals), to=["hospital-b"])
        answers += len(collected.accepted)
        releases |= _releases(collected)
        clauses |= {refusal["clause"] for refusal in collected.refused}
    assert (answers, len(releases), clauses) == (1, 1, {"study"})  # one noisy release to average, not 50
    assert _ledger(coordinator).spent(study_id="repeat") == pytest.approx(answers * EPSILON)
    entries = read_entries(coordinator.partner_dir("hospital-b") / "trail.jsonl")
    assert sum(e["kind"] == "privacy_spent" for e in entries) == answers


def test_rounds_that_move_forward_are_each_charged_until_the_study_cap(coordinator, hospitals):
    answers = 0
    for round_number in range(1, 16):  # hospital-b's contract: ε ≤ 10 per study
        _, collected = coordinator.evaluate("forward", round_number, _logreg(hospitals), to=["hospital-b"])
        answers += len(collected.accepted)
    assert answers == 10
    assert _ledger(coordinator).spent(study_id="forward") == pytest.approx(answers * EPSILON)


def test_rounds_going_backwards_are_refused_and_release_nothing(coordinator, hospitals):
    outcomes = {}
    for round_number in (3, 2, 1, 3, 4):
        _, collected = coordinator.evaluate("backwards", round_number, _logreg(hospitals), to=["hospital-b"])
        outcomes.setdefault(round_number, []).append("ok" if collected.accepted else collected.refused[0]["clause"])
    assert outcomes == {3: ["ok", "study"], 2: ["study"], 1: ["study"], 4: ["ok"]}
    ledger = _ledger(coordinator)
    assert ledger.spent(study_id="backwards") == pytest.approx(2 * EPSILON)
    # Release ids are the node's own numbers, not the rounds the coordinator chose.
    assert [spend.release for spend in ledger.spends(study_id="backwards")] == ["release-1/evaluation", "release-2/evaluation"]


def test_a_sealed_study_is_never_answered_again_and_a_new_id_is_charged_as_a_new_study(coordinator, hospitals):
    _, first = coordinator.evaluate("sealed", 1, _logreg(hospitals), to=["hospital-b"])
    assert len(first.accepted) == 1
    assert len(coordinator.seal("sealed", rounds=1, to=["hospital-b"]).accepted) == 1
    released_after_seal = 0
    for round_number in (1, 2, 50):
        _, again = coordinator.evaluate("sealed", round_number, _logreg(hospitals), to=["hospital-b"])
        released_after_seal += len(again.accepted)
        assert [refusal["clause"] for refusal in again.refused] == ["study"]
    assert [r["clause"] for r in coordinator.seal("sealed", rounds=1, to=["hospital-b"]).refused] == ["study"]
    assert released_after_seal == 0
    assert _ledger(coordinator).spent(study_id="sealed") == pytest.approx(EPSILON)
    assert StudyState.beside(coordinator.partner_dir("hospital-b") / "trail.jsonl").sealed("sealed") == "completed"
    # The same work under a new id is a new study: answered, and charged to it.
    _, renamed = coordinator.evaluate("sealed-again", 1, _logreg(hospitals), to=["hospital-b"])
    assert len(renamed.accepted) == 1
    assert _ledger(coordinator).spent() == pytest.approx(2 * EPSILON)


def test_a_study_sealed_as_failed_is_closed_too(coordinator, hospitals):
    assert len(coordinator.seal("failed-study", rounds=3, status="failed", to=["hospital-b"]).accepted) == 1
    _, collected = coordinator.evaluate("failed-study", 1, _logreg(hospitals), to=["hospital-b"])
    assert [r["clause"] for r in collected.refused] == ["study"] and "was sealed (failed)" in collected.refused[0]["reason"]
    assert not (coordinator.partner_dir("hospital-b") / "budget.sqlite").exists() or _ledger(coordinator).spent() == 0
