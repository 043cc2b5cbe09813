"""The coordinator's side of issue 15: the key check before Flower, expected and late partners, console lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto import Identity
from federated.audit import AuditTrail
from federated.audit.trail import read_entries
from federated.errors import CohortTooSmallError, ConfigError
from federated.runtime.runs import RUNS
from federated.server.__main__ import _progress_line
from federated.reporting.results import StudyResults
from federated.server.cohort import expected_but_missing, note_late_joiners, wait_for_cohort
from federated.server.coordinator import Transport, check_coordinator_key, submit_study
from federated.study import load_study


def _study(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "m.onnx").write_bytes(b"not parsed here")
    path = tmp_path / "study.toml"
    path.write_text(
        'id = "s1"\npurpose = "evaluation"\noutput_dir = "out"\nmin_cohort = 2\ncohort_timeout_s = 0.5\n'
        f'{extra}\n[[models]]\nname = "m"\npath = "m.onnx"\n'
    )
    return path


def _earlier_run(out: Path, key: Path) -> None:
    identity = Identity.generate()
    key.parent.mkdir(parents=True, exist_ok=True)
    identity.save(key)
    trail = AuditTrail(out / RUNS / "20260101-000000Z" / "coordinator-trail.jsonl", actor="coordinator")
    trail.append("study_submitted", study="s1", coordinator_key=identity.fingerprint, coordinator_key_file=str(key))


class FakeGrid:
    """`get_node_ids` answers from a list of node sets, one per call, then the last one forever."""

    def __init__(self, *answers: set[int]) -> None:
        self.answers = list(answers)

    def get_node_ids(self) -> list[int]:
        return sorted(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


# --- the coordinator key, checked before anything starts ---------------------------------------

def test_a_new_default_key_beside_earlier_runs_is_refused_naming_the_original_file(tmp_path):
    _earlier_run(tmp_path / "out", tmp_path / "keys" / "coordinator.key")
    with pytest.raises(ConfigError) as refused:
        check_coordinator_key(tmp_path / "out" / "coordinator.key", tmp_path / "out")
    assert f"pass --key {tmp_path / 'keys' / 'coordinator.key'}" in str(refused.value)
    assert f"{tmp_path / 'out' / 'coordinator.key'} does not exist" in str(refused.value)


def test_another_existing_key_is_refused_naming_both_keys(tmp_path):
    _earlier_run(tmp_path / "out", tmp_path / "keys" / "coordinator.key")
    other = Identity.generate()
    other.save(tmp_path / "other.key")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'other.key'} holds key {other.fingerprint}"):
        check_coordinator_key(tmp_path / "other.key", tmp_path / "out")


def test_the_key_of_earlier_runs_is_accepted(tmp_path):
    _earlier_run(tmp_path / "out", tmp_path / "keys" / "coordinator.key")
    check_coordinator_key(tmp_path / "keys" / "coordinator.key", tmp_path / "out")


def test_a_first_run_may_create_its_key(tmp_path):
    check_coordinator_key(tmp_path / "out" / "coordinator.key", tmp_path / "out")


def test_submit_refuses_a_changed_key_before_any_flower_process_or_run_folder(tmp_path):
    _earlier_run(tmp_path / "out", tmp_path / "keys" / "coordinator.key")
    with pytest.raises(ConfigError, match="pass --key"):
        submit_study(_study(tmp_path), superlink=None, host="127.0.0.1", port=9, transport=Transport(insecure=True),
                     flwr_home=None)
    assert not (tmp_path / "out" / "coordinator.key").exists()  # no stray key becomes the next default
    assert [p.name for p in (tmp_path / "out" / RUNS).iterdir()] == ["20260101-000000Z"]
    assert not (tmp_path / "out" / ".flwr").exists()


# --- expected partners, the cohort wait, late joiners ------------------------------------------

def test_expected_partners_take_names_or_a_count_not_below_the_minimum_cohort(tmp_path):
    assert load_study(_study(tmp_path, 'expected_partners = ["a", "b", "c"]')).expected_count == 3
    assert load_study(_study(tmp_path, "expected_partners = 4")).expected_count == 4
    with pytest.raises(ConfigError, match="fewer than min_cohort"):
        load_study(_study(tmp_path, "expected_partners = 1"))
    with pytest.raises(ConfigError, match="names must be distinct"):
        load_study(_study(tmp_path, 'expected_partners = ["a", "a"]'))


def test_the_cohort_waits_for_every_expected_partner(tmp_path):
    study = load_study(_study(tmp_path, "expected_partners = 3\nexpected_wait_s = 600"))
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="coordinator")
    assert wait_for_cohort(FakeGrid({1}, {1, 2}, {1, 2, 3}), study, trail) == {1, 2, 3}
    assert read_entries(tmp_path / "trail.jsonl")[-1]["details"] == {"nodes": 3, "expected": 3}


def test_without_all_expected_the_study_starts_with_the_minimum_once_the_wait_is_over(tmp_path):
    study = load_study(_study(tmp_path, "expected_partners = 3\nexpected_wait_s = 0"))
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="coordinator")
    assert wait_for_cohort(FakeGrid({1, 2}), study, trail) == {1, 2}


def test_fewer_than_the_minimum_cohort_still_fails(tmp_path):
    study = load_study(_study(tmp_path, "expected_partners = 3"))
    with pytest.raises(CohortTooSmallError, match="only 1 of the minimum cohort of 2 partners connected"):
        wait_for_cohort(FakeGrid({1}), study, AuditTrail(tmp_path / "trail.jsonl", actor="coordinator"))


def test_a_node_that_connects_after_the_study_started_is_recorded_as_late(tmp_path):
    study = load_study(_study(tmp_path))
    trail, known = AuditTrail(tmp_path / "trail.jsonl", actor="coordinator"), {1, 2}
    late = note_late_joiners(FakeGrid({1, 2, 7}), study, trail, known, before_round=None)
    late += note_late_joiners(FakeGrid({1, 2, 7}), study, trail, known, before_round=None)  # recorded once
    assert [entry.model_dump() for entry in late] == [{"node": "7", "before_round": None}]
    late = [e for e in read_entries(tmp_path / "trail.jsonl") if e["kind"] == "partner_joined_late"]
    assert [e["details"] for e in late] == [{"node": "7", "before_round": None}]


def test_expected_partners_that_never_contributed_are_named(tmp_path):
    study = load_study(_study(tmp_path, 'expected_partners = ["a", "b", "c"]'))
    results = StudyResults.parse({"study": "s1", "status": "completed", "rounds": [{"round": 1, "contributors": ["a"]}],
                                  "final_evaluation": {"round": 2, "contributors": ["a", "c"]}})
    assert expected_but_missing(study, results) == ["b"]


# --- console lines --------------------------------------------------------------------------------

def _entry(kind: str, round_number: int | None = None, **details) -> dict:
    return {"kind": kind, "study": "s1", "round": round_number, "details": details}


def test_the_last_round_of_a_training_study_is_called_final_evaluation():
    line = _progress_line(_entry("round_completed", 4, contributors=["a", "b"], duration_s=1.5), final_round=4)
    assert line.startswith("[bold]final evaluation done[/]")
    assert "round 4" not in line


def test_each_round_prints_its_pooled_metrics():
    line = _progress_line(_entry("round_completed", 2, contributors=["a"], duration_s=1.0,
                                 pooled={"global": {"accuracy": 0.9, "auroc": 0.95, "log_loss": 0.3}}), final_round=4)
    assert "round 2 done" in line
    assert "global: accuracy 0.900, auroc 0.950" in line


@pytest.mark.parametrize(("count", "words"), [(1, "1 contributor (a)"), (2, "2 contributors (a, b)")])
def test_counts_take_the_right_plural(count, words):
    contributors = ["a", "b"][:count]
    assert words in _progress_line(_entry("round_completed", 1, contributors=contributors, duration_s=1.0))


def test_a_late_joiner_is_shown():
    line = _progress_line(_entry("partner_joined_late", node="7", before_round=None))
    assert "node 7 joined late" in line and "only the closing seal" in line


def test_a_node_joining_before_a_training_study_s_final_evaluation_is_shown_so():
    line = _progress_line(_entry("partner_joined_late", node="7", before_round=4), final_round=4)
    assert line.endswith("it takes part from the final evaluation")


def test_the_cohort_line_says_how_many_expected_partners_are_missing():
    line = _progress_line(_entry("cohort_ready", nodes=2, expected=3))
    assert line == "cohort ready: 2 of 3 expected partner nodes connected; starting without 1 expected partner"


def test_the_report_names_late_and_never_seen_partners():
    from federated.reporting.report import _absent_lines

    text = "\n".join(_absent_lines({"purpose": "evaluation", "rounds": [{}], "expected_partners_missing": ["b"],
                                    "late_partners": [{"node": "7", "before_round": None}]}))
    assert "Expected but never answered: b." in text
    assert "Node 7 joined after the study started: in no round's results" in text
