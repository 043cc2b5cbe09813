"""Attack: a hostile coordinator (the legitimate key) tries to get a partner's statistics with only a share of
the noise on them, where the sum that reaches it could not carry one central release's noise.

Distributed noise is safe only inside an encrypted sum of at least t contributors (t honest ones carry σ²).
What already stops a smaller sum: only the whole announced cohort's sum decrypts (cohort blinding), and a
decryptor decrypts only the exact cohort its bundle was bound to, once per round (`tests/adversarial/
test_he_differencing.py` attacks those). What these tests add: the cohort a task announces, and whether it is
encrypted at all, are checked against t BEFORE any noise is drawn, by the partner's own contract gate."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest
import tomli_w

from accord.hashing import sha256_bytes, sha256_file
from crypto import Identity, fingerprint
from crypto.he_keys import KeyFiles, generate_context, write_key_files
from examples.hospitals.prepare import COORDINATOR_KEY, HOSPITALS
from federated.audit import read_entries
from federated.client.refusals import NodeLog
from federated.evaluation.dp_release import calibrate
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.encryption_spec import EncryptionSpec
from federated.messages.evaluation import (
    MESSAGE_TYPE,
    ModelRef,
    TaskSpec,
    build_task,
    parse_reply,
)
from federated.server.collect import collect_replies
from federated.study import EvaluationPrivacy
from privacy import BudgetLedger
from tests.adversarial.conftest import EVALUATION, GOVERNANCE, HostileCoordinator
from tests.he.conftest import STUDY, install_node_keys, pinned

A, B, C = (name for name, *_ in HOSPITALS)
CLAUSE = "protections.allow_distributed_noise"


@pytest.fixture(scope="module")
def node_keys(tmp_path_factory) -> Path:
    from federated.audit.keys import load_or_create_identity

    directory = tmp_path_factory.mktemp("node-keys")
    for name in (A, B, C):
        load_or_create_identity(directory / f"{name}.key")
    return directory


@pytest.fixture(scope="module")
def study_keys(tmp_path_factory, node_keys) -> KeyFiles:
    return write_key_files(generate_context(STUDY, partners=pinned(node_keys)), tmp_path_factory.mktemp("keys"))


@pytest.fixture
def coordinator(hospitals: Path, tmp_path: Path, node_keys: Path, study_keys: KeyFiles) -> HostileCoordinator:
    """The hostile coordinator, facing nodes whose contracts opt into distributed noise for t ≤ 3 (a, b) or not (c)."""
    hostile = HostileCoordinator(hospitals, tmp_path)
    install_node_keys(node_keys, tmp_path / "nodes")
    key = fingerprint(Identity.load(hospitals / COORDINATOR_KEY).public_key)
    nodes = {}
    for index, name in enumerate((A, B, C), start=1):
        data = hospitals / "data" / f"{name}.csv"
        protections: dict[str, object] = {"require_dp": True}
        if name != C:
            protections |= {"allow_distributed_noise": True, "max_honest_required": 3}
        contract = tmp_path / f"{name}.contract.toml"
        contract.write_text(tomli_w.dumps({
            "dataset_id": name, "data_sha256": sha256_file(data), "licence": "accord-demo-research-1.0", "provenance": "demo",
            "sensitivity": "special_category", "jurisdictions": ["EU"], "legal_bases": ["consent"],
            "allowed_purposes": ["evaluation"], "allowed_coordinators": [key], "protections": protections,
            "budget": {"max_epsilon_per_study": 10.0, "max_epsilon_total": 10.0}, "retention_days": 365,
            "expires": date(2099, 12, 31),
        }), encoding="utf-8")
        nodes[index] = node_config(name, data, hospitals / "data" / f"{name}.toml", tmp_path / "nodes", study_keys.secret) | {
            "contract": str(contract), "coordinator-key": key}
    hostile.grid = InProcessGrid(nodes)
    return hostile


def _send(coordinator: HostileCoordinator, spec: TaskSpec, models: dict[str, bytes], to: list[str]):
    return collect_replies(
        coordinator.channel(spec.study), [coordinator.node(name) for name in to], content=lambda: build_task(spec, models),
        message_type=MESSAGE_TYPE, parse=lambda content: parse_reply(content, spec), where={"study": spec.study, "round": spec.round},
        task_sha256=spec.sha256(), timeout_s=1.0,
    )


def _spec(models: dict[str, bytes], *, honest_required: int, encryption: EncryptionSpec | None) -> TaskSpec:
    privacy = EvaluationPrivacy(enabled=True, epsilon=1.0, noise="distributed", honest_required=honest_required)
    return TaskSpec(study=STUDY, round=1, study_sha256="0" * 64, governance=GOVERNANCE, min_cohort=2,
                    evaluation=EVALUATION.model_copy(update={"privacy": privacy}), encryption=encryption,
                    models=[ModelRef(name=name, sha256=sha256_bytes(blob), output="probabilities") for name, blob in models.items()])


def _models(hospitals: Path) -> dict[str, bytes]:
    return {"logreg": (hospitals / "models" / "logreg.onnx").read_bytes()}


def _spent(coordinator: HostileCoordinator, name: str) -> list:
    path = coordinator.partner_dir(name) / "budget.sqlite"
    return BudgetLedger.open_existing(path).spends() if path.exists() else []


def test_a_cohort_smaller_than_t_gets_no_share_of_the_noise(coordinator, hospitals, study_keys):
    """The task announces an encrypted sum over 2 partners while its guarantee needs 3 honest ones: two shares of
    σ²/3 could never carry σ². Both opted-in nodes refuse before drawing any noise; nothing is encrypted or charged."""
    from crypto.he_keys import load_public_context

    public = load_public_context(study_keys.public)
    encryption = EncryptionSpec(fingerprint=public.fingerprint, key_study=STUDY, partners=2, max_records_per_partner=100_000,
                                layout_sha256="0" * 64, cohort=[A, B])
    collected = _send(coordinator, _spec(_models(hospitals), honest_required=3, encryption=encryption), _models(hospitals), [A, B])
    assert not collected.accepted
    assert {(r["partner"], r["clause"]) for r in collected.refused} == {(A, CLAUSE), (B, CLAUSE)}
    for name in (A, B):
        assert _spent(coordinator, name) == []
        records = NodeLog.beside(coordinator.partner_dir(name) / "trail.jsonl").records()
        assert any("fewer than the 3 honest ones the distributed guarantee needs" in r["detail"] for r in records)
        sent = [e for e in read_entries(coordinator.partner_dir(name) / "trail.jsonl") if e["kind"] == "result_sent"]
        assert sent == []  # no bundle was made


def test_a_plaintext_task_never_gets_a_share_and_a_node_that_did_not_opt_in_adds_its_full_noise(coordinator, hospitals):
    """Without encryption a share would leave on its own: the opted-in node refuses, and the node whose contract
    does not opt in answers with the full local noise (its noise record names no share)."""
    models = _models(hospitals)
    spec = _spec(models, honest_required=2, encryption=None)
    collected = _send(coordinator, spec, models, [A, C])
    assert [(r["partner"], r["clause"]) for r in collected.refused] == [(A, CLAUSE)]
    (reply,) = collected.accepted
    central = calibrate(spec.layout(), spec.evaluation.privacy, len(models))
    assert reply.info.partner == C and reply.info.noise is not None and reply.info.noise.distributed is None
    assert reply.info.noise.sigma == pytest.approx(central.sigma) and not math.isclose(reply.info.noise.sigma, central.sigma / math.sqrt(2))
    assert _spent(coordinator, A) == [] and [s.share_epsilon for s in _spent(coordinator, C)] == [None]
