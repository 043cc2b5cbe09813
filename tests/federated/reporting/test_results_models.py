"""results.json as typed models (`federated.reporting.results`): what was written before the models existed
still loads, unchanged; what is written is validated; sections other modules own are typed loosely.

`results_before_models/` holds two results.json written by the coordinator before the models existed
(commit 7966b8f, in process: the dashboard's two-round DP evaluation study with a refusing partner, and a
two-round DP-SGD training study of the digits example).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federated.errors import ResultsError
from federated.reporting.report import write_outputs
from federated.reporting.results import RoundSummary, StudyResults

BEFORE = Path(__file__).parent / "results_before_models"


@pytest.mark.parametrize("name", ["evaluation-dp-results.json", "training-dp-results.json"])
def test_results_written_before_the_models_load_and_read_back_unchanged(name):
    document = json.loads((BEFORE / name).read_text(encoding="utf-8"))
    results = StudyResults.read(BEFORE / name)
    assert results.status == "completed" and len(results.rounds) == 2
    assert results.document() == document  # nothing lost, nothing added


def test_a_training_study_reads_back_as_rounds_lineage_and_final_evaluation():
    results = StudyResults.read(BEFORE / "training-dp-results.json")
    assert results.purpose == "training" and results.lineage is not None and len(results.lineage) == 3
    assert [r.rejected for r in results.rounds] == [[], []]
    assert results.final_round is results.final_evaluation and results.final_evaluation.model_sha256
    assert results.lineage[-1].sha256 == results.final_evaluation.model_sha256


def test_an_evaluation_round_has_no_training_fields_and_writes_none():
    results = StudyResults.read(BEFORE / "evaluation-dp-results.json")
    first = results.rounds[0]
    assert first.rejected is None and first.global_sha256_in is None
    assert "rejected" not in first.model_dump(mode="json", exclude_unset=True)
    assert results.final_evaluation is None and "final_evaluation" not in results.document()


def test_an_unknown_field_is_refused_naming_the_file_and_field(tmp_path):
    document = json.loads((BEFORE / "evaluation-dp-results.json").read_text(encoding="utf-8"))
    document["rounds"][1]["pooled_too"] = {}
    (tmp_path / "results.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ResultsError, match=r"results\.json: not a results document: rounds\.1\.pooled_too: Extra inputs"):
        StudyResults.read(tmp_path / "results.json")


def test_a_round_without_its_number_is_refused(tmp_path):
    with pytest.raises(ResultsError, match=r"rounds\.0\.round: Field required"):
        StudyResults.parse({"study": "s", "status": "completed", "rounds": [{"contributors": []}]})


def test_a_file_that_is_not_json_is_named(tmp_path):
    (tmp_path / "results.json").write_text("{", encoding="utf-8")
    with pytest.raises(ResultsError, match=r"results\.json: cannot be read as JSON"):
        StudyResults.read(tmp_path / "results.json")


def test_writing_validates_the_document(tmp_path):
    document = {"study": "s", "status": "completed", "rounds": [], "trail": "t.jsonl", "surprise": 1}
    with pytest.raises(ResultsError, match=r"surprise: Extra inputs are not permitted"):
        write_outputs(tmp_path, document, {}, 10)
    assert not (tmp_path / "results.json").exists()


def test_sections_other_modules_own_are_json_valued_mappings():
    """Monitoring (its agreed shape), shift, regression metrics, interval and distributed-noise fields validate
    whatever their keys, as long as the values are JSON."""
    round_fields = {
        "round": 1, "contributors": ["a", "b"],
        "pooled": {"m": {"mae": 0.4, "rmse": 0.6, "r2": 0.31, "count": 200.0}},
        "validation": {"m": {"brier_ci": {"low": 0.1, "high": 0.2, "method": "delta"}, "log_loss_ci": None}},
        "privacy": {"a": {"sigma": 2.0, "epsilon": 1.0, "delta": 1e-6, "distributed": True, "honest_contributors": 2}},
        "encryption": {"fingerprint": "f" * 64, "noise_shares": {"a": 1.0}},
        "shift": {"age": {"partners": {"a": [0.1, 0.9]}}},
    }
    monitoring = {
        "schedule": {"kind": "interval", "interval_s": 3600.0, "periods": 2},
        "baseline": {"kind": "first_period", "period": 1, "reference": None},
        "thresholds": {"auroc": {"max_drop": 0.05, "alpha": 0.01}},
        "periods": [{"period": 1, "round": 1, "started_at": "2026-11-30T02:00:00Z", "status": "completed",
                     "contributors": ["a", "b"], "pooled": {"m": {"auroc": 0.8}}, "per_partner": {}, "comparisons": []}],
        "alerts": [], "stopped": None,
    }
    results = StudyResults.parse({"study": "s", "status": "completed", "task": "regression", "rounds": [round_fields],
                                  "monitoring": monitoring, "shift": {"features": ["age"]},
                                  "privacy": {"a": {"releases": [], "distributed_noise": {"assumed_honest": 2}}}})
    assert results.rounds[0].pooled["m"]["r2"] == 0.31
    assert results.document()["monitoring"] == monitoring


def test_a_round_below_the_minimum_cohort_is_withheld_but_keeps_its_privacy_releases():
    summary = RoundSummary.of({"round": 2, "contributors": ["a"], "pooled": {"m": {"accuracy": float("nan")}},
                               "validation": {"m": {"accuracy_ci": {"low": 0.1}}}, "heterogeneity": {"m": {}},
                               "privacy": {"a": {"epsilon": 1.0, "delta": 1e-6, "sigma": 3.0, "l2_sensitivity": 1.0}}})
    assert summary.pooled == {"m": {"accuracy": None}}  # NaN is written as null
    withheld = summary.withheld()
    assert (withheld.pooled, withheld.validation, withheld.heterogeneity, withheld.matrix) == ({}, {}, {}, {})
    assert withheld.privacy == summary.privacy  # ε was spent: the privacy report still counts it
