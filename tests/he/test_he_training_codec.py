"""Encrypted FedAvg against Flower's FedAvg on the same updates, through the training bundle layout."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.he_aggregation import add_bundles, decrypt_bundle, encrypt_bundle
from crypto.he_keys import load_secret_context
from federated.evaluation.statistics import EvaluationStatistics
from federated.messages.encryption_spec import EncryptionSpec
from federated.messages.he_codec import MAX_UPDATE_FRACTION_BITS, training_plan
from federated.messages.training import TrainSpec
from federated.study import EvaluationSettings, TrainingSettings
from federated.training.aggregation import aggregate_updates, mean_from_sum

SHAPES = {"layer.weight": (32, 64), "layer.bias": (32,), "out.weight": (10, 32), "out.bias": (10,)}
EXAMPLES = (600, 250, 900)
MAX_NORM = 30.0


def _spec(secret, training: TrainingSettings) -> TrainSpec:
    encryption = EncryptionSpec(fingerprint=secret.fingerprint, key_study=secret.study_id, partners=len(EXAMPLES),
                                max_records_per_partner=1000, layout_sha256="0" * 64)
    return TrainSpec(study="he-study", round=1, study_sha256="0" * 64, global_sha256="0" * 64, onnx_sha256="0" * 64,
                     training=training, evaluation=EvaluationSettings(num_classes=10, score_bins=100), encryption=encryption)


@pytest.mark.usefixtures("flower_task_identity")
def test_encrypted_fedavg_is_within_the_documented_encoding_error_of_flowers_fedavg(keys):
    secret = load_secret_context(keys.secret)
    training = TrainingSettings(architecture="mlp", num_features=64, aggregator="fedavg", max_update_norm=MAX_NORM)
    plan = training_plan(_spec(secret, training), SHAPES, secret.public)
    rng = np.random.default_rng(0)
    reference = {k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in SHAPES.items()}
    statistics = {"global": EvaluationStatistics(plan.statistics, {k: np.zeros(s) for k, s in plan.statistics.shapes().items()})}
    local, bundles = [], []
    for n in EXAMPLES:
        step = {k: rng.normal(0, 0.05, s) for k, s in SHAPES.items()}
        weights = {k: (reference[k] + step[k]).astype(np.float32) for k in SHAPES}
        local.append((weights, n))
        update = {k: n * (weights[k].astype(np.float64) - reference[k]) for k in SHAPES}
        bundles.append(encrypt_bundle(plan.pack(statistics, update, canary=np.zeros(2, np.int64)), context=secret,
                                      layout=plan.layout))
    total = add_bundles(bundles, public_context=secret.public)
    decrypted = decrypt_bundle(total, secret_context=secret)
    del decrypted["canary"]  # the decrypting partner checks and strips it (test_he_decryptor_checks)
    _, summed = plan.unpack(decrypted)
    encrypted = mean_from_sum(reference, summed, total_weight=sum(EXAMPLES))
    plain = aggregate_updates(training, local)
    largest = max(float(np.max(np.abs(a))) for a in plain.values())
    float32_rounding = 2.0**-24 * largest
    for name in SHAPES:
        error = float(np.max(np.abs(encrypted[name].astype(np.float64) - plain[name])))
        assert error <= plan.update_error_bound + 2 * float32_rounding, name
        assert error <= 1e-4 * largest, name
    assert plan.update_fraction_bits == MAX_UPDATE_FRACTION_BITS  # 3 x 1000 x 30 leaves room for 24 bits


def test_tighter_bounds_leave_more_fraction_bits(keys):
    secret = load_secret_context(keys.secret)
    wide = TrainingSettings(architecture="mlp", num_features=64, max_update_norm=100.0)
    spec = _spec(secret, wide)
    spec = spec.model_copy(update={"encryption": spec.encryption.model_copy(update={"max_records_per_partner": 10**6})})
    plan = training_plan(spec, SHAPES, secret.public)
    assert 10 <= plan.update_fraction_bits < MAX_UPDATE_FRACTION_BITS
    assert plan.update_error_bound == 2.0 ** -(plan.update_fraction_bits + 1)
