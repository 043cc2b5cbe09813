"""The StudyRunner finishes every round the same way, whatever the study kind: the summary goes into the
results, `round_completed` into the trail, and a round below the minimum cohort releases nothing and ends
the study. Its round context is explicit: nothing is looked up from module state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from flwr.serverapp import Grid

from federated.audit import AuditTrail, read_entries
from federated.errors import CohortTooSmallError
from federated.reporting.results import RoundSummary
from federated.server.app import seal_study
from federated.server.context import RoundContext
from federated.server.runner import StudyRunner
from federated.study import Study


class Nodes:
    """A grid that only says which nodes are connected."""

    def __init__(self, *nodes: int) -> None:
        self.nodes = set(nodes)

    def get_node_ids(self) -> list[int]:
        return sorted(self.nodes)


def _runner(tmp_path: Path, *, expected: list[str] | None = None, grid: Nodes | None = None) -> StudyRunner:
    (tmp_path / "m.onnx").write_bytes(b"not run here")
    study = Study.model_validate({
        "id": "s1", "purpose": "evaluation", "rounds": 3, "min_cohort": 2, "output_dir": str(tmp_path / "out"),
        "cohort_timeout_s": 0.5, "models": [{"name": "m", "path": str(tmp_path / "m.onnx")}],
        **({"expected_partners": expected} if expected else {}),
    })
    trail = AuditTrail(tmp_path / "trail.jsonl", actor="coordinator")
    context = RoundContext(cast(Grid, grid or Nodes(1, 2)), trail, None, study=study, study_sha256="0" * 64)
    return StudyRunner(context, [], run_id=3)


def _round(number: int, *contributors: str, **extra: Any) -> RoundSummary:
    return RoundSummary.of({"round": number, "contributors": list(contributors), "duration_s": 1.25,
                            "pooled": {"m": {"accuracy": 0.9, "auroc": float("nan")}}, "matrix": {"m": {}}} | extra)


def _completed(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in read_entries(tmp_path / "trail.jsonl") if e["kind"] == "round_completed"]


def test_a_round_with_the_minimum_cohort_is_recorded_with_its_pooled_metrics(tmp_path):
    runner = _runner(tmp_path)
    runner.finish_round(_round(1, "a", "b"))
    assert runner.rounds[0].pooled == {"m": {"accuracy": 0.9, "auroc": None}}
    (entry,) = _completed(tmp_path)
    assert entry["round"] == 1
    assert entry["details"] == {"contributors": ["a", "b"], "refused": 0, "missing": 0, "duration_s": 1.25,
                                "pooled": {"m": {"accuracy": 0.9}}}


def test_a_round_below_the_minimum_cohort_releases_nothing_and_ends_the_study(tmp_path):
    runner = _runner(tmp_path)
    with pytest.raises(CohortTooSmallError, match=r"round 2: only 1 partner contributed \(a\), below the minimum cohort of 2"):
        runner.finish_round(_round(2, "a"))
    assert runner.rounds[0].pooled == {} and runner.rounds[0].matrix == {}
    assert "pooled" not in _completed(tmp_path)[0]["details"]


def test_a_training_round_is_finished_the_same_way_and_counts_its_rejected_updates(tmp_path):
    runner = _runner(tmp_path)
    rejected = [{"partner": "c", "reason": "norm 40 above max_update_norm 30"}]
    with pytest.raises(CohortTooSmallError, match=r"round 1: only 1 partner contributed an accepted update \(a\)"):
        runner.finish_round(_round(1, "a", rejected=rejected), counted="contributed an accepted update")
    (entry,) = _completed(tmp_path)
    assert entry["details"]["rejected"] == 1 and "pooled" not in entry["details"]
    assert runner.rounds[0].rejected is not None and runner.rounds[0].rejected[0].partner == "c"


def test_the_final_evaluation_is_recorded_apart_and_named_in_its_failure(tmp_path):
    runner = _runner(tmp_path)
    runner.finish_round(_round(1, "a", "b"))
    with pytest.raises(CohortTooSmallError, match=r"^final evaluation: only 1 partner answered, below the minimum cohort of 2$"):
        runner.finish_round(_round(2, "b"), final=True)
    assert len(runner.rounds) == 1 and runner.final_evaluation is not None and runner.final_evaluation.pooled == {}
    assert _completed(tmp_path)[-1]["details"]["final_evaluation"] is True


def test_the_results_hold_every_round_late_joiners_and_expected_partners_that_never_answered(tmp_path):
    grid = Nodes(1, 2)
    runner = _runner(tmp_path, expected=["a", "b", "c"], grid=grid)
    runner.wait_for_cohort()
    numbers = runner.round_numbers()
    runner.finish_round(_round(next(numbers), "a", "b"))
    grid.nodes.add(9)
    runner.finish_round(_round(next(numbers), "a", "b"))
    results = runner.results(status="completed")
    assert [r.round for r in results.rounds] == [1, 2]
    assert [(late.node, late.before_round) for late in results.late_partners or []] == [("9", 2)]
    assert results.expected_partners_missing == ["c"]
    assert (results.flower_run, results.study_sha256, results.min_cohort) == ("3", "0" * 64, 2)
    assert results.privacy == {}


def test_without_an_audit_in_its_context_the_study_is_not_sealed(tmp_path):
    """The seal asks partners to cosign checkpoints: with no audit in the context (none is looked up) there
    are none, and nothing is sent (this grid could not send)."""
    runner = _runner(tmp_path)
    seal_study(runner.context, completed=True, skip=set())
    assert [e["kind"] for e in read_entries(tmp_path / "trail.jsonl")] == ["trail_opened"]
