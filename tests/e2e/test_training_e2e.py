"""Federated training over real Flower (deployment) and under its simulation engine."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from accord.hashing import sha256_file
from examples.digits.prepare import partner_name, prepare_digits, write_initial_weights
from federated.audit import read_entries
from federated.local.localhost import Partner
from tests.e2e.conftest import run_simulated

pytestmark = pytest.mark.timeout(600)


def _training_study(tmp_path: Path, data: Path, *, rounds: int, min_cohort: int, privacy: str) -> Path:
    study = tmp_path / "study.toml"
    study.write_text(f"""
id = "train-e2e"
purpose = "training"
rounds = {rounds}
min_cohort = {min_cohort}
round_timeout_s = 300
cohort_timeout_s = 120
output_dir = "{tmp_path / 'out'}"
[training]
architecture = "mlp"
num_features = 64
initial_weights = "{data / 'initial-mlp.safetensors'}"
local_epochs = 2
batch_size = 32
learning_rate = 0.3
max_update_norm = 30.0
[training.privacy]
{privacy}
[evaluation]
num_classes = 10
score_bins = 100
""", encoding="utf-8")
    return study


def _poisoned_copy(source: Partner, target: Path, factor: float) -> Partner:
    """The same records with every feature multiplied: an update far outside the norm bound."""
    rows = list(csv.reader(source.data.open(encoding="utf-8")))
    with open(target.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows[0])
        for row in rows[1:]:
            writer.writerow([f"{float(v) * factor:g}" for v in row[:-1]] + [row[-1]])
    manifest = source.manifest.read_text(encoding="utf-8")
    manifest = manifest.replace(f'sha256 = "{sha256_file(source.data)}"', f'sha256 = "{sha256_file(target.with_suffix(".csv"))}"')
    target.with_suffix(".toml").write_text(manifest, encoding="utf-8")
    return Partner("poisoner", target.with_suffix(".csv"), target.with_suffix(".toml"))


def test_deployment_training_improves_the_model_and_rejects_a_poisoned_update(tmp_path, federation):
    data = tmp_path / "data"
    prepare_digits(data, partners=3)
    write_initial_weights(data, architecture="mlp")
    honest = [Partner(partner_name(i), data / f"{partner_name(i)}.csv", data / f"{partner_name(i)}.toml") for i in range(3)]
    poisoner = _poisoned_copy(honest[0], tmp_path / "poison", factor=1e4)
    study = _training_study(tmp_path, data, rounds=2, min_cohort=2, privacy="enabled = false")
    federation.start_coordinator(study, log=tmp_path / "coordinator.log")
    for partner in [*honest, poisoner]:
        federation.start_partner(partner)
    assert federation.coordinator.wait(timeout=500) == 0, (tmp_path / "coordinator.log").read_text()
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    first, second = results["rounds"]
    assert [r["partner"] for r in first["rejected"]] == ["poisoner"]
    assert "exceeds the study's max_update_norm" in first["rejected"][0]["reason"] or "NaN" in first["rejected"][0]["reason"]
    assert sorted(first["contributors"]) == [p.name for p in honest]
    initial = first["pooled"]["global"]["accuracy"]
    final = results["final_evaluation"]["pooled"]["global"]["accuracy"]
    assert final > initial + 0.2, (initial, second["pooled"]["global"]["accuracy"], final)
    # Every global model is saved with its lineage, and the trail records it.
    lineage = results["lineage"]
    assert [entry["round"] for entry in lineage] == [0, 1, 2]
    assert lineage[2]["parent_sha256"] == lineage[1]["sha256"]
    trail = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    assert sum(e["kind"] == "update_rejected" for e in trail) == 2
    assert [e["details"]["sha256"] for e in trail if e["kind"] == "model_aggregated"] == [e["sha256"] for e in lineage]


def test_simulation_trains_ten_partners_with_dp_from_the_same_apps(tmp_path):
    data = tmp_path / "data"
    prepare_digits(data, partners=10)
    write_initial_weights(data, architecture="mlp")
    study = _training_study(tmp_path, data, rounds=1, min_cohort=8, privacy="enabled = true\nnoise_multiplier = 1.0\nmax_grad_norm = 1.0")
    results = run_simulated(study, data, 10)
    (round_one,) = results["rounds"]
    assert len(round_one["contributors"]) == 10
    assert len(results["final_evaluation"]["contributors"]) == 10
    spent = round_one["privacy"]["partner-000"]
    assert spent["noise_multiplier"] == 1.0 and spent["epsilon"] > 0
    assert set(results["privacy"]) == {partner_name(i) for i in range(10)}
