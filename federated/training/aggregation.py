"""Checking partners' updates and combining them with Flower's aggregation strategies.

An update is rejected, with a reason, if its arrays do not match the global model's names
and shapes, hold NaN or Inf, or move the model by more than `max_update_norm` (L2 over all
parameters). Accepted updates go to Flower's own strategies (FedAvg weighted by example
count, FedMedian, FedTrimmedAvg, Krum, MultiKrum) through their `aggregate_train`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from federated.errors import MessageError
from federated.study import TrainingSettings


def update_norm(update: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """L2 norm of (update - reference) over all parameters."""
    return float(np.sqrt(sum(float(((update[k].astype(np.float64) - reference[k]) ** 2).sum()) for k in reference)))


def check_update(update: dict[str, np.ndarray], reference: dict[str, np.ndarray], *, max_norm: float) -> float:
    """Return the update's norm; raise `MessageError` with the reason it must be rejected."""
    if set(update) != set(reference):
        missing, extra = sorted(set(reference) - set(update)), sorted(set(update) - set(reference))
        raise MessageError(f"update arrays do not match the global model (missing {missing}, unexpected {extra})")
    for name, array in update.items():
        if array.shape != reference[name].shape:
            raise MessageError(f"update array {name!r} has shape {array.shape}, the global model has {reference[name].shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise MessageError(f"update array {name!r} has dtype {array.dtype}, expected floating point")
        if not np.all(np.isfinite(array)):
            raise MessageError(f"update array {name!r} holds NaN or infinite values")
    norm = update_norm(update, reference)
    if norm > max_norm:
        raise MessageError(f"update norm {norm:.4g} exceeds the study's max_update_norm {max_norm:g}")
    return norm


def create_strategy(settings: TrainingSettings, cohort: int) -> Strategy:
    """Flower's strategy for the study's aggregator (used for `aggregate_train` only)."""
    factories: dict[str, Callable[[], Strategy]] = {
        "fedavg": lambda: FedAvg(),
        "fedmedian": lambda: FedMedian(),
        "trimmed_mean": lambda: FedTrimmedAvg(beta=settings.trim_fraction),
        "krum": lambda: Krum(num_malicious_nodes=settings.krum_byzantine),
        "multikrum": lambda: MultiKrum(
            num_malicious_nodes=settings.krum_byzantine,
            num_nodes_to_select=max(1, cohort - settings.krum_byzantine),
        ),
    }
    return factories[settings.aggregator]()


def aggregate_updates(
    settings: TrainingSettings, updates: list[tuple[dict[str, np.ndarray], int]]
) -> dict[str, np.ndarray]:
    """Combine (weights, example count) pairs with the study's aggregator; float32 result.

    `MessageError` for no updates, updates whose arrays differ in names or shapes, a non-finite
    value or a weight below 1: `check_update` rejects such updates first, and no aggregator may
    turn one into a model.
    """
    _check_aggregable(updates)
    messages = [
        Message(
            RecordDict({
                "arrays": ArrayRecord({k: Array.from_numpy_ndarray(np.ascontiguousarray(v)) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": int(count)}),
            }),
            index,
            "train",
        )
        for index, (arrays, count) in enumerate(updates, start=1)
    ]
    arrays, _ = create_strategy(settings, len(updates)).aggregate_train(1, messages)
    if arrays is None:
        raise MessageError(f"the {settings.aggregator} aggregator produced no model from {len(updates)} updates")
    return {name: arrays[name].numpy().astype(np.float32) for name in updates[0][0]}


def _check_aggregable(updates: list[tuple[dict[str, np.ndarray], int]]) -> None:
    if not updates:
        raise MessageError("no updates to aggregate")
    first = {name: array.shape for name, array in updates[0][0].items()}
    for index, (arrays, count) in enumerate(updates):
        if {name: array.shape for name, array in arrays.items()} != first:
            raise MessageError(f"update {index} has arrays {sorted(arrays)} of other names or shapes than update 0")
        if not all(np.all(np.isfinite(array)) for array in arrays.values()):
            raise MessageError(f"update {index} holds NaN or infinite values")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise MessageError(f"update {index} has weight {count!r}; weights are example counts ≥ 1")


def mean_from_sum(
    reference: dict[str, np.ndarray], weighted_sum: dict[str, np.ndarray], *, total_weight: int
) -> dict[str, np.ndarray]:
    """FedAvg from a decrypted sum of weight·(w_i - reference): reference + sum / total weight (float32)."""
    if total_weight <= 0:
        raise MessageError(f"cannot average updates of total weight {total_weight}")
    if set(weighted_sum) != set(reference):
        raise MessageError(f"the decrypted update sum has arrays {sorted(weighted_sum)}, the model {sorted(reference)}")
    return {
        name: (reference[name].astype(np.float64) + weighted_sum[name] / total_weight).astype(np.float32)
        for name in reference
    }


# Iglewicz & Hoaglin's modified z-score: above 3.5 a value is a likely outlier.
OUTLIER_Z = 3.5


def flag_outliers(norms: dict[str, float], *, threshold: float = OUTLIER_Z) -> dict[str, str]:
    """Partners whose update norm is a statistical outlier among this round's (robust z-score).

    Flagging records a suspicion in the trail; it does not reject (a partner with unusual but
    honest data must not be excluded on statistics alone — the norm bound and the robust
    aggregators are what limit a bad update's effect).
    """
    if len(norms) < 3:
        return {}
    values = np.array(list(norms.values()))
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad == 0:
        return {}
    flagged = {}
    for partner, norm in norms.items():
        score = 0.6745 * (norm - median) / mad
        if abs(score) > threshold:
            flagged[partner] = f"update norm {norm:.4g} is an outlier (robust z-score {score:.1f}; round median {median:.4g})"
    return flagged
