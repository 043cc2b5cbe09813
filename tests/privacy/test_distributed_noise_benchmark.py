"""The local-vs-distributed benchmark measures what its table claims, on a few rounds (seconds).

The full run is `python -m benchmarks.distributed_noise` (and part 4 of `benchmarks.privacy_budget`)."""

from __future__ import annotations

import math

import pytest

from benchmarks import distributed_noise as benchmark


@pytest.fixture(scope="module")
def cells():
    return {t: benchmark.cell(label=label, t=t, eps=1.0, bins=10, repeats=4, seed=1) for label, t in benchmark.NOISE}


def test_the_summed_noise_of_n_shares_is_sqrt_n_over_t_central_deviations(cells):
    local = cells[1]["summed_noise_sd_per_cell"]
    assert cells[5]["summed_noise_sd_per_cell"] == pytest.approx(local / math.sqrt(5), rel=1e-9)
    assert cells[10]["summed_noise_sd_per_cell"] == pytest.approx(local / math.sqrt(10), rel=1e-9)


def test_each_share_s_own_epsilon_is_reported_and_larger_than_the_release_s(cells):
    assert cells[1]["share_epsilon"] == 1.0
    assert 1.0 < cells[5]["share_epsilon"] < cells[10]["share_epsilon"]


def test_the_truth_is_the_exact_auroc_of_the_same_records(cells):
    assert {c["exact_auroc"] for c in cells.values()} == {cells[1]["exact_auroc"]}
    assert 0.85 < cells[1]["exact_auroc"] < 0.97
    assert abs(cells[1]["binned_auroc"] - cells[1]["exact_auroc"]) < 0.02  # 10 bins: small binning error


def test_the_markdown_says_what_each_column_is(cells):
    text = benchmark.distributed_markdown({"partners": 10, "records_per_partner": 500, "cells": list(cells.values())})
    assert "median \\|AUROC error\\|" in text and "ε alone (own share)" in text and "simulated" in text
    assert text.count("\n| ") == 2 + len(cells)
