"""Encrypted aggregation over real Flower: the same study with and without encryption (three hospitals,
SuperLink + SuperNodes), and an encrypted DP training study under Flower's simulation engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crypto import public_key_bytes
from crypto.he_keys import generate_context, write_key_files
from examples.digits.prepare import prepare_digits, write_initial_weights
from federated.audit import read_entries
from federated.audit.keys import load_or_create_identity
from federated.client.data import load_manifest, load_partner_data
from federated.client.evaluation import evaluate_task
from federated.local.localhost import LocalFederation
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import (
    EvaluationReply,
    EvaluationTask,
    ModelRef,
    TaskSpec,
)
from federated.server.pooling import aggregate_round
from federated.study import load_study, resolve_models
from tests.e2e.conftest import run_simulated, write_study

pytestmark = pytest.mark.timeout(600)


def _run(federation: LocalFederation, study: Path, partners, log: Path, *extra: str) -> dict:
    federation.start_coordinator(study, log=log)
    for partner in partners:
        federation.start_partner(partner, *extra)
    assert federation.coordinator.wait(timeout=240) == 0, log.read_text()
    return json.loads((study.parent / "out" / "latest" / "results.json").read_text())


def _ceremony(study: str, out: Path, node_keys: dict[str, Path]):
    """The study's HE keys, pinning each partner's node signing key (made here, before the nodes start)."""
    pinned = {name: public_key_bytes(load_or_create_identity(path)[0].public_key) for name, path in node_keys.items()}
    return write_key_files(generate_context(study, partners=pinned), out)


def _plaintext_pooled(study: Path, partners) -> dict[str, dict[str, float]]:
    """What the plaintext path pools for the same study and partners (it runs over Flower in
    test_evaluation_e2e; here the partners' statistics are computed and summed in this process)."""
    settings = load_study(study)
    models = resolve_models(settings, study)
    spec = TaskSpec(study=settings.id, round=1, study_sha256="0" * 64, evaluation=settings.evaluation,
                    models=[ModelRef(name=m.name, sha256=m.sha256, output=m.output) for m in models])
    task = EvaluationTask(spec=spec, model_bytes={m.name: m.path.read_bytes() for m in models})
    replies = [
        EvaluationReply(info=PartnerInfo(partner=p.name, status="ok"),
                        statistics=evaluate_task(task, load_partner_data(p.data, load_manifest(p.manifest))))
        for p in partners
    ]
    return aggregate_round(1, replies, settings.evaluation.calibration_bins).pooled


def test_encrypted_evaluation_equals_the_plaintext_path(tmp_path, hospitals, partners, federation):
    keys = _ceremony("e2e", tmp_path / "keys", {p.name: tmp_path / "nodes" / p.name / "node.key" for p in partners})
    study = write_study(tmp_path, hospitals, min_cohort=3)  # the cohort is all three: wait for all three nodes
    study.write_text(study.read_text() + f'[encryption]\nenabled = true\npublic_context = "{keys.public}"\n')
    encrypted = _run(federation, study, partners, tmp_path / "coordinator.log", "--he-secret-context", str(keys.secret))
    plain = _plaintext_pooled(study, partners)
    (e,) = encrypted["rounds"]
    assert sorted(e["contributors"]) == ["hospital-a", "hospital-b", "hospital-c"]
    for model in ("logreg", "mlp"):
        for metric, value in plain[model].items():
            if metric in ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound"):
                assert e["pooled"][model][metric] == value, metric  # from exact counts
            else:
                assert e["pooled"][model][metric] == pytest.approx(value, rel=1e-6), metric
        assert set(e["matrix"][model].values()) == {None}
    assert encrypted["encryption"]["fingerprint"] == e["encryption"]["fingerprint"]
    assert e["encryption"]["decrypted_by"] in e["contributors"]
    trail = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    started = next(x for x in trail if x["kind"] == "study_started")
    assert started["details"]["he_fingerprint"] == encrypted["encryption"]["fingerprint"]
    assert [x["kind"] for x in trail].count("aggregate_decrypted") == 1
    decryptor = read_entries(tmp_path / "nodes" / e["encryption"]["decrypted_by"] / "trail.jsonl")
    assert any("decrypted" in x["details"] for x in decryptor if x["kind"] == "result_sent")


def test_simulation_trains_with_encryption_and_dp(tmp_path):
    data = tmp_path / "data"
    prepare_digits(data, partners=3)
    write_initial_weights(data, architecture="mlp")
    keys = _ceremony("he-train", tmp_path / "keys", {f"partner-{i:03d}": data / "trails" / f"partner-{i:03d}.key" for i in range(3)})
    shutil.copy(keys.secret, data / "he-secret-context.json")  # simulation: every virtual partner reads it
    study = tmp_path / "study.toml"
    study.write_text(f"""
id = "he-train"
purpose = "training"
rounds = 1
min_cohort = 3
round_timeout_s = 300
cohort_timeout_s = 120
output_dir = "{tmp_path / 'out'}"
[training]
architecture = "mlp"
num_features = 64
initial_weights = "{data / 'initial-mlp.safetensors'}"
local_epochs = 1
batch_size = 32
learning_rate = 0.3
max_update_norm = 30.0
[training.privacy]
enabled = true
noise_multiplier = 1.0
max_grad_norm = 1.0
[evaluation]
num_classes = 10
score_bins = 100
[evaluation.privacy]
enabled = true
epsilon = 1.0
[encryption]
enabled = true
public_context = "{keys.public}"
max_records_per_partner = 2000
""", encoding="utf-8")
    results = run_simulated(study, data, 3)
    (round_one,) = results["rounds"]
    assert len(round_one["contributors"]) == 3
    assert round_one["encryption"]["forwarded"] is False and round_one["encryption"]["update_error_bound"] <= 2.0**-17
    assert round_one["encryption"]["decrypted_by"] in round_one["contributors"]
    assert len(results["final_evaluation"]["contributors"]) == 3 and results["final_evaluation"]["encryption"]["forwarded"] is False
    assert 0 <= results["final_evaluation"]["pooled"]["global"]["accuracy"] <= 1
    assert np.isfinite(results["final_evaluation"]["standard_errors"]["global"]["accuracy"])
    assert set(results["privacy"]) == {f"partner-{i:03d}" for i in range(3)}
