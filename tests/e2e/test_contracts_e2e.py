"""Data contracts over real Flower: a hospital whose contract forbids training is skipped."""

from __future__ import annotations

import json

import pytest

from accord.hashing import sha256_file
from examples.hospitals.prepare import COORDINATOR_KEY
from federated.audit import read_entries

pytestmark = pytest.mark.timeout(400)

GOVERNANCE = """
[governance]
jurisdiction = "EU"
legal_basis = "consent"
accepted_licences = ["accord-demo-research-1.0"]
retention_days = 90
"""


def test_contract_forbidding_training_skips_that_hospital_and_both_trails_say_why(tmp_path, hospitals, partners, federation):
    study = tmp_path / "study.toml"
    study.write_text(f"""
id = "contract-training"
purpose = "training"
rounds = 1
min_cohort = 2
round_timeout_s = 120
output_dir = "{tmp_path / 'out'}"
[training]
architecture = "logistic_regression"
num_features = 30
local_epochs = 1
learning_rate = 0.05
max_update_norm = 1000.0
[evaluation]
subgroup_levels = ["under_50", "50_plus"]
score_bins = 10  # hospital-a and -c release without DP: their contracts allow one bin per 5 records
{GOVERNANCE}""")
    federation.start_coordinator(study, "--key", str(hospitals / COORDINATOR_KEY), log=tmp_path / "coordinator.log")
    for partner in partners:
        federation.start_partner(partner, "--contract", str(partner.manifest.with_suffix(".contract.toml")))
    assert federation.coordinator.wait(timeout=300) == 0, (tmp_path / "coordinator.log").read_text()
    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    (first,) = results["rounds"]
    assert sorted(first["contributors"]) == ["hospital-a", "hospital-c"]
    (refusal,) = first["refused"]
    assert (refusal["partner"], refusal["clause"]) == ("hospital-b", "allowed_purposes")
    assert "purpose 'training' is not among ['evaluation']" in refusal["reason"]
    partner_trail = read_entries(tmp_path / "nodes" / "hospital-b" / "trail.jsonl")
    refused = [e for e in partner_trail if e["kind"] == "task_refused"]
    assert refused and refused[0]["details"]["clause"] == "allowed_purposes"
    assert not any(e["kind"] == "task_accepted" and e["round"] is not None for e in partner_trail)  # None: the seal
    assert not any(e["kind"] == "task_accepted" and e["details"].get("data_sha256") for e in partner_trail)
    coordinator = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    assert any(e["kind"] == "task_refused" and e["details"].get("clause") == "allowed_purposes" for e in coordinator)
    # The contract each contributing partner applied is named by hash on both sides (for the evidence pack).
    contract_a = sha256_file(partners[0].manifest.with_suffix(".contract.toml"))
    assert any(e["kind"] == "result_received" and e["details"].get("contract_sha256") == contract_a for e in coordinator)


def test_node_refuses_to_start_under_a_contract_for_other_data(tmp_path, partners):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "federated.client", "--data", str(partners[0].data), "--manifest", str(partners[0].manifest),
         "--contract", str(partners[1].manifest.with_suffix(".contract.toml")), "--coordinator", "127.0.0.1:9", "--insecure"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 3
    assert "data_sha256" in done.stderr and "does not match the data" in done.stderr
