"""A regression study end to end on the coordinator's side: the spec, the node's DP release and disclosure
control, the pooled round (plaintext equal to scikit-learn; DP within its stated error), report and model card."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from federated.errors import MessageError
from federated.evaluation.disclosure import CellSuppression
from federated.evaluation.regression import (
    RegressionLayout,
    RegressionStatistics,
    calibrate_regression,
    compute_regression_statistics,
    privatize_regression,
    regression_metrics,
)
from federated.messages.common import NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply, TaskSpec
from federated.server.pooling import aggregate_round
from federated.study import EvaluationSettings

EDGES = tuple(float(v) for v in np.linspace(-150, 150, 13))
LAYOUT = RegressionLayout(EDGES, ("f", "m"), value_range=(0.0, 400.0))
CUTS = (0, 90, 170, 242)


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    predictions = Ridge(alpha=0.5).fit(x[:200], y[:200]).predict(x[200:])
    groups = np.where(x[200:, 1] > 0, "m", "f")  # the dataset's (scaled) sex column
    return predictions, y[200:], groups


def _parts(diabetes, layout: RegressionLayout = LAYOUT) -> list[RegressionStatistics]:
    predictions, outcomes, groups = diabetes
    return [compute_regression_statistics(predictions[a:b], outcomes[a:b], groups[a:b], layout)
            for a, b in itertools.pairwise(CUTS)]


def _reply(name: str, stats: RegressionStatistics, *, noise: NoiseInfo | None = None, release: bool = True) -> EvaluationReply:
    info = PartnerInfo(partner=name, status="ok", release_per_partner=release, noise=noise)
    return EvaluationReply(info=info, statistics={"ridge": stats})


# ---- the study and its spec -------------------------------------------------------------------------------------

def _settings(**privacy) -> EvaluationSettings:
    return EvaluationSettings(task="regression", subgroup_levels=["f", "m"], privacy=privacy or {},
                              regression={"residual_edges": list(EDGES), "value_range": [0.0, 400.0]})


def test_a_spec_without_regression_hashes_as_before_the_field_existed() -> None:
    dumped = EvaluationSettings().model_dump(mode="json")
    assert "task" not in dumped and "regression" not in dumped  # old specs: byte for byte the same canonical JSON
    assert _settings().model_dump(mode="json")["task"] == "regression"


def test_a_regression_spec_round_trips_and_names_its_layout() -> None:
    spec = TaskSpec(study="s", round=1, study_sha256="0" * 64, models=[{"name": "ridge", "sha256": "1" * 64,
                    "output": "variable"}], evaluation=_settings())
    parsed = TaskSpec.model_validate_json(spec.canonical())
    assert parsed.sha256() == spec.sha256()
    assert parsed.regression_layout() == LAYOUT


@pytest.mark.parametrize(("settings", "message"), [
    ({"task": "regression"}, r"needs an \[evaluation.regression\] table"),
    ({"regression": {"residual_edges": [0, 1]}}, "task is not"),
    ({"task": "regression", "regression": {"residual_edges": [1, 0]}}, "strictly ascending"),
    ({"task": "regression", "regression": {"residual_edges": [0, 1]}, "privacy": {"enabled": True}}, "value_range"),
])
def test_an_incomplete_regression_study_is_refused_naming_the_field(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationSettings(**settings)


# ---- the node's release --------------------------------------------------------------------------------------

def test_dp_release_adds_noise_of_the_calibrated_scale_per_coordinate(diabetes) -> None:
    stats = _parts(diabetes)[0]
    draws = [privatize_regression({"m": stats}, epsilon=1.0, delta=1e-6, rng=np.random.default_rng(seed))
             for seed in range(400)]
    release = draws[0][1]
    assert release.epsilon == 1.0 and release.delta == 1e-6
    assert release.l2_sensitivity == pytest.approx(math.sqrt(14 + 1 + 4))  # every sum, one bin, one subgroup row
    noise = np.array([noisy["m"]["sums"] - stats["sums"] for noisy, _ in draws])
    scales = LAYOUT.record_scales()["sums"]
    assert np.std(noise, axis=0) / (release.sigma * scales) == pytest.approx(np.ones(scales.size), abs=0.12)


def test_dp_without_a_value_range_is_refused() -> None:
    with pytest.raises(MessageError, match="value_range"):
        calibrate_regression(RegressionLayout(EDGES), epsilon=1.0, delta=1e-6, models=1)


def test_disclosure_control_zeroes_small_residual_bins_and_subgroups(diabetes) -> None:
    stats = _parts(diabetes)[0]
    released, suppressed = CellSuppression(min_cell_count=5, min_subgroup_size=200).apply_regression(stats)
    histogram = stats["residual_hist"]
    small = (histogram > 0) & (histogram < 5)
    assert np.all(released["residual_hist"][small] == 0) and np.all(released["residual_hist"][~small] == histogram[~small])
    assert np.all(released["subgroup_sums"] == 0)  # 90 records: no level reaches 200
    assert np.array_equal(released["sums"], stats["sums"])  # whole-data sums stand for every record
    assert suppressed == int(small.sum()) + int(np.count_nonzero(stats["subgroup_sums"]))


# ---- the coordinator's round ---------------------------------------------------------------------------------

def test_a_pooled_regression_round_equals_scikit_learn_on_the_concatenated_data(diabetes) -> None:
    predictions, outcomes, _ = diabetes
    replies = [_reply(f"p{i}", part, release=i != 2) for i, part in enumerate(_parts(diabetes))]
    outcome = aggregate_round(1, replies, calibration_bins=10)
    pooled = outcome.pooled["ridge"]
    assert pooled["mae"] == pytest.approx(mean_absolute_error(outcomes, predictions), rel=1e-12)
    assert pooled["rmse"] == pytest.approx(math.sqrt(mean_squared_error(outcomes, predictions)), rel=1e-12)
    assert pooled["r2"] == pytest.approx(r2_score(outcomes, predictions), rel=1e-10)
    validation = outcome.validation["ridge"]
    assert validation["mae_ci"]["low"] < pooled["mae"] < validation["mae_ci"]["high"]
    assert validation["rmse_ci"]["method"] == "delta (MSE)"
    assert sum(validation["residual_histogram"]["counts"]) == outcomes.size
    assert set(outcome.subgroups["ridge"]["levels"]) == {"f", "m"}
    assert outcome.matrix["ridge"]["p2"] is None  # p2 does not allow per-partner release
    own = slice(CUTS[0], CUTS[1])
    assert outcome.matrix["ridge"]["p0"]["mae"] == pytest.approx(mean_absolute_error(outcomes[own], predictions[own]))
    assert "ridge" not in outcome.standard_errors


def test_a_dp_round_is_within_its_stated_error_and_its_intervals_carry_the_noise(diabetes) -> None:
    parts = _parts(diabetes)
    exact = regression_metrics(RegressionStatistics.total(parts))
    errors, reported = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        replies = []
        for i, part in enumerate(parts):
            noisy, release = privatize_regression({"ridge": part}, epsilon=10.0, delta=1e-6, rng=rng)
            replies.append(_reply(f"p{i}", noisy["ridge"], noise=NoiseInfo(**release.as_record())))
        outcome = aggregate_round(1, replies, calibration_bins=10)
        errors.append(outcome.pooled["ridge"]["mae"] - exact["mae"])
        reported.append(outcome.standard_errors["ridge"]["mae"])
        assert outcome.validation["ridge"]["mae_ci"]["method"] == "normal+dp"
        assert all(cell is None or "mae" in cell for cell in outcome.matrix["ridge"].values())
    # The bootstrap standard error describes the noise actually added (within sampling error of 40 draws).
    assert np.std(errors) == pytest.approx(np.mean(reported), rel=0.35)
    assert np.max(np.abs(errors)) < 5 * np.mean(reported)


def test_mixed_dp_and_exact_replies_are_not_pooled(diabetes) -> None:
    parts = _parts(diabetes)
    noisy, release = privatize_regression({"ridge": parts[0]}, epsilon=1.0, delta=1e-6, rng=np.random.default_rng(0))
    replies = [_reply("p0", noisy["ridge"], noise=NoiseInfo(**release.as_record())), _reply("p1", parts[1])]
    with pytest.raises(MessageError, match="some partners sent DP-noised"):
        aggregate_round(1, replies, calibration_bins=10)


def test_the_contracts_bins_per_record_cap_counts_a_regression_studys_residual_bins() -> None:
    from federated.client.contract_request import task_request
    from federated.client.costs import TaskCost

    spec = TaskSpec(study="s", round=1, study_sha256="0" * 64, evaluation=_settings(),
                    models=[{"name": "ridge", "sha256": "1" * 64, "output": "variable"}])
    request = task_request(spec=spec, purpose="evaluation", coordinator_key=None, cost=TaskCost(), records=100)
    assert request.release.score_bins == len(EDGES) - 1  # not the unused classification default of 1000
