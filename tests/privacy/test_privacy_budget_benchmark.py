"""The privacy-budget benchmark measures what its tables claim, on tiny sizes (a few seconds).

The full runs are `python -m benchmarks.privacy_budget [--quick]`; the simulation part is not run here.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import privacy_budget as benchmark
from federated.evaluation.metrics import compute_metrics
from federated.evaluation.statistics import EvaluationStatistics, compute_statistics
from federated.study import EvaluationPrivacy

REPEATS = 12


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    return benchmark.hospital_scores(tmp_path_factory.mktemp("hospitals"))


def test_splitting_into_partners_keeps_every_record_once(scores):
    layout = benchmark.layout_for(10, EvaluationPrivacy(enabled=True))
    parts = benchmark.partner_statistics(scores, layout, 7, np.random.default_rng(0))
    pooled = EvaluationStatistics.total(parts)
    whole = compute_statistics(scores.probabilities, scores.labels, scores.subgroups, layout)
    assert len(parts) == 7 and pooled.count == scores.labels.size == 410
    for name in whole.arrays:
        np.testing.assert_allclose(pooled[name], whole[name])


def test_error_of_pooled_accuracy_and_auroc_shrinks_as_epsilon_grows(scores):
    loose = benchmark.evaluation_cell(scores, partners=3, eps=0.3, score_bins=10, repeats=REPEATS, seed=1)
    tight = benchmark.evaluation_cell(scores, partners=3, eps=10.0, score_bins=10, repeats=REPEATS, seed=1)
    assert tight["accuracy"]["mae"] < loose["accuracy"]["mae"] / 3
    assert tight["auroc"]["mae"] < loose["auroc"]["mae"] / 3


def test_more_partners_holding_the_same_records_means_more_error(scores):
    few = benchmark.evaluation_cell(scores, partners=3, eps=1.0, score_bins=10, repeats=REPEATS, seed=2)
    many = benchmark.evaluation_cell(scores, partners=100, eps=1.0, score_bins=10, repeats=REPEATS, seed=2)
    assert many["accuracy"]["mae"] > 2 * few["accuracy"]["mae"]


def test_truth_is_the_non_private_pooled_metric_and_the_standard_error_matches_the_spread(scores):
    cell = benchmark.evaluation_cell(scores, partners=3, eps=10.0, score_bins=10, repeats=REPEATS, seed=3)
    layout = benchmark.layout_for(10, EvaluationPrivacy(enabled=True))
    whole = compute_statistics(scores.probabilities, scores.labels, scores.subgroups, layout)
    assert cell["accuracy"]["truth"] == pytest.approx(compute_metrics(whole, 10)["accuracy"])
    # at ε = 10 clamping rarely acts on accuracy's counts, so the bootstrap SE should match the spread
    assert 0.5 < cell["accuracy"]["se_to_spread"] < 2.0


def test_prv_never_reports_more_than_rdp_for_a_digits_partners_training():
    segments = [(1.0, 0.2, 10)] * 3  # σ, q, steps per round: n≈160, batch 32, 2 epochs, 3 rounds
    prv = benchmark.composed_epsilon(segments, "prv", 1e-5)
    rdp = benchmark.composed_epsilon(segments, "rdp", 1e-5)
    assert 0 < prv <= rdp


def test_the_issue_setting_measures_auroc_error_against_the_exact_auroc_with_local_noise():
    scores = benchmark.synthetic_scores(benchmark.ISSUE_PARTNERS * benchmark.ISSUE_RECORDS, benchmark.ISSUE_SEED)
    cell = benchmark.issue_cell(scores, eps=3.0, score_bins=10, repeats=4, seed=0)
    assert cell["partners"] == 10 and cell["records_per_partner"] == 500
    assert 0.9 < cell["exact_auroc"] < 0.94  # the synthetic population the report describes
    assert cell["auroc_median_abs_error"] < 0.05
    assert 0 <= cell["auroc_coverage_binned"] <= 1
