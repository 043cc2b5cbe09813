"""The shift release: partners' feature histograms on the study's edges, pooled by the coordinator, and each
partner's PSI / Jensen–Shannon distance against the reference, checked against the concatenated data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from accord.hashing import sha256_bytes
from federated.client.data import DataManifest, PartnerData
from federated.client.evaluation import evaluate_task
from federated.errors import MessageError
from federated.evaluation.dp_release import (
    calibrate,
    coordinates_per_record,
    privatize,
    shared_coordinates_per_record,
)
from federated.evaluation.shift import FLOOR
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import (
    EvaluationReply,
    ModelRef,
    TaskSpec,
    build_task,
    parse_task,
)
from federated.server.pooling import aggregate_round
from federated.study import (
    EvaluationPrivacy,
    EvaluationSettings,
    ShiftSettings,
    ValidationSettings,
)

EDGES = {"age": [0.0, 40.0, 60.0, 80.0], "bmi": [10.0, 20.0, 25.0, 30.0, 40.0]}
SHIFT = ShiftSettings(features=["age", "bmi"], edges=EDGES)
LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(),
                          feature_edges=tuple(tuple(EDGES[f]) for f in SHIFT.features), shift_features=tuple(SHIFT.features))


def _site(seed: int, n: int, age_shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [age, bmi], labels, probabilities) of one partner; ages beyond the edges included."""
    rng = np.random.default_rng(seed)
    age = rng.normal(55 + age_shift, 15, n)
    bmi = rng.normal(26, 5, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(age - 60) / 10))).astype(np.int64)
    score = np.clip(1 / (1 + np.exp(-(age - 60) / 12)) + rng.normal(0, 0.1, n), 0, 1)
    return np.column_stack([age, bmi]), labels, np.column_stack([1 - score, score])


SITES = {"a": _site(1, 400, 0.0), "b": _site(2, 250, 0.0), "c": _site(3, 300, 20.0)}


def _stats(site: tuple[np.ndarray, np.ndarray, np.ndarray]) -> EvaluationStatistics:
    features, labels, probabilities = site
    return compute_statistics(probabilities, labels, None, LAYOUT, shift_columns=features)


def _reference_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts on the edges with values outside in the first/last bin, by np.histogram on clipped values."""
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(float)


def _psi(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """The textbook PSI with the module's floor on empty bins."""
    p = np.maximum(p_counts / p_counts.sum(), FLOOR)
    q = np.maximum(q_counts / q_counts.sum(), FLOOR)
    p, q = p / p.sum(), q / q.sum()
    return float(((p - q) * np.log(p / q)).sum())


def _reply(name: str, stats: dict[str, EvaluationStatistics], release: bool) -> EvaluationReply:
    return EvaluationReply(info=PartnerInfo(partner=name, status="ok", release_per_partner=release), statistics=stats)


def test_pooled_feature_histograms_equal_the_histograms_of_the_concatenated_data() -> None:
    pooled = EvaluationStatistics.total([_stats(site) for site in SITES.values()])
    everything = np.concatenate([site[0] for site in SITES.values()])
    for row, name in enumerate(SHIFT.features):
        width = len(EDGES[name]) - 1
        np.testing.assert_array_equal(pooled["feature_hist"][row, :width], _reference_counts(everything[:, row], EDGES[name]))
        assert not pooled["feature_hist"][row, width:].any()  # padding of the shorter row stays empty
    labels = np.concatenate([site[1] for site in SITES.values()])
    np.testing.assert_array_equal(pooled["label_counts"], np.bincount(labels, minlength=2))


@pytest.mark.parametrize("reference", ["pooled", "others", "a"])
def test_each_partners_shift_equals_psi_and_js_computed_on_the_concatenated_data(reference: str) -> None:
    replies = [_reply(name, {"m": _stats(site)}, release=True) for name, site in SITES.items()]
    settings = SHIFT.model_copy(update={"reference": reference})
    outcome = aggregate_round(1, replies, calibration_bins=5, validation=ValidationSettings(), shift=settings)
    shift = outcome.summary()["shift"]
    for name, (features, labels, _) in SITES.items():
        if reference == "pooled":
            base = np.concatenate([s[0] for s in SITES.values()])
            base_labels = np.concatenate([s[1] for s in SITES.values()])
        elif reference == "others":
            base = np.concatenate([s[0] for other, s in SITES.items() if other != name])
            base_labels = np.concatenate([s[1] for other, s in SITES.items() if other != name])
        else:
            base, base_labels = SITES["a"][0], SITES["a"][1]
        rows = shift["partners"][name]
        for column, feature in enumerate(SHIFT.features):
            mine, theirs = _reference_counts(features[:, column], EDGES[feature]), _reference_counts(base[:, column], EDGES[feature])
            assert rows[feature]["psi"] == pytest.approx(_psi(mine, theirs), rel=1e-9, abs=1e-12)
            assert rows[feature]["js"] == pytest.approx(jensenshannon(mine / mine.sum(), theirs / theirs.sum(), base=2), abs=1e-3)
            assert rows[feature]["flagged"] == (rows[feature]["psi"] > 0.25 or rows[feature]["js"] > 0.2)
        own, ref = np.bincount(labels, minlength=2).astype(float), np.bincount(base_labels, minlength=2).astype(float)
        assert rows["(label)"]["psi"] == pytest.approx(_psi(own, ref), rel=1e-9, abs=1e-12)
        assert shift["label_prevalence"]["partners"][name] == pytest.approx((own / own.sum()).tolist())
    # the shifted site (ages 20 years older) is flagged on age, the others are not (against the pooled or others)
    if reference != "a":
        assert shift["partners"]["c"]["age"]["flagged"]
        assert not shift["partners"]["b"]["age"]["flagged"]
        assert {"partner": "c", "feature": "age"} in shift["flagged"]
    assert not any(row["flagged"] for row in shift["partners"]["b"].values() if reference == "a")
    assert shift["partners"]["c"]["age"]["psi"] > shift["partners"]["c"]["age"]["null_psi_95"]
    assert shift["partners"]["b"]["bmi"]["psi"] < shift["partners"]["b"]["bmi"]["null_psi_95"] * 3


