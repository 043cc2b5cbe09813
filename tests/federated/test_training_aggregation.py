"""Checks on partners' updates, and aggregation through Flower's strategies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from federated.errors import MessageError
from federated.study import TrainingSettings
from federated.training.aggregation import aggregate_updates, check_update

GLOBAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def _update(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), value, np.float32), "b": np.full(3, value, np.float32)}


def test_update_norm_is_returned():
    assert check_update(_update(1.0), GLOBAL, max_norm=10) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"w": np.zeros((2, 3), np.float32)}, r"missing \['b'\]"),
        ({**GLOBAL, "extra": np.zeros(1, np.float32)}, r"unexpected \['extra'\]"),
        ({"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}, r"'w' has shape \(3, 2\)"),
        ({"w": np.full((2, 3), np.nan, np.float32), "b": np.zeros(3, np.float32)}, "NaN or infinite"),
        ({"w": np.full((2, 3), np.inf, np.float32), "b": np.zeros(3, np.float32)}, "NaN or infinite"),
        ({"w": np.zeros((2, 3), np.int64), "b": np.zeros(3, np.float32)}, "dtype int64"),
        (_update(100.0), r"update norm 300 exceeds the study's max_update_norm 10"),
    ],
)
def test_bad_updates_are_rejected_with_the_reason(update, reason):
    with pytest.raises(MessageError, match=reason):
        check_update(update, GLOBAL, max_norm=10)


def _settings(aggregator: str, **extra) -> TrainingSettings:
    return TrainingSettings(architecture="mlp", num_features=3, aggregator=aggregator, **extra)


UPDATES = [(_update(1.0), 10), (_update(2.0), 30), (_update(100.0), 10), (_update(1.5), 10)]


def test_fedavg_weights_by_example_count():
    result = aggregate_updates(_settings("fedavg"), UPDATES)
    assert result["w"][0, 0] == pytest.approx((10 + 60 + 1000 + 15) / 60)
    assert result["w"].dtype == np.float32 and set(result) == {"w", "b"}


def test_median_and_krum_resist_one_poisoned_update():
    assert aggregate_updates(_settings("fedmedian"), UPDATES)["b"][0] == pytest.approx(1.75)
    assert aggregate_updates(_settings("krum", krum_byzantine=1), UPDATES)["b"][0] in (1.0, 1.5, 2.0)


def test_trimmed_mean_drops_the_extremes():
    updates = [(_update(v), 10) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]
    assert aggregate_updates(_settings("trimmed_mean", trim_fraction=0.2), updates)["w"][0, 0] == pytest.approx(3.0)


def test_an_outlying_update_norm_is_flagged_not_rejected():
    from federated.training.aggregation import flag_outliers

    norms = {"a": 1.0, "b": 1.1, "c": 0.9, "d": 1.05, "e": 9.0}
    flagged = flag_outliers(norms)
    assert list(flagged) == ["e"] and "robust z-score" in flagged["e"]
    assert flag_outliers({"a": 1.0, "b": 50.0}) == {}  # too few updates to call anything an outlier
