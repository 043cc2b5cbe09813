"""Small-cell suppression of exact statistics, and the node's register of exact releases per study."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federated.client.exact_releases import ExactReleases, StudyHistory
from federated.evaluation.disclosure import CellSuppression
from federated.evaluation.statistics import EvaluationStatistics, StatisticsLayout, compute_statistics

LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=("young", "old"))
SUPPRESS = CellSuppression(min_cell_count=5, min_subgroup_size=10)


def _statistics(scores: list[float], labels: list[int], groups: list[str]) -> EvaluationStatistics:
    p = np.asarray(scores)
    return compute_statistics(np.stack([1 - p, p], axis=1), np.asarray(labels), np.asarray(groups), LAYOUT)


def _crowd_and_one() -> EvaluationStatistics:
    """Twelve records scoring 0.05 (six of each label), and one lone record scoring 0.93."""
    return _statistics([0.05] * 12 + [0.93], [0, 1] * 6 + [1], ["young"] * 12 + ["old"])


def test_a_lone_record_s_bin_and_its_score_sum_are_zeroed():
    released, _ = SUPPRESS.apply(_crowd_and_one())
    assert released["hist_pos"][0][9] == 0 and released["score_sum"][0][9] == 0


def test_a_bin_over_enough_records_keeps_its_score_sum_though_its_label_split_is_suppressed():
    original = _crowd_and_one()
    released, _ = SUPPRESS.apply(original)
    assert released["score_sum"][0][0] == pytest.approx(original["score_sum"][0][0])  # 12 records: released
    assert original["hist_pos"][0][0] == 6 and released["hist_pos"][0][0] == 6  # 6 ≥ 5: kept
    assert original["confusion"][1][0] == 6 and released["confusion"][1][1] == 0  # the lone positive's cell: 1 → 0


def test_a_subgroup_below_the_minimum_size_is_zeroed_whole():
    released, _ = SUPPRESS.apply(_crowd_and_one())
    assert released["subgroup_confusion"][1].sum() == 0  # "old": one record
    assert released["subgroup_confusion"][0].sum() == 12  # "young": 12 records, cells of 6


def test_the_reply_counts_the_zeroed_cells_and_nothing_else():
    original = _crowd_and_one()
    released, suppressed = SUPPRESS.apply(original)
    zeroed = sum(int(np.count_nonzero(original[k]) - np.count_nonzero(released[k])) for k in original.arrays)
    assert suppressed == zeroed > 0
    assert released.layout == original.layout and released.count == original.count


def test_fewer_records_than_a_cell_release_nothing():
    released, suppressed = SUPPRESS.apply(_statistics([0.2, 0.7], [0, 1], ["young", "old"]))
    assert all(not value.any() for value in released.arrays.values()) and suppressed > 0


def test_suppressed_statistics_still_add_up_across_partners():
    a, _ = SUPPRESS.apply(_crowd_and_one())
    b, _ = SUPPRESS.apply(_crowd_and_one())
    assert EvaluationStatistics.total([a, b])["hist_neg"][0][0] == 12


def test_every_model_is_suppressed_and_the_counts_add_up():
    released, total = SUPPRESS.apply_all({"m1": _crowd_and_one(), "m2": _crowd_and_one()})
    assert set(released) == {"m1", "m2"} and total == 2 * SUPPRESS.apply(_crowd_and_one())[1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 120), minimum=st.integers(1, 8))
def test_no_released_count_is_between_zero_and_the_minimum_and_no_large_cell_changes(seed, n, minimum):
    rng = np.random.default_rng(seed)
    stats = _statistics(list(rng.random(n)), list(rng.integers(0, 2, n)), list(rng.choice(["young", "old"], n)))
    rule = CellSuppression(min_cell_count=minimum, min_subgroup_size=minimum)
    released, _ = rule.apply(stats)
    for name in ("confusion", "hist_pos", "hist_neg", "subgroup_confusion"):
        value = released[name]
        assert not np.any((value > 0) & (value < minimum))
        kept = stats[name] >= minimum
        if name != "subgroup_confusion":
            assert np.array_equal(value[kept], stats[name][kept])
    bins = stats["hist_pos"] + stats["hist_neg"]
    assert np.array_equal(released["score_sum"][bins >= minimum], stats["score_sum"][bins >= minimum])
    assert not released["score_sum"][bins < minimum].any()


def test_thresholds_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        CellSuppression(min_cell_count=0, min_subgroup_size=5)


def test_the_register_counts_tasks_and_distinct_models_per_study(tmp_path):
    register = ExactReleases.beside(tmp_path / "trail.jsonl")
    assert register.history("s") == StudyHistory()
    with register.admitting(study="s", task_sha256="a" * 64, models=("m1", "m2")) as before:
        assert before == StudyHistory()
    with register.admitting(study="s", task_sha256="b" * 64, models=("m2", "m3")) as before:
        assert before == StudyHistory(tasks=1, models=frozenset({"m1", "m2"}))
    assert register.history("s") == StudyHistory(tasks=2, models=frozenset({"m1", "m2", "m3"}))
    assert register.history("other") == StudyHistory()


def test_a_task_whose_check_fails_is_not_counted(tmp_path):
    register = ExactReleases.beside(tmp_path / "trail.jsonl")
    with pytest.raises(RuntimeError):
        with register.admitting(study="s", task_sha256="a" * 64, models=("m1",)):
            raise RuntimeError("a cap refused it")
    assert register.history("s") == StudyHistory()
