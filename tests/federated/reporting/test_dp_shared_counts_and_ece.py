"""Under DP every model of a round shows the round's one noisy record count, and an ECE the noise swamps is
reported as not estimable at this ε (results, report table, validation section, calibration legend)."""

from __future__ import annotations

import math

import numpy as np

from federated.evaluation.dp_release import ECE_NOT_ESTIMABLE, privatize
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.reporting.report import bin_noise_variance, figure_data, write_outputs
from federated.server.pooling import aggregate_round
from federated.study import EvaluationPrivacy, ValidationSettings

LAYOUT = StatisticsLayout(num_classes=2, score_bins=20, subgroup_levels=(), loss_bound=10.0)


def _round(privacy: EvaluationPrivacy | None, records: int = 150, seed: int = 0):
    rng = np.random.default_rng(seed)
    replies = []
    for index in range(3):
        labels = rng.integers(0, 2, records)
        stats = {name: compute_statistics(np.column_stack([1 - s, s]), labels, None, LAYOUT)
                 for name, s in (("a", np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)), ("b", rng.random(records)))}
        noise = None
        if privacy is not None:
            stats, release = privatize(stats, privacy, rng=rng)
            noise = NoiseInfo(**release.as_record())
        replies.append(EvaluationReply(info=PartnerInfo(partner=f"p{index}", status="ok", noise=noise), statistics=stats))
    outcome = aggregate_round(1, replies, 10, validation=ValidationSettings())
    return outcome, outcome.summary()


def test_every_model_of_a_dp_round_shows_the_same_noisy_record_count():
    _, entry = _round(EvaluationPrivacy(enabled=True, epsilon=1.0))
    counts = {model: metrics["count"] for model, metrics in entry["pooled"].items()}
    assert counts["a"] == counts["b"] and counts["a"] != 450  # one noisy count, shared


def test_a_swamped_ece_is_not_estimable_in_results_and_report(tmp_path):
    outcome, entry = _round(EvaluationPrivacy(enabled=True, epsilon=1.0))
    assert math.isnan(entry["pooled"]["a"]["ece"])
    assert entry["validation"]["a"]["ece_not_estimable"].startswith(ECE_NOT_ESTIMABLE)
    results = {"study": "s", "status": "completed", "rounds": [entry], "trail": "trail.jsonl",
               "models": [{"name": m, "sha256": "0" * 64, "path": f"{m}.onnx"} for m in ("a", "b")]}
    write_outputs(tmp_path, results, outcome.pooled_statistics, 10)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    row = next(line for line in report.splitlines() if line.startswith("| a | ≈"))
    assert "not estimable at this ε" in row
    assert "| ECE | not estimable at this ε |" in report
    figure = figure_data(outcome.pooled_statistics["a"], 10, bin_noise_variance=bin_noise_variance(entry),
                         pooled=entry["pooled"]["a"], validation=entry["validation"]["a"])
    assert "not estimable at this ε" in figure["calibration"][0]["label"]


def test_without_dp_the_ece_is_always_reported():
    _, entry = _round(None)
    assert 0 <= entry["pooled"]["a"]["ece"] <= 1
    assert "ece_not_estimable" not in entry["validation"]["a"]
    assert entry["pooled"]["a"]["count"] == entry["pooled"]["b"]["count"] == 450
