"""Encrypted evaluation rounds through the coordinator's real round logic and the partners' real pipeline
(in one process): equality with the plaintext path, DP, a failing decryptor, and the round failing, named,
when a member of the announced cohort sends no usable bundle (no key, another study's key, a bad bundle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.hashing import sha256_file
from federated.audit import AuditTrail, read_entries
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import ModelRef, TaskSpec
from federated.server.encryption import CohortIncompleteError, DecryptionFailedError, EncryptedAggregation
from federated.server.context import RoundContext
from federated.server.rounds import run_round
from federated.study import Study
from tests.he.conftest import STUDY, hospital_files, install_node_keys

pytestmark = pytest.mark.usefixtures("flower_task_identity")


@pytest.fixture(autouse=True)
def _pinned_node_keys(node_keys, tmp_path):
    """Every node of these tests signs with the key the study's key ceremony pinned for it."""
    for workdir in (tmp_path, tmp_path / "he", tmp_path / "plain"):
        install_node_keys(node_keys, workdir / "nodes")
MODELS = ("logreg", "mlp")


def _study(hospitals: Path, workdir: Path, *, encryption: dict | None, dp: bool = False, min_cohort: int = 2) -> Study:
    return Study.model_validate({
        "id": STUDY, "purpose": "evaluation", "output_dir": str(workdir / "out"), "min_cohort": min_cohort,
        "round_timeout_s": 0.5,
        "models": [{"name": m, "path": str(hospitals / "models" / f"{m}.onnx")} for m in MODELS],
        "evaluation": {"subgroup_levels": ["under_50", "50_plus"], "privacy": {"enabled": dp}},
        "encryption": encryption or {},
    })


def _round(hospitals: Path, workdir: Path, study: Study, secrets: dict[str, Path | None], **grid_options):
    nodes = {i + 1: node_config(name, data, manifest, workdir / "nodes", secrets.get(name))
             for i, (name, data, manifest) in enumerate(hospital_files(hospitals))}
    grid = InProcessGrid(nodes, **grid_options)
    trail = AuditTrail(workdir / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, workdir / "coordinator.key", study_id=study.id)
    models = {m: (hospitals / "models" / f"{m}.onnx").read_bytes() for m in MODELS}
    spec = TaskSpec(
        study=study.id, round=1, study_sha256="0" * 64, evaluation=study.evaluation,
        models=[ModelRef(name=m, sha256=sha256_file(hospitals / "models" / f"{m}.onnx"), output="probabilities") for m in MODELS],
    )
    encryption = EncryptedAggregation.for_study(study, workdir / "study.toml")
    context = RoundContext(grid, trail, audit, study=study, study_sha256="0" * 64, encryption=encryption)
    outcome = run_round(context, spec, models)
    return outcome, trail


def _encrypted(keys, **extra) -> dict:
    return {"enabled": True, "public_context": str(keys.public), **extra}


def _all(keys) -> dict[str, Path]:
    return {name: keys.secret for name in ("hospital-a", "hospital-b", "hospital-c")}


def test_encrypted_round_equals_the_plaintext_round(tmp_path, hospitals, keys):
    plain, _ = _round(hospitals, tmp_path / "plain", _study(hospitals, tmp_path / "plain", encryption=None), {})
    study = _study(hospitals, tmp_path / "he", encryption=_encrypted(keys))
    encrypted, trail = _round(hospitals, tmp_path / "he", study, _all(keys))
    assert sorted(encrypted.contributors) == sorted(plain.contributors) == ["hospital-a", "hospital-b", "hospital-c"]
    for model in MODELS:
        for name in ("label_counts", "confusion", "hist_pos", "hist_neg", "subgroup_confusion"):
            assert (encrypted.pooled_statistics[model][name] == plain.pooled_statistics[model][name]).all()
        for metric, value in plain.pooled[model].items():
            assert encrypted.pooled[model][metric] == pytest.approx(value, rel=1e-6, abs=1e-12), metric
        for metric in ("accuracy", "precision", "recall", "f1", "auroc"):
            assert encrypted.pooled[model][metric] == plain.pooled[model][metric]  # from exact counts
        assert set(encrypted.matrix[model].values()) == {None}  # no partner's own statistics are known
    assert encrypted.encryption["decrypted_by"] == encrypted.contributors[0]
    kinds = [e["kind"] for e in read_entries(trail.path)]
    assert kinds.count("aggregate_decrypted") == 1 and kinds.count("aggregate_computed") == 1


def test_partners_trails_record_bundles_and_the_decryption(tmp_path, hospitals, keys):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys, decryptors=["hospital-c"]))
    outcome, _ = _round(hospitals, tmp_path, study, _all(keys))
    assert outcome.encryption["decrypted_by"] == "hospital-c"
    entries = read_entries(tmp_path / "nodes" / "hospital-c" / "trail.jsonl")
    sent = [e["details"] for e in entries if e["kind"] == "result_sent"]
    assert sent[0]["bundle_sha256"] == outcome.encryption["bundle_sha256"]["hospital-c"]
    decrypted = sent[1]["decrypted"]
    assert decrypted["aggregate_sha256"] == outcome.encryption["aggregate_sha256"] and decrypted["blinded"]
    assert not decrypted["resummed"] and outcome.encryption["forwarded"] is False  # no partner sees another's bundle
    assert sorted(decrypted["contributors"]) == ["hospital-a", "hospital-b", "hospital-c"]
    received = [e["details"] for e in entries if e["kind"] == "task_received"]
    assert {r["he_fingerprint"] for r in received} == {EncryptedAggregation.for_study(study, tmp_path).public.fingerprint}


