"""Encrypted log loss equals the plaintext one within the codec's stated bound, probability-0 records included."""

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
from federated.messages.he_codec import FRACTION_BITS, plan_bundle
from federated.study import EvaluationPrivacy

PARTNER_SIZES = (40, 90, 120, 169)


@pytest.fixture(scope="module")
def tree_scores():
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    from federated.evaluation.onnx_model import predict_probabilities

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, train_size=150, stratify=y, random_state=0)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x_train, y_train)
    onnx = to_onnx(tree, x_train[:1].astype(np.float32), options={"zipmap": False}, target_opset=17).SerializeToString()
    return predict_probabilities("tree", onnx, "probabilities", x_eval.astype(np.float32)), y_eval


def test_encrypted_log_loss_sum_is_within_the_codec_bound_of_plaintext_and_sklearn(keys, tree_scores):
    from sklearn.metrics import log_loss

    secret = load_secret_context(keys.secret)
    probabilities, labels = tree_scores
    assert (probabilities[np.arange(labels.size), labels] == 0).any()  # clipped records are in the sum
    layout = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=())
    plan = plan_bundle(context=secret.public, statistics=layout, models=["tree"], privacy=EvaluationPrivacy(),
                       partners=len(PARTNER_SIZES), max_records=1000)
    bounds = np.cumsum((0, *PARTNER_SIZES))
    parts = [compute_statistics(probabilities[a:b], labels[a:b], None, layout) for a, b in itertools.pairwise(bounds)]
    bundles = [encrypt_bundle(plan.pack({"tree": part}, canary=np.zeros(2, np.int64)), context=secret, layout=plan.layout)
               for part in parts]
    decrypted = decrypt_bundle(add_bundles(bundles, public_context=secret.public), secret_context=secret)
    del decrypted["canary"]
    encrypted = plan.unpack(decrypted)[0]["tree"]["log_loss_sum"][0]
    plaintext = EvaluationStatistics.total(parts)["log_loss_sum"][0]
    assert abs(encrypted - plaintext) <= len(PARTNER_SIZES) * 2.0 ** -(FRACTION_BITS + 1)  # the stated bound
    assert encrypted / labels.size == pytest.approx(log_loss(labels, probabilities), rel=1e-9)