def test_partners_that_withhold_are_in_the_pooled_reference_but_get_no_row() -> None:
    replies = [_reply(name, {"m": _stats(site)}, release=name != "b") for name, site in SITES.items()]
    shift = aggregate_round(1, replies, calibration_bins=5, shift=SHIFT).summary()["shift"]
    assert sorted(shift["partners"]) == ["a", "c"] and shift["withheld"] == ["b"]
    everything = np.concatenate([site[0] for site in SITES.values()])
    assert shift["features"]["age"]["pooled_counts"] == _reference_counts(everything[:, 0], EDGES["age"]).tolist()
    assert "did not release" in shift["note"]


def test_without_any_per_partner_release_only_the_pooled_distributions_are_reported() -> None:
    replies = [_reply(name, {"m": _stats(site)}, release=False) for name, site in SITES.items()]
    shift = aggregate_round(1, replies, calibration_bins=5, shift=SHIFT).summary()["shift"]
    assert shift["partners"] == {} and "cannot be computed" in shift["note"]
    assert sum(shift["features"]["bmi"]["pooled_counts"]) == sum(len(s[1]) for s in SITES.values())
    assert shift["label_prevalence"]["pooled"] == pytest.approx(
        (np.bincount(np.concatenate([s[1] for s in SITES.values()]), minlength=2) / 950).tolist())
    decrypted = {"m": EvaluationStatistics.total([_stats(site) for site in SITES.values()])}
    encrypted = aggregate_round(1, [_reply(n, {}, release=True) for n in SITES], calibration_bins=5,
                                decrypted=decrypted, shift=SHIFT).summary()["shift"]
    assert encrypted["partners"] == {} and "encryption" in encrypted["note"]


def test_a_named_reference_that_did_not_release_is_said_so() -> None:
    replies = [_reply(name, {"m": _stats(site)}, release=name != "a") for name, site in SITES.items()]
    shift = aggregate_round(1, replies, calibration_bins=5, shift=SHIFT.model_copy(update={"reference": "a"})).summary()["shift"]
    assert shift["partners"] == {} and "'a' did not release" in shift["note"]


def test_each_record_touches_one_bin_per_feature_and_dp_counts_them_once_per_round() -> None:
    features, labels, probabilities = SITES["a"]
    base = compute_statistics(probabilities, labels, None, LAYOUT, shift_columns=features)
    one_more = compute_statistics(np.vstack([probabilities, [[0.3, 0.7]]]), np.append(labels, 1), None, LAYOUT,
                                  shift_columns=np.vstack([features, [[200.0, -5.0]]]))
    change = one_more["feature_hist"] - base["feature_hist"]
    assert np.count_nonzero(change) == len(SHIFT.features) and change.max() == 1  # one unit bin per feature
    settings = EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6, loss_bound=5.0)
    layout = StatisticsLayout(**{**LAYOUT.__dict__, "loss_bound": 5.0})
    release = calibrate(layout, settings, models=3)
    assert shared_coordinates_per_record(layout) == 1 + len(SHIFT.features)
    assert release.l2_sensitivity ** 2 == pytest.approx(3 * coordinates_per_record(layout) + 1 + len(SHIFT.features))
    stats = {name: compute_statistics(probabilities, labels, None, layout, shift_columns=features) for name in ("m1", "m2", "m3")}
    noisy, _ = privatize(stats, settings, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(noisy["m1"]["feature_hist"], noisy["m3"]["feature_hist"])  # one noisy copy
    assert not np.array_equal(noisy["m1"]["feature_hist"], stats["m1"]["feature_hist"])


def test_under_dp_the_null_psi_grows_with_the_noise_and_rows_carry_it() -> None:
    settings = EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6, loss_bound=5.0)
    layout = StatisticsLayout(**{**LAYOUT.__dict__, "loss_bound": 5.0})
    replies = []
    for seed, (name, (features, labels, probabilities)) in enumerate(SITES.items()):
        noisy, release = privatize({"m": compute_statistics(probabilities, labels, None, layout, shift_columns=features)},
                                   settings, rng=np.random.default_rng(seed))
        info = PartnerInfo(partner=name, status="ok", release_per_partner=True,
                           noise={"epsilon": release.epsilon, "delta": release.delta, "sigma": release.sigma,
                                  "l2_sensitivity": release.l2_sensitivity})
        replies.append(EvaluationReply(info=info, statistics=noisy))
    shift = aggregate_round(1, replies, calibration_bins=5, shift=SHIFT).summary()["shift"]
    assert shift["dp"] is True
    exact = aggregate_round(1, [_reply(n, {"m": _stats(s)}, True) for n, s in SITES.items()], calibration_bins=5,
                            shift=SHIFT).summary()["shift"]
    for name in SITES:
        assert shift["partners"][name]["bmi"]["null_psi_95"] > exact["partners"][name]["bmi"]["null_psi_95"]
    assert shift["partners"]["c"]["age"]["flagged"]  # a 20-year shift stands out of ε = 1 noise
    assert shift["partners"]["c"]["age"]["beyond_noise"]
    assert not any(row["beyond_noise"] for row in shift["partners"]["b"].values())  # b is drawn like the others


