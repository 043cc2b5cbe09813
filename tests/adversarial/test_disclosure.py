"""Without DP, one round must not return records: a hostile coordinator's reconstruction attacks, counted.

The coordinator holds the key hospital-a's contract allows and drives its real node (`conftest.HostileCoordinator`).
hospital-a's contract releases statistics without DP (`allow_exact_statistics = true`). Two attacks:

(a) 30 one-feature "models" (score = the feature, scaled into [0, 1]) with 10,000 score bins: a bin that
    holds one record gives, through its score sum, that record's feature value;
(b) a model family that puts each record in its own bin (a hash of the whole row picks the bin, the
    feature sits inside the bin): bins that hold one record in every model give whole rows, with labels.

The attacker reads a value only from a bin whose released count is exactly one record (it cannot tell a
mean of several records from one record's value otherwise). Counted against the partner's data:
(record, feature) values to within 1e-5 of the feature's range (the CSV itself holds 6 significant
digits), and whole rows (label and every feature to within 0.1 % of its range). Before: the same contract
with `[disclosure] enabled = false`, the control that shows the attack works. After: the contract's
defaults — the attack as sent is refused (models per task, bins per record), and the attack cut to fit
the caps gets suppressed cells: 0 values and 0 rows either way.

What stays open, and is asserted as a bound: an attacker within the caps that differences two models of
one task (thresholds bracketing one record) recovers at most one value per extra model, i.e. fewer than
`max_models_per_study` per study; only DP stops that.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest
import tomli_w
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer

from federated.client.data import load_manifest, load_partner_data
from federated.study import EvaluationSettings
from privacy.contract import Disclosure
from tests.adversarial.conftest import HostileCoordinator

HOSPITAL = "hospital-a"
FEATURES = 30
EXACT = dict(calibration_bins=10, subgroup_levels=[])  # no DP: `privacy` stays off


def _public_ranges() -> tuple[np.ndarray, np.ndarray]:
    """What the attacker knows beforehand: each feature's range in the public breast-cancer data."""
    x = load_breast_cancer().data
    low, high = x.min(axis=0), x.max(axis=0)
    margin = 1e-3 * (high - low)
    return (low - margin).astype(np.float32), (high - low + 2 * margin).astype(np.float32)


LOW, SPAN = _public_ranges()


