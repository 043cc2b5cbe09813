"""The report and the evidence pack's model card show the shift table and the Brier / log-loss intervals
from a round's results entry (what results.json holds)."""

from __future__ import annotations

import json

import numpy as np

from federated.audit.evidence.documents import model_card
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.reporting.shift_section import shift_lines
from federated.reporting.validation_section import validation_lines
from federated.server.pooling import aggregate_round
from federated.study import ShiftSettings, ValidationSettings

SHIFT = ShiftSettings(features=["age"], edges={"age": [0.0, 40.0, 60.0, 90.0]})
LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), feature_edges=((0.0, 40.0, 60.0, 90.0),),
                          shift_features=("age",))


def _round(release: dict[str, bool]) -> dict:
    replies = []
    for seed, (name, shift) in enumerate((("a", 0.0), ("b", 0.0), ("c", 25.0))):
        rng = np.random.default_rng(seed)
        age = rng.normal(50 + shift, 12, 200)
        p = np.clip(rng.random(200), 0.01, 0.99)
        stats = compute_statistics(np.column_stack([1 - p, p]), (rng.random(200) < p).astype(np.int64), None, LAYOUT,
                                   shift_columns=age[:, None])
        replies.append(EvaluationReply(info=PartnerInfo(partner=name, status="ok", release_per_partner=release[name]),
                                       statistics={"m": stats}))
    summary = aggregate_round(1, replies, calibration_bins=5, validation=ValidationSettings(), shift=SHIFT).summary()
    return json.loads(json.dumps(summary))  # as results.json stores it


def test_the_shift_table_flags_the_shifted_partner_and_names_the_withheld_one() -> None:
    final = _round({"a": True, "b": False, "c": True})
    lines = "\n".join(shift_lines(final))
    assert "## Shift between partners" in lines and "Reference: all partners pooled." in lines
    flagged = [line for line in lines.splitlines() if line.startswith("| c |") and "| age |" in line]
    assert flagged and flagged[0].endswith("| ⚠ |")
    assert not any(line.startswith("| b |") for line in lines.splitlines())
    assert "1 contributor(s) did not release" in lines
    assert "| age | 0, 40, 60, 90 |" in lines


def test_without_per_partner_release_the_report_says_what_the_pooled_release_still_shows() -> None:
    lines = "\n".join(shift_lines(_round({"a": False, "b": False, "c": False})))
    assert "cannot be computed" in lines and "| pooled |" in lines and "| age | 0, 40, 60, 90 |" in lines


def test_validation_table_and_model_card_carry_brier_and_log_loss_intervals_and_the_shift_table() -> None:
    final = _round({"a": True, "b": True, "c": True})
    lines = "\n".join(validation_lines(final))
    brier = final["validation"]["m"]["brier_ci"]
    assert f"| Brier score | {final['pooled']['m']['brier']:.4f} | [{brier['low']:.4f}, {brier['high']:.4f}] | normal |" in lines
    assert "| log loss |" in lines
    results = {"study": "s", "purpose": "evaluation", "status": "completed", "models": [{"name": "m", "sha256": "a" * 64}],
               "rounds": [final]}
    card = model_card(results["models"][0], results, {"title": "t"})
    assert "| Brier score |" in card and "## Shift between partners" in card and "Brier score and log loss" in card
