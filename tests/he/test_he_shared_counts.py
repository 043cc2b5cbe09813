"""A binary study's bundle carries one score-histogram row per model and the label counts once for all models:
both decrypt to the plaintext sums, and every model gets the round's one set of label counts back."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.errors import EncodingError
from crypto.he_aggregation import add_bundles, decrypt_bundle, encrypt_bundle
from crypto.he_keys import load_secret_context
from federated.evaluation.dp_release import privatize
from federated.evaluation.statistics import EvaluationStatistics, StatisticsLayout, compute_statistics
from federated.messages.he_codec import plan_bundle
from federated.study import EvaluationPrivacy

LAYOUT = StatisticsLayout(num_classes=2, score_bins=20, subgroup_levels=(), loss_bound=10.0)
SIZES = (40, 75, 90)


def _partner(n: int, rng: np.random.Generator) -> dict[str, EvaluationStatistics]:
    labels = rng.integers(0, 2, n)
    return {name: compute_statistics(np.column_stack([1 - p, p]), labels, None, LAYOUT)
            for name, p in (("m1", rng.random(n)), ("m2", rng.random(n)))}


def test_the_bundle_plans_one_histogram_row_and_the_label_counts_once(keys) -> None:
    secret = load_secret_context(keys.secret)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["m1", "m2"], privacy=EvaluationPrivacy(),
                       partners=len(SIZES), max_records=1000)
    assert [part.model for part in plan.parts if part.array == "label_counts"] == ["m1"]
    shapes = {array.name: array.shape for array in plan.layout.arrays}
    assert shapes["m1/hist_pos"] == shapes["m2/hist_neg"] == (1, LAYOUT.score_bins)
    assert "m2/label_counts" not in shapes


def test_every_model_decrypts_to_the_plaintext_sums_with_the_shared_label_counts(keys) -> None:
    secret = load_secret_context(keys.secret)
    privacy = EvaluationPrivacy(enabled=True, epsilon=1.0, loss_bound=10.0)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["m1", "m2"], privacy=privacy,
                       partners=len(SIZES), max_records=1000)
    rng = np.random.default_rng(8)
    released = [privatize(_partner(n, rng), privacy, rng=rng)[0] for n in SIZES]
    bundles = [encrypt_bundle(plan.pack(stats, canary=np.zeros(2, np.int64)), context=secret, layout=plan.layout)
               for stats in released]
    decrypted = decrypt_bundle(add_bundles(bundles, public_context=secret.public), secret_context=secret)
    del decrypted["canary"]
    summed = plan.unpack(decrypted)[0]
    for model in ("m1", "m2"):
        plaintext = EvaluationStatistics.total([stats[model] for stats in released])
        for name, value in plaintext.arrays.items():
            np.testing.assert_allclose(summed[model][name], value, rtol=0, atol=len(SIZES) * 2.0**-30)
    assert np.array_equal(summed["m1"]["label_counts"], summed["m2"]["label_counts"])


def test_models_with_different_label_counts_are_not_packed(keys) -> None:
    secret = load_secret_context(keys.secret)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["m1", "m2"], privacy=EvaluationPrivacy(),
                       partners=1, max_records=1000)
    rng = np.random.default_rng(9)
    stats = _partner(30, rng)
    other = _partner(31, rng)["m2"]
    with pytest.raises(EncodingError, match="different label_counts"):
        plan.pack({"m1": stats["m1"], "m2": other}, canary=np.zeros(2, np.int64))
