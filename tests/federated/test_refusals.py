"""What a refusal may say: its own text before the data is read, a fixed sentence per clause after."""

from __future__ import annotations

import stat

import pytest

from federated.client.refusals import DATA_FREE_CLAUSES, GENERIC, VOCABULARY, NodeLog, data_dependent, fixed_reason, public_reason

DETAIL = "Input shape:{130,30}, requested shape:{47730,-1}"


@pytest.mark.parametrize("clause", ["message", "audit", "replay", "study", "encryption"])
def test_before_the_data_is_read_a_refusal_keeps_its_text(clause):
    assert public_reason(clause, "why", data_in_use=False) == "why"


@pytest.mark.parametrize("clause", sorted(VOCABULARY))
def test_once_the_data_is_in_use_a_refusal_says_its_clauses_fixed_sentence(clause):
    reason = public_reason(clause, DETAIL, data_in_use=True)
    assert reason == fixed_reason(clause) and VOCABULARY[clause] in reason
    assert not any(character.isdigit() for character in reason)


@pytest.mark.parametrize("clause", ["disclosure.min_records_per_score_bin", "a-clause-added-later"])
def test_a_clause_without_its_own_sentence_gets_the_generic_one(clause):
    assert public_reason(clause, DETAIL, data_in_use=True).startswith(GENERIC)


@pytest.mark.parametrize("clause", sorted(DATA_FREE_CLAUSES))
def test_contract_clauses_that_compare_declarations_keep_their_text_and_are_not_failures(clause):
    assert public_reason(clause, "the task evaluates 6 models", data_in_use=True) == "the task evaluates 6 models"
    assert not data_dependent(clause, data_in_use=True)


def test_an_internal_error_never_shows_its_text():
    assert public_reason("internal", "KeyError: 47730", data_in_use=False) == fixed_reason("internal")


@pytest.mark.parametrize(("clause", "counted"), [("model", True), ("privacy", True), ("protections.max_epsilon_per_release", True),
                                                 ("disclosure.min_cell_count", True), ("disclosure.max_models_per_task", False),
                                                 ("data", False), ("contract", False), ("allowed_purposes", False)])
def test_which_refusals_count_as_data_dependent_failures(clause, counted):
    assert data_dependent(clause, data_in_use=True) is counted
    assert not data_dependent(clause, data_in_use=False)


def test_the_node_log_keeps_the_detail_for_the_node_alone(tmp_path):
    log = NodeLog.beside(tmp_path / "trail.jsonl")
    log.write(study="s", round=1, clause="model", detail=DETAIL)
    log.write(study="s", round=2, clause="study", detail="sealed")
    assert log.path == tmp_path / "trail.node.log"
    assert [r["detail"] for r in log.records()] == [DETAIL, "sealed"]
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
