"""Shift statistics from partners' binned feature counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from federated.evaluation.shift import feature_histograms, jensen_shannon, population_stability_index, shift_table

EDGES = [np.linspace(-4, 4, 11).tolist(), np.linspace(0, 1, 6).tolist()]


def _site(seed: int, shift: float, n: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(shift, 1, n), rng.random(n)])


def test_histograms_count_every_record_including_values_outside_the_edges() -> None:
    data = np.array([[-10.0, 0.5], [0.1, 2.0], [10.0, -1.0]])
    counts = feature_histograms(data, EDGES)
    assert counts[0].sum() == 3 and counts[0, 0] == 1 and counts[0, 9] == 1
    assert counts[1, :5].sum() == 3 and counts[1, 5:].sum() == 0


def test_jensen_shannon_equals_scipy_base_2() -> None:
    a, b = np.array([10.0, 20, 30, 40]), np.array([25.0, 25, 25, 25])
    assert jensen_shannon(a, b) == pytest.approx(jensenshannon(a / a.sum(), b / b.sum(), base=2), rel=1e-4)


def test_psi_is_zero_for_identical_distributions_and_symmetric() -> None:
    a, b = np.array([5.0, 10, 20]), np.array([20.0, 10, 5])
    assert population_stability_index(a, a) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(a, b) == pytest.approx(population_stability_index(b, a))


def test_against_a_study_reference_the_shifted_partner_is_flagged_and_the_stable_ones_are_not() -> None:
    sites = {"stable-a": _site(1, 0.0), "stable-b": _site(2, 0.0), "shifted": _site(3, 1.5)}
    counts = {name: feature_histograms(data, EDGES) for name, data in sites.items()}
    pooled = sum(counts.values())
    reference = feature_histograms(_site(4, 0.0, n=5000), EDGES)
    table = shift_table(counts, pooled, ["x", "u"], reference=reference, bins_per_feature=[10, 5])
    assert table["partners"]["shifted"]["x"]["flagged"]
    assert not table["partners"]["stable-a"]["x"]["flagged"] and not table["partners"]["stable-b"]["x"]["flagged"]
    assert not any(table["partners"][name]["u"]["flagged"] for name in sites)


def test_leave_one_out_reference_flags_the_outlying_partner_most() -> None:
    sites = {f"stable-{i}": _site(i, 0.0) for i in range(8)} | {"shifted": _site(9, 1.5)}
    counts = {name: feature_histograms(data, EDGES) for name, data in sites.items()}
    table = shift_table(counts, sum(counts.values()), ["x", "u"], bins_per_feature=[10, 5])
    assert table["reference"] == "the other partners pooled"
    psi = {name: rows["x"]["psi"] for name, rows in table["partners"].items()}
    assert max(psi, key=psi.get) == "shifted" and table["partners"]["shifted"]["x"]["flagged"]
    assert not any(table["partners"][f"stable-{i}"]["x"]["flagged"] for i in range(8))
