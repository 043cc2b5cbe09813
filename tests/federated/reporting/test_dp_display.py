"""One truth on screen under DP: plots drawn from the table's estimates, counts and clipped metrics marked."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from federated.audit.evidence.documents import describe_entry
from federated.evaluation.dp_release import privatize
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.reporting.formatting import clipped_text, format_count, format_estimate
from federated.reporting.report import bin_noise_variance, figure_data, write_outputs
from federated.server.__main__ import _cell, score_bins_warning
from federated.server.pooling import aggregate_round
from federated.study import EvaluationPrivacy, EvaluationSettings, ValidationSettings

LAYOUT = StatisticsLayout(num_classes=2, score_bins=20, subgroup_levels=(), loss_bound=10.0)


def _dp_round(epsilon: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    replies = []
    for index in range(3):
        labels = rng.integers(0, 2, 150)
        score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
        stats = compute_statistics(np.column_stack([1 - score, score]), labels, None, LAYOUT)
        noisy, release = privatize({"m": stats}, EvaluationPrivacy(enabled=True, epsilon=epsilon), rng=rng)
        info = PartnerInfo(partner=f"partner-{index}", status="ok", noise=NoiseInfo(**release.as_record()))
        replies.append(EvaluationReply(info=info, statistics=noisy))
    outcome = aggregate_round(1, replies, 10, validation=ValidationSettings())
    return outcome, outcome.summary()


def _figure(outcome, entry):
    return figure_data(outcome.pooled_statistics["m"], 10, bin_noise_variance=bin_noise_variance(entry),
                       pooled=entry["pooled"]["m"], validation=entry["validation"]["m"])


@pytest.mark.parametrize("seed", range(5))
def test_the_roc_legend_shows_the_tables_auroc_and_the_curve_encloses_it(seed):
    outcome, entry = _dp_round(seed=seed)
    roc = _figure(outcome, entry)["roc"][0]
    table = entry["pooled"]["m"]["auroc"]
    assert roc["auroc"] == table
    assert f"{table:.3f}" in roc["label"] or "clipped" in roc["label"]
    area = np.trapezoid(roc["true_positive_rate"], roc["false_positive_rate"])
    assert area == pytest.approx(table, abs=1e-9) or table in (0.0, 1.0)


def test_the_roc_legend_carries_the_tables_interval():
    outcome, entry = _dp_round(seed=1)
    interval = entry["validation"]["m"]["auroc_ci"]
    label = _figure(outcome, entry)["roc"][0]["label"]
    assert f"[{interval['low']:.3f}, {interval['high']:.3f}]" in label or "clipped" in label


@pytest.mark.parametrize("seed", range(5))
def test_calibration_points_are_in_ascending_score_order(seed):
    outcome, entry = _dp_round(epsilon=1.0, seed=seed)
    points = _figure(outcome, entry)["calibration"][0]
    x = points["mean_predicted"][points["counts"] > 0]
    assert np.all(np.diff(x) >= 0)
    assert np.all((points["observed"][points["readable"]] >= 0) & (points["observed"][points["readable"]] <= 1))


def test_calibration_bins_too_noisy_to_read_are_not_drawn():
    outcome, entry = _dp_round(epsilon=0.1, seed=2)
    points = _figure(outcome, entry)["calibration"][0]
    assert not points["readable"].all()
    assert np.all(points["half_width"][points["readable"]] <= 0.25)


def test_a_noisy_count_is_rounded_and_marked():
    assert format_count(408.7267, noisy=True) == "≈409 (noisy)"
    assert format_estimate("count", 370.5611, noisy=True) == "≈371 (noisy)"
    assert format_count(410.0) == "410"


def test_a_withheld_count_reads_withheld_not_zero():
    assert format_count(None) == "withheld"
    assert format_estimate("count", None) == "withheld"


def test_the_auditors_timeline_says_withheld_for_a_dp_partners_record_count():
    entry = {"kind": "result_received", "details": {"partner": "hospital-a", "count": 0, "payload_sha256": "ab" * 32}}
    assert "record count withheld" in describe_entry(entry) and "0 records" not in describe_entry(entry)
    assert "410 records" in describe_entry(entry | {"details": entry["details"] | {"count": 410}})


def test_a_clipped_metric_shows_a_bound_not_an_exact_one_or_zero():
    assert format_estimate("precision", 1.0, noisy=True, interval={"low": 0.912, "high": 1.0}) == "≥ 0.912 (clipped)"
    assert format_estimate("log_loss", 0.0, noisy=True, se=0.02) == "≤ 0.039 (clipped)"
    assert format_estimate("accuracy", 1.0, noisy=True) == "clipped at 1 (DP noise)"
    assert _cell("auroc", 1.0, 0.05, None, noisy=True) == "≥ 0.902 (clipped)"


def test_an_exact_one_without_dp_is_shown_as_it_is():
    assert format_estimate("precision", 1.0) == "1"
    assert clipped_text("precision", 0.93, se=0.1) is None


def test_the_dp_report_marks_counts_and_draws_both_plots(tmp_path):
    outcome, entry = _dp_round(seed=4)
    results = {"study": "s", "status": "completed", "models": [{"name": "m", "sha256": "0" * 64, "path": "m.onnx"}], "rounds": [entry],
               "trail": "trail.jsonl"}
    hashes = write_outputs(tmp_path, results, outcome.pooled_statistics, 10)
    assert {"roc-m.png", "calibration-m.png", "report.md"} <= set(hashes)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    row = next(line for line in report.splitlines() if line.startswith("| m | ≈"))
    assert row.split(" | ")[1] == format_count(entry["pooled"]["m"]["count"], noisy=True)
    assert "![ROC m](roc-m.png)" in report


def _study(score_bins: int):
    return SimpleNamespace(evaluation=EvaluationSettings(score_bins=score_bins, privacy=EvaluationPrivacy(enabled=True)))


def test_the_coordinator_warns_when_dp_score_bins_are_far_above_the_recommendation():
    results = {"rounds": [{"pooled": {"m": {"count": 5000.0}}, "contributors": [f"p{i}" for i in range(10)]}]}
    assert "recommended" in score_bins_warning(_study(1000), results)
    assert score_bins_warning(_study(20), results) is None
