"""The HE codec plans every statistics array, the sums of squares and the shift histograms included: they
decrypt to the plaintext sums (histograms exactly, squares within each part's stated fixed-point bound)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crypto.he_aggregation import add_bundles, decrypt_bundle, encrypt_bundle
from crypto.he_keys import load_secret_context
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)
from federated.messages.he_codec import (
    FRACTION_BITS,
    part_fraction_bits,
    plan_bundle,
    record_scales,
)
from federated.study import EvaluationPrivacy

SIZES = (60, 140, 95)
EDGES = ((0.0, 0.5, 1.0, 2.0), (-1.0, 0.0, 1.0))
LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), feature_edges=EDGES, shift_features=("u", "v"))


def _parts() -> list[EvaluationStatistics]:
    rng = np.random.default_rng(5)
    parts = []
    for n in SIZES:
        p = rng.random(n)
        p[:3] = 0.0  # probability-0 records: the largest log loss (and square) a record can add
        labels = np.ones(n, dtype=np.int64)
        features = np.column_stack([rng.exponential(1.0, n), rng.normal(0, 1, n)])
        parts.append(compute_statistics(np.column_stack([1 - p, p]), labels, None, LAYOUT, shift_columns=features))
    return parts


def test_squares_and_feature_histograms_decrypt_to_the_plaintext_sums(keys) -> None:
    secret = load_secret_context(keys.secret)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["m1", "m2"], privacy=EvaluationPrivacy(),
                       partners=len(SIZES), max_records=1000)
    planned = {(part.model, part.array) for part in plan.parts}
    shared = {"label_counts", "feature_hist"}  # the same for every model: carried once, with the first
    assert planned == {(m, a) for m, a in itertools.product(["m1", "m2"], LAYOUT.shapes()) if m == "m1" or a not in shared}
    assert {part.array for part in plan.parts if part.exact} >= {"feature_hist"}
    parts = _parts()
    bundles = [encrypt_bundle(plan.pack({"m1": part, "m2": part}, canary=np.zeros(2, np.int64)), context=secret, layout=plan.layout)
               for part in parts]
    decrypted = decrypt_bundle(add_bundles(bundles, public_context=secret.public), secret_context=secret)
    del decrypted["canary"]
    summed = plan.unpack(decrypted)[0]["m2"]
    plaintext = EvaluationStatistics.total(parts)
    np.testing.assert_array_equal(summed["feature_hist"], plaintext["feature_hist"])
    for name in ("log_loss_sq_sum", "brier_sq_sum"):
        assert abs(summed[name][0] - plaintext[name][0]) <= len(SIZES) * 2.0 ** -(FRACTION_BITS + 1)


def test_a_large_sum_of_squares_gets_fewer_fraction_bits_instead_of_failing(keys) -> None:
    secret = load_secret_context(keys.secret)
    scales = record_scales(LAYOUT)
    assert scales["log_loss_sq_sum"] == pytest.approx(36.04 ** 2, rel=1e-3)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["m"], privacy=EvaluationPrivacy(),
                       partners=3, max_records=5_000_000)
    bits = {part.array: part.fraction_bits for part in plan.parts}
    assert bits["log_loss_sq_sum"] == part_fraction_bits(5_000_000 * scales["log_loss_sq_sum"]) < FRACTION_BITS
    assert bits["log_loss_sum"] == FRACTION_BITS  # arrays that fitted before keep their 32 bits
    assert 5_000_000 * scales["log_loss_sq_sum"] * 2.0 ** bits["log_loss_sq_sum"] < 2.0**62
