"""The partner's study state: one task per (study, kind, round), rounds only forward, sealed studies closed,
release ids the node assigns, and a study closed after a data-dependent failure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from federated.client.errors import StudyRefusal
from federated.client.study_state import MAX_FAILED_TASKS_PER_STUDY, StudyState

SHA = "a" * 64


@pytest.fixture
def state(tmp_path) -> StudyState:
    return StudyState.beside(tmp_path / "trail.jsonl")


def test_the_state_lives_beside_the_trail(tmp_path, state):
    state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)
    assert state.path == tmp_path / "trail-studies.sqlite"


def test_a_round_is_admitted_once(state):
    state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)
    with pytest.raises(StudyRefusal, match="already answered query.evaluate round 1; round 1 is not after it"):
        state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)


def test_rounds_only_move_forward(state):
    state.admit(study="s", kind="query.evaluate", round=3, task_sha256=SHA)
    with pytest.raises(StudyRefusal, match="round 2 is not after it"):
        state.admit(study="s", kind="query.evaluate", round=2, task_sha256=SHA)
    assert state.admit(study="s", kind="query.evaluate", round=7, task_sha256=SHA).round == 7


def test_kinds_and_studies_have_their_own_rounds(state):
    # A training study: train rounds 1..2, then the final evaluation as round 3; its decryptions per round.
    for kind, round_number in (("train", 1), ("query.decrypt", 1), ("train", 2), ("query.decrypt", 2),
                               ("query.evaluate", 3), ("query.decrypt", 3)):
        state.admit(study="training", kind=kind, round=round_number, task_sha256=SHA)
    state.admit(study="other", kind="train", round=1, task_sha256=SHA)


def test_release_ids_are_the_nodes_own_sequence(state):
    first = state.admit(study="s", kind="query.evaluate", round=40, task_sha256=SHA)
    second = state.admit(study="s", kind="query.evaluate", round=90, task_sha256=SHA)
    assert (first.release("evaluation"), second.release("evaluation")) == ("release-1/evaluation", "release-2/evaluation")
    assert state.admit(study="t", kind="query.evaluate", round=90, task_sha256=SHA).release("evaluation") == "release-1/evaluation"


def test_a_sealed_study_admits_nothing_and_cannot_be_sealed_again(state):
    state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)
    state.seal(study="s", status="completed")
    with pytest.raises(StudyRefusal, match=r"study 's' was sealed \(completed\); a sealed study is never served again"):
        state.admit(study="s", kind="query.evaluate", round=2, task_sha256=SHA)
    with pytest.raises(StudyRefusal, match="already sealed"):
        state.seal(study="s", status="failed")
    assert state.sealed("s") == "completed" and state.sealed("never-seen") is None


def test_after_the_allowed_failures_the_study_is_refused(state):
    state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)
    for _ in range(MAX_FAILED_TASKS_PER_STUDY):
        state.record_failure(study="s")
    with pytest.raises(StudyRefusal, match="stopped serving study 's' after 1 of its tasks failed"):
        state.admit(study="s", kind="query.evaluate", round=2, task_sha256=SHA)
    state.admit(study="t", kind="query.evaluate", round=1, task_sha256=SHA)  # other studies are unaffected


def test_a_refused_admission_changes_nothing(state):
    state.admit(study="s", kind="query.evaluate", round=2, task_sha256=SHA)
    with pytest.raises(StudyRefusal):
        state.admit(study="s", kind="query.evaluate", round=1, task_sha256=SHA)
    assert [(a.round, a.sequence) for a in state.admitted("s")] == [(2, 1)]


def test_the_state_outlives_the_process_that_wrote_it(tmp_path):
    StudyState(tmp_path / "studies.sqlite").admit(study="s", kind="train", round=1, task_sha256=SHA)
    with pytest.raises(StudyRefusal):
        StudyState(tmp_path / "studies.sqlite").admit(study="s", kind="train", round=1, task_sha256=SHA)


def test_two_deliveries_at_once_cannot_both_be_admitted(tmp_path):
    def deliver(_: int) -> bool:
        try:
            StudyState(tmp_path / "studies.sqlite").admit(study="s", kind="train", round=1, task_sha256=SHA)
        except StudyRefusal:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(deliver, range(16))) == 1