@pytest.fixture
def seeded_partner_noise(monkeypatch):
    """The partners' DP noise from one seeded generator (a node draws it from the OS, `federated.client.tasks`):
    the three in-process partners draw in node order, so the noisy round is the same on every run."""
    from federated.client import tasks

    rng, privatize = np.random.default_rng(20261129), tasks.privatize
    monkeypatch.setattr(tasks, "privatize", lambda statistics, settings: privatize(statistics, settings, rng=rng))


def test_dp_noise_is_added_before_encryption(tmp_path, hospitals, keys, seeded_partner_noise):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys), dp=True)
    outcome, _ = _round(hospitals, tmp_path, study, _all(keys))
    assert len(outcome.contributors) == 3 and set(outcome.privacy) == set(outcome.contributors)
    assert outcome.standard_errors["logreg"]["accuracy"] > 0
    assert 0.8 < outcome.pooled["logreg"]["accuracy"] <= 1.0


def test_a_silent_decryptor_is_replaced_by_the_next(tmp_path, hospitals, keys):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys, decryptors=["hospital-a", "hospital-b"]))
    outcome, trail = _round(hospitals, tmp_path, study, _all(keys), silent={(1, "query.decrypt")})
    assert outcome.encryption["decrypted_by"] == "hospital-b"
    (attempt,) = outcome.encryption["decryption_attempts"]
    assert attempt["partner"] == "hospital-a" and "no reply" in attempt["reason"]


def test_when_every_named_decryptor_is_silent_the_round_fails_cleanly(tmp_path, hospitals, keys):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys, decryptors=["hospital-c"]))
    with pytest.raises(DecryptionFailedError, match=r"no partner decrypted the aggregate \(asked: hospital-c\)"):
        _round(hospitals, tmp_path, study, _all(keys), silent={(3, "query.decrypt")})
    assert _decrypted(tmp_path / "coordinator-trail.jsonl") == 0


def _decrypted(trail_path: Path) -> int:
    return [e["kind"] for e in read_entries(trail_path)].count("aggregate_decrypted")


def test_a_partner_without_the_secret_context_refuses_and_the_round_fails_named(tmp_path, hospitals, keys):
    # Dropout: the cohort's pads cancel only over all three, so no smaller cohort is decrypted instead.
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys))
    secrets = {"hospital-a": keys.secret, "hospital-b": keys.secret, "hospital-c": None}
    with pytest.raises(CohortIncompleteError, match=r"the announced cohort \['hospital-a', 'hospital-b', 'hospital-c'\] "
                       r"is incomplete \(hospital-c: .*holds no secret context \(start it with --he-secret-context\)"):
        _round(hospitals, tmp_path, study, secrets)
    assert _decrypted(tmp_path / "coordinator-trail.jsonl") == 0


def test_a_partner_holding_another_studys_key_refuses_and_the_round_fails_named(tmp_path, hospitals, keys, other_keys):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys))
    with pytest.raises(CohortIncompleteError, match=r"\(hospital-b: .*holds the key of study 'another-study'"):
        _round(hospitals, tmp_path, study, _all(keys) | {"hospital-b": other_keys.secret})
    assert _decrypted(tmp_path / "coordinator-trail.jsonl") == 0


def _corrupt_bundle(node: int, reply) -> None:
    record = reply.content.config_records.get("encrypted")
    if node == 3 and record is not None:
        blob = record["bundle"]
        record["bundle"] = blob[:1000] + bytes([blob[1000] ^ 1]) + blob[1001:]


def test_a_corrupted_bundle_is_refused_and_the_round_fails_named(tmp_path, hospitals, keys):
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys))
    with pytest.raises(CohortIncompleteError, match=r"\(hospital-c: no bundle; node 3: .*checksum mismatch, the bundle is corrupted"):
        _round(hospitals, tmp_path, study, _all(keys), tamper=_corrupt_bundle)
    assert _decrypted(tmp_path / "coordinator-trail.jsonl") == 0


def test_a_node_whose_key_is_not_the_pinned_one_sends_no_bundle_and_nothing_is_decrypted(tmp_path, hospitals, keys):
    from crypto import Identity
    from federated.client.refusals import NodeLog

    node = tmp_path / "nodes" / "hospital-b"
    (node / "node.key").unlink()  # hospital-b now signs with a key the ceremony never saw
    (node / "node.key.pub").unlink()
    Identity.generate().save(node / "node.key")
    study = _study(hospitals, tmp_path, encryption=_encrypted(keys))
    with pytest.raises(CohortIncompleteError, match=r"\(hospital-b: this partner's result could not be encrypted"):
        _round(hospitals, tmp_path, study, _all(keys))
    assert _decrypted(tmp_path / "coordinator-trail.jsonl") == 0
    (logged,) = NodeLog.beside(node / "trail.jsonl").records()
    assert "this node's signing key is not the one the key ceremony pinned for hospital-b" in logged["detail"]


def test_the_report_says_why_the_matrix_is_withheld(tmp_path, hospitals, keys):
    from federated.reporting.report import render_markdown

    study = _study(hospitals, tmp_path, encryption=_encrypted(keys))
    outcome, _ = _round(hospitals, tmp_path, study, _all(keys))
    results = {"study": STUDY, "purpose": "evaluation", "status": "completed", "message": "", "models": [],
               "rounds": [outcome.summary()], "privacy": {}, "trail": "coordinator-trail.jsonl"}
    report = render_markdown(results, {})
    assert "withheld (encrypted aggregation)" in report and "withheld by partner" not in report
