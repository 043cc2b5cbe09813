"""What every aggregator of `federated.training.aggregation` guarantees, checked against each of them.

One suite, parametrised over the study's aggregators (`federated.study.AGGREGATORS`): a new
aggregator passes it or does not ship. Specific behaviour (FedAvg's exact weights, how far each
robust rule trims) is in tests/federated/test_training_aggregation.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from federated.errors import MessageError
from federated.study import AGGREGATORS, TrainingSettings
from federated.training.aggregation import aggregate_updates, mean_from_sum

ROBUST = ("fedmedian", "trimmed_mean", "krum", "multikrum")
SHAPES = {"w": (3, 4), "b": (4,)}


@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture(params=AGGREGATORS)
def settings(request) -> TrainingSettings:
    return TrainingSettings(architecture="mlp", num_features=3, aggregator=request.param, trim_fraction=0.2,
                            krum_byzantine=1)


def _updates(seed: int, n: int = 5) -> list[tuple[dict[str, np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    return [({name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}, int(rng.integers(5, 50)))
            for _ in range(n)]


def test_the_result_has_the_models_names_shapes_and_float32(settings):
    result = aggregate_updates(settings, _updates(0))
    assert {name: (a.shape, a.dtype) for name, a in result.items()} == {n: (s, np.float32) for n, s in SHAPES.items()}


def test_identical_updates_give_that_update(settings):
    (arrays, _), *_ = _updates(1)
    result = aggregate_updates(settings, [(arrays, count) for count in (3, 7, 11, 20, 40)])
    for name in SHAPES:
        np.testing.assert_allclose(result[name], arrays[name], rtol=1e-6)


def test_the_order_of_the_updates_does_not_matter(settings):
    updates = _updates(2)
    shuffled = [updates[i] for i in np.random.default_rng(3).permutation(len(updates))]
    first, second = aggregate_updates(settings, updates), aggregate_updates(settings, shuffled)
    for name in SHAPES:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-5, atol=1e-6)


def test_scaling_every_weight_alike_changes_nothing(settings):
    updates = _updates(4)
    scaled = [(arrays, count * 7) for arrays, count in updates]
    first, second = aggregate_updates(settings, updates), aggregate_updates(settings, scaled)
    for name in SHAPES:
        np.testing.assert_allclose(first[name], second[name], rtol=1e-5, atol=1e-6)


def test_every_coordinate_lies_within_the_updates_range(settings):
    updates = _updates(5)
    result = aggregate_updates(settings, updates)
    for name in SHAPES:
        stacked = np.stack([arrays[name] for arrays, _ in updates])
        assert np.all(result[name] >= stacked.min(axis=0) - 1e-6) and np.all(result[name] <= stacked.max(axis=0) + 1e-6)


@pytest.mark.parametrize("aggregator", ROBUST)
def test_a_robust_aggregator_keeps_one_poisoned_update_out_of_the_honest_range(aggregator):
    """Five partners, one of them poisoned (a large update that still passes the norm bound)."""
    settings = TrainingSettings(architecture="mlp", num_features=3, aggregator=aggregator, trim_fraction=0.2,
                                krum_byzantine=1)
    honest = _updates(6, n=4)
    poisoned = ({name: np.full(shape, 50.0, np.float32) for name, shape in SHAPES.items()}, 10)
    result = aggregate_updates(settings, [*honest[:2], poisoned, *honest[2:]])
    for name in SHAPES:
        stacked = np.stack([arrays[name] for arrays, _ in honest])
        assert np.all(result[name] <= stacked.max(axis=0) + 1e-6), aggregator


def test_fedavg_is_the_example_weighted_mean():
    updates = _updates(7)
    result = aggregate_updates(TrainingSettings(architecture="mlp", num_features=3, aggregator="fedavg"), updates)
    total = sum(count for _, count in updates)
    for name in SHAPES:
        expected = sum(arrays[name].astype(np.float64) * count for arrays, count in updates) / total
        np.testing.assert_allclose(result[name], expected, rtol=1e-5)


def test_the_encrypted_path_averages_as_fedavg_does():
    """Under HE the coordinator sees only Σ weight·(w_i − w_global); `mean_from_sum` must give FedAvg's model."""
    updates, reference = _updates(8), {name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()}
    weighted_sum = {name: sum(arrays[name].astype(np.float64) * count for arrays, count in updates) for name in SHAPES}
    encrypted = mean_from_sum(reference, weighted_sum, total_weight=sum(count for _, count in updates))
    plain = aggregate_updates(TrainingSettings(architecture="mlp", num_features=3, aggregator="fedavg"), updates)
    for name in SHAPES:
        np.testing.assert_allclose(encrypted[name], plain[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_update_is_refused_not_aggregated(settings, value):
    updates = _updates(9)
    updates[2][0]["w"][1, 1] = value
    with pytest.raises(MessageError, match="update 2 holds NaN or infinite values"):
        aggregate_updates(settings, updates)


def test_updates_of_other_shapes_are_refused(settings):
    updates = _updates(10)
    updates[3] = ({**updates[3][0], "b": np.zeros(5, np.float32)}, updates[3][1])
    with pytest.raises(MessageError, match="update 3 has arrays"):
        aggregate_updates(settings, updates)


@pytest.mark.parametrize("weight", [0, -3])
def test_a_weight_below_one_is_refused(settings, weight):
    updates = _updates(11)
    updates[0] = (updates[0][0], weight)
    with pytest.raises(MessageError, match=f"update 0 has weight {weight}"):
        aggregate_updates(settings, updates)


def test_no_updates_are_refused(settings):
    with pytest.raises(MessageError, match="no updates to aggregate"):
        aggregate_updates(settings, [])