def _model(nodes: list, initializers: dict[str, np.ndarray]) -> bytes:
    graph = helper.make_graph(
        nodes, "attack", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2])],
        initializer=[numpy_helper.from_array(np.asarray(v), name) for name, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _scaled_feature(column: int) -> tuple[list, dict[str, np.ndarray]]:
    """Nodes computing t = clip((x[:, column] - low) / span, 0, 1) as `t` [n, 1]."""
    nodes = [
        helper.make_node("Gather", ["input", "column"], ["x"], axis=1),
        helper.make_node("Sub", ["x", "low"], ["shifted"]),
        helper.make_node("Div", ["shifted", "span"], ["unclipped"]),
        helper.make_node("Clip", ["unclipped", "zero", "one"], ["t"]),
    ]
    return nodes, {"column": np.array([column], np.int64), "low": np.float32(LOW[column]), "span": np.float32(SPAN[column]),
                   "zero": np.float32(0.0), "one": np.float32(1.0)}


def _as_probabilities(score: str) -> list:
    return [helper.make_node("Sub", ["one", score], ["negative"]),
            helper.make_node("Concat", ["negative", score], ["probabilities"], axis=1)]


def one_feature_model(column: int) -> bytes:
    """Attack (a): the positive-class score is feature `column`, scaled into [0, 1]."""
    nodes, values = _scaled_feature(column)
    return _model(nodes + _as_probabilities("t"), values)


WEIGHTS = np.random.default_rng(12).normal(size=(FEATURES, 1)).astype(np.float32) / SPAN[:, None]


def own_bin_model(column: int, bins: int) -> bytes:
    """Attack (b): a hash of the whole row picks the record's bin (the same in every model of the family);
    feature `column` sits inside the bin: score = (bin + 0.1 + 0.8 t) / bins."""
    nodes, values = _scaled_feature(column)
    nodes += [
        helper.make_node("MatMul", ["input", "weights"], ["projection"]),
        helper.make_node("Mul", ["projection", "spread"], ["spread_out"]),
        helper.make_node("Floor", ["spread_out"], ["whole"]),
        helper.make_node("Sub", ["spread_out", "whole"], ["hash"]),  # in [0, 1), about uniform
        helper.make_node("Mul", ["hash", "bins"], ["position"]),
        helper.make_node("Floor", ["position"], ["record_bin"]),
        helper.make_node("Div", ["record_bin", "bins"], ["bin_start"]),
        helper.make_node("Mul", ["t", "width"], ["inside"]),
        helper.make_node("Add", ["inside", "edge"], ["offset"]),
        helper.make_node("Div", ["offset", "bins"], ["within"]),  # added last: float32 keeps the most of it
        helper.make_node("Add", ["bin_start", "within"], ["score"]),
    ]
    values |= {"weights": WEIGHTS, "spread": np.float32(1000.0), "bins": np.float32(bins), "width": np.float32(0.8),
               "edge": np.float32(0.1)}
    return _model(nodes + _as_probabilities("score"), values)


def _truth(hospitals: Path) -> tuple[np.ndarray, np.ndarray]:
    data = hospitals / "data"
    loaded = load_partner_data(data / f"{HOSPITAL}.csv", load_manifest(data / f"{HOSPITAL}.toml"))
    return loaded.features.astype(np.float64), loaded.labels


def _singletons(stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins of the positive class whose released count is one record: (bin, score sum, label)."""
    pos, neg = stats["hist_pos"][0], stats["hist_neg"][0]
    bins = np.flatnonzero(np.isclose(pos + neg, 1.0))
    return bins, stats["score_sum"][0][bins], (pos[bins] > 0.5).astype(int)


def values_recovered(replies: list[dict], truth: np.ndarray) -> int:
    """(record, feature) values read off single-record bins that match a true value to 1e-5 of the range.

    `replies` maps each released model's name ("f<column>") to its statistics; each true value is matched once.
    """
    found = 0
    for statistics in replies:
        for name, stats in statistics.items():
            column = int(name[1:])
            _, scores, _ = _singletons(stats)
            estimates = LOW[column] + scores * SPAN[column]
            remaining = list(truth[:, column])
            for estimate in estimates:
                if not remaining:
                    break
                gaps = np.abs(np.asarray(remaining) - estimate)
                best = int(np.argmin(gaps))
                if gaps[best] <= 1e-5 * SPAN[column]:
                    remaining.pop(best)
                    found += 1
    return found


def rows_recovered(statistics: dict, truth: np.ndarray, labels: np.ndarray, bins: int) -> int:
    """Whole rows: a bin holding one record in every model of the family gives its label and every feature."""
    columns = sorted(int(name[1:]) for name in statistics)
    rows: dict[int, dict[int, float]] = {}
    row_labels: dict[int, int] = {}
    for column in columns:
        record_bins, scores, bin_labels = _singletons(statistics[f"f{column}"])
        for record_bin, score, label in zip(record_bins, scores, bin_labels):
            inside = (score * bins - record_bin - 0.1) / 0.8
            rows.setdefault(int(record_bin), {})[column] = LOW[column] + inside * SPAN[column]
            row_labels[int(record_bin)] = int(label)
    found = 0
    for record_bin, values in rows.items():
        if len(values) < len(columns):
            continue
        estimate = np.array([values[c] for c in columns])
        close = np.all(np.abs(truth[:, columns] - estimate) <= 1e-3 * SPAN[columns], axis=1)
        if np.any(close & (labels == row_labels[record_bin])):
            found += 1
    return found


def _contract(coordinator: HostileCoordinator, hospitals: Path, tmp_path: Path, **disclosure: object) -> None:
    """hospital-a's demo contract (exact statistics allowed), with `[disclosure]` set as given."""
    document = tomllib.loads((hospitals / "data" / f"{HOSPITAL}.contract.toml").read_text(encoding="utf-8"))
    assert document["protections"]["allow_exact_statistics"] is True
    if disclosure:
        document["disclosure"] = disclosure
    path = tmp_path / "contract.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    coordinator.grid.nodes[coordinator.node(HOSPITAL)]["contract"] = str(path)


def _ask(coordinator: HostileCoordinator, study: str, round_number: int, models: dict[str, bytes], bins: int):
    spec, collected = coordinator.evaluate(study, round_number, models, to=[HOSPITAL],
                                           evaluation=EvaluationSettings(score_bins=bins, **EXACT))
    return collected


@pytest.fixture
def truth(hospitals):
    return _truth(hospitals)


def test_control_thirty_one_feature_models_and_10000_bins_return_most_values_exactly(coordinator, hospitals, tmp_path, truth):
    _contract(coordinator, hospitals, tmp_path, enabled=False)
    collected = _ask(coordinator, "one-feature", 1, {f"f{j}": one_feature_model(j) for j in range(FEATURES)}, 10_000)
    (reply,) = collected.accepted
    recovered = values_recovered([reply.statistics], truth[0])
    assert recovered >= 0.8 * truth[0].size, recovered  # the attack works: most of the 6,000 values come out


def test_control_a_bin_per_record_returns_whole_rows_with_labels(coordinator, hospitals, tmp_path, truth):
    _contract(coordinator, hospitals, tmp_path, enabled=False)
    collected = _ask(coordinator, "own-bin", 1, {f"f{j}": own_bin_model(j, 10_000) for j in range(FEATURES)}, 10_000)
    (reply,) = collected.accepted
    recovered = rows_recovered(reply.statistics, *truth, bins=10_000)
    assert recovered >= 0.9 * len(truth[1]), recovered


def test_the_one_feature_attack_as_sent_is_refused_and_returns_nothing(coordinator, hospitals, tmp_path, truth):
    _contract(coordinator, hospitals, tmp_path)  # the contract's defaults
    collected = _ask(coordinator, "one-feature", 1, {f"f{j}": one_feature_model(j) for j in range(FEATURES)}, 10_000)
    assert collected.accepted == []
    assert [r["clause"] for r in collected.refused] == ["disclosure.max_models_per_task"]


def test_ten_thousand_bins_for_200_records_are_refused(coordinator, hospitals, tmp_path):
    _contract(coordinator, hospitals, tmp_path)
    collected = _ask(coordinator, "many-bins", 1, {"f0": one_feature_model(0)}, 10_000)
    assert collected.accepted == []
    assert [r["clause"] for r in collected.refused] == ["disclosure.min_records_per_score_bin"]


def test_the_one_feature_attack_cut_to_the_caps_recovers_no_value(coordinator, hospitals, tmp_path, truth):
    _contract(coordinator, hospitals, tmp_path)
    terms, records = Disclosure(), len(truth[1])
    bins = records // terms.min_records_per_score_bin // 10 * 10  # the most the caps allow (calibration bins divide it)
    replies, round_number = [], 0
    for start in range(0, terms.max_models_per_study, terms.max_models_per_task):
        round_number += 1
        models = {f"f{j}": one_feature_model(j) for j in range(start, start + terms.max_models_per_task)}
        (reply,) = _ask(coordinator, "cut-to-caps", round_number, models, bins).accepted
        assert reply.info.suppressed_cells > 0  # single-record bins were there, and were zeroed
        replies.append(reply.statistics)
    assert values_recovered(replies, truth[0]) == 0
    # An eleventh model in the same study is refused: the per-study cap holds across tasks.
    refused = _ask(coordinator, "cut-to-caps", round_number + 1, {"f29": one_feature_model(29)}, bins)
    assert [r["clause"] for r in refused.refused] == ["disclosure.max_models_per_study"]


def test_a_bin_per_record_cut_to_the_caps_recovers_no_row(coordinator, hospitals, tmp_path, truth):
    _contract(coordinator, hospitals, tmp_path)
    terms, records = Disclosure(), len(truth[1])
    bins = records // terms.min_records_per_score_bin // 10 * 10
    models = {f"f{j}": own_bin_model(j, bins) for j in range(terms.max_models_per_task)}
    (reply,) = _ask(coordinator, "own-bin-cut", 1, models, bins).accepted
    assert rows_recovered(reply.statistics, *truth, bins=bins) == 0
    assert values_recovered([reply.statistics], truth[0]) == 0


def test_the_suppression_is_counted_in_the_reply_and_both_trails_without_its_cells(coordinator, hospitals, tmp_path):
    from federated.audit import read_entries

    _contract(coordinator, hospitals, tmp_path)
    (reply,) = _ask(coordinator, "counted", 1, {"f0": one_feature_model(0)}, 40).accepted
    suppressed = reply.info.suppressed_cells
    assert suppressed > 0
    partner = [e for e in read_entries(coordinator.partner_dir(HOSPITAL) / "trail.jsonl") if e["kind"] == "result_sent"]
    assert partner[-1]["details"]["suppressed_cells"] == suppressed
    ours = read_entries(tmp_path / "coordinator" / "counted" / "coordinator-trail.jsonl")
    assert [e["details"]["suppressed_cells"] for e in ours if e["kind"] == "result_received"] == [suppressed]


def threshold_model(column: int, threshold: float) -> bytes:
    """Records with feature `column` at or below `threshold` land in the first bin, scored by their value;
    the rest in the last bin. Two such models whose thresholds bracket one record difference it out."""
    nodes, values = _scaled_feature(column)
    nodes += [
        helper.make_node("LessOrEqual", ["x", "threshold"], ["below"]),
        helper.make_node("Mul", ["t", "step"], ["small"]),
        helper.make_node("Add", ["small", "floor_score"], ["low_score"]),
        helper.make_node("Where", ["below", "low_score", "high_score"], ["score"]),
    ]
    values |= {"threshold": np.float32(threshold), "step": np.float32(0.01), "floor_score": np.float32(0.001),
               "high_score": np.full((1, 1), 0.99, np.float32)}
    return _model(nodes + _as_probabilities("score"), values)


def test_differencing_within_the_caps_is_bounded_per_study_by_the_models_it_may_run(coordinator, hospitals, tmp_path, truth):
    """The residual risk, counted: with thresholds chosen by an oracle so that consecutive models bracket one
    record each, the first bin's count differs by one and its score sums differ by that record's score. The
    attacker gets at most `max_models_per_study - 1` values per study; a new study id gets new caps, so over
    many studies only DP (and the ledger's total cap) bounds this."""
    _contract(coordinator, hospitals, tmp_path)
    terms, column = Disclosure(), 3
    values = np.sort(np.unique(truth[0][:, column]))
    thresholds = [(values[k] + values[k + 1]) / 2 for k in range(100, 100 + terms.max_models_per_study)]
    first_bin: list[tuple[float, float]] = []
    for task, start in enumerate(range(0, len(thresholds), terms.max_models_per_task), start=1):
        models = {f"t{i}": threshold_model(column, thresholds[i]) for i in range(start, start + terms.max_models_per_task)}
        (reply,) = _ask(coordinator, "differencing", task, models, 40).accepted
        first_bin += [(reply.statistics[name]["hist_pos"][0][0] + reply.statistics[name]["hist_neg"][0][0],
                       reply.statistics[name]["score_sum"][0][0]) for name in models]
    recovered = 0
    for (count_a, sum_a), (count_b, sum_b) in zip(first_bin, first_bin[1:]):
        if count_b - count_a == 1:
            estimate = LOW[column] + (sum_b - sum_a - 0.001) / 0.01 * SPAN[column]
            recovered += int(np.min(np.abs(truth[0][:, column] - estimate)) <= 1e-5 * SPAN[column])
    assert 0 < recovered <= terms.max_models_per_study - 1, recovered
