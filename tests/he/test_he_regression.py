"""Encrypted regression sums equal the plaintext ones within the codec's stated bound, with and without DP."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, r2_score

from crypto.he_aggregation import add_bundles, decrypt_bundle, encrypt_bundle
from crypto.he_keys import load_secret_context
from federated.evaluation.regression import (
    RegressionLayout,
    RegressionStatistics,
    compute_regression_statistics,
    privatize_regression,
    regression_metrics,
)
from federated.messages.he_codec import FRACTION_BITS, plan_bundle
from federated.study import EvaluationPrivacy

LAYOUT = RegressionLayout(tuple(float(v) for v in np.linspace(-150, 150, 13)), ("f", "m"), value_range=(0.0, 400.0))
CUTS = (0, 90, 170, 242)


def _parts() -> tuple[list[RegressionStatistics], np.ndarray, np.ndarray]:
    x, y = load_diabetes(return_X_y=True)
    predictions = Ridge(alpha=0.5).fit(x[:200], y[:200]).predict(x[200:])
    groups = np.where(x[200:, 1] > 0, "m", "f")
    parts = [compute_regression_statistics(predictions[a:b], y[200:][a:b], groups[a:b], LAYOUT) for a, b in itertools.pairwise(CUTS)]
    return parts, predictions, y[200:]


def _encrypted_sum(keys, parts: list[RegressionStatistics], privacy: EvaluationPrivacy) -> RegressionStatistics:
    secret = load_secret_context(keys.secret)
    plan = plan_bundle(context=secret.public, statistics=LAYOUT, models=["ridge"], privacy=privacy,
                       partners=len(parts), max_records=10_000)
    bundles = [encrypt_bundle(plan.pack({"ridge": part}, canary=np.zeros(2, np.int64)), context=secret, layout=plan.layout)
               for part in parts]
    decrypted = decrypt_bundle(add_bundles(bundles, public_context=secret.public), secret_context=secret)
    del decrypted["canary"]
    pooled = plan.unpack(decrypted)[0]["ridge"]
    assert isinstance(pooled, RegressionStatistics)
    return pooled


def test_encrypted_regression_sums_equal_plaintext_within_the_codec_bound(keys) -> None:
    parts, predictions, outcomes = _parts()
    encrypted = _encrypted_sum(keys, parts, EvaluationPrivacy())
    plaintext = RegressionStatistics.total(parts)
    assert np.array_equal(encrypted["residual_hist"], plaintext["residual_hist"])  # counts travel exactly
    bound = len(parts) * 2.0 ** -(FRACTION_BITS + 1)  # per coordinate, in the value range's units
    for name in ("sums", "subgroup_sums"):
        assert np.max(np.abs(encrypted[name] - plaintext[name])) <= bound
    metrics = regression_metrics(encrypted)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(outcomes, predictions), rel=1e-9)
    assert metrics["r2"] == pytest.approx(r2_score(outcomes, predictions), rel=1e-9)


def test_encrypted_dp_regression_sums_decrypt_to_the_noisy_plaintext_sum(keys) -> None:
    parts, *_ = _parts()
    privacy = EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6)
    rng = np.random.default_rng(5)
    noisy = [privatize_regression({"ridge": part}, epsilon=1.0, delta=1e-6, rng=rng)[0]["ridge"] for part in parts]
    encrypted = _encrypted_sum(keys, noisy, privacy)
    plaintext = RegressionStatistics.total(noisy)
    for name in ("sums", "residual_hist", "subgroup_sums"):  # with DP every array is fixed-point
        assert np.max(np.abs(encrypted[name] - plaintext[name])) <= len(parts) * 2.0 ** -(FRACTION_BITS + 1)
    assert math.isfinite(regression_metrics(encrypted)["rmse"])