def test_the_node_counts_the_features_the_study_names_from_its_manifest() -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    features, labels, _ = SITES["a"]
    data = np.column_stack([features[:, 1], np.ones(len(labels)), features[:, 0]]).astype(np.float32)  # bmi, x, age
    model = LogisticRegression().fit(data, labels)
    blob = to_onnx(model, data[:1], options={"zipmap": False}, target_opset=17).SerializeToString()
    spec = TaskSpec(study="s", round=1, study_sha256="a" * 64, models=[ModelRef(name="m", sha256=sha256_bytes(blob), output="probabilities")],
                    evaluation=EvaluationSettings(score_bins=10, calibration_bins=5), shift=SHIFT)
    task = parse_task(build_task(spec, {"m": blob}))
    manifest = DataManifest(dataset_id="d", features=["bmi", "x", "age"], label="y", sha256="0" * 64)
    stats = evaluate_task(task, PartnerData(data, labels, None, manifest, "0" * 64))["m"]
    np.testing.assert_array_equal(stats["feature_hist"][0, :3], _reference_counts(data[:, 2], EDGES["age"]))
    np.testing.assert_array_equal(stats["feature_hist"][1, :4], _reference_counts(data[:, 0], EDGES["bmi"]))
    other = DataManifest(dataset_id="d", features=["bmi", "x", "years"], label="y", sha256="0" * 64)
    with pytest.raises(MessageError, match=r"shift features \['age'\] are not among"):
        evaluate_task(task, PartnerData(data, labels, None, other, "0" * 64))


def test_a_task_without_shift_hashes_as_before_and_one_with_shift_signs_its_edges() -> None:
    plain = TaskSpec(study="s", round=1, study_sha256="a" * 64, models=[ModelRef(name="m", sha256="b" * 64, output="p")],
                     evaluation=EvaluationSettings())
    assert b"shift" not in plain.canonical() and "feature_hist" not in plain.layout().shapes()
    with_shift = plain.model_copy(update={"shift": SHIFT})
    assert b'"edges"' in with_shift.canonical() and with_shift.sha256() != plain.sha256()
    assert with_shift.layout().shapes()["feature_hist"] == (2, 4)


@pytest.mark.parametrize(("table", "message"), [
    ({"features": ["age"], "edges": {"bmi": [0, 1]}}, "missing \\['age'\\]"),
    ({"features": ["age"], "edges": {"age": [0, 1, 1]}}, "strictly ascending"),
    ({"features": ["age"], "edges": {"age": [0]}}, "2 to 101 edges"),
])
def test_shift_settings_refuse_bad_edges_naming_the_field(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShiftSettings(**table)


def test_without_dp_small_feature_histogram_cells_are_suppressed_like_every_count() -> None:
    from federated.evaluation.disclosure import CellSuppression

    features, labels, probabilities = SITES["b"]
    features = features.copy()
    features[:, 0] = 50.0
    features[:2, 0] = 70.0  # two records alone in the 60–80 age bin
    stats = compute_statistics(probabilities, labels, None, LAYOUT, shift_columns=features)
    assert stats["feature_hist"][0, 2] == 2
    released, suppressed = CellSuppression(min_cell_count=5, min_subgroup_size=10).apply(stats)
    small = (stats["feature_hist"] > 0) & (stats["feature_hist"] < 5)
    assert small.any() and suppressed >= int(small.sum())
    assert not released["feature_hist"][small].any()
    np.testing.assert_array_equal(released["feature_hist"][~small], stats["feature_hist"][~small])
