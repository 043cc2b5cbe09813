"""Secure mode: TLS on the SuperLink, Flower's SuperNode authentication, and replayed tasks refused.

The study runs on real Flower processes on 127.0.0.1 with a test CA (`crypto.tls`) and
SuperNode keys (`crypto.node_auth`): what `python -m crypto.keys ca` and `identity` write.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from accord.hashing import sha256_bytes
from crypto import Identity
from crypto.node_auth import NodeAuthKey
from crypto.tls import create_ca, issue_server_certificate
from federated.audit import AuditTrail, read_entries
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.client.pipeline import serve
from federated.client.replay import ReplayCache
from federated.client.tasks import EVALUATE
from federated.local.localhost import LocalFederation, LocalTLS
from federated.messages.audit_exchange import attach, read_task_audit
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import MESSAGE_TYPE, ModelRef, TaskSpec, build_task
from federated.study import EvaluationSettings
from tests.e2e.conftest import write_study


@pytest.fixture
def tls(tmp_path: Path) -> LocalTLS:
    authority = create_ca(tmp_path / "ca")
    server = issue_server_certificate(tmp_path / "ca", tmp_path / "ca", ["127.0.0.1"])
    return LocalTLS(ca_certificate=authority.certificate, certificate=server.certificate, key=server.key)


def _node_key(directory: Path, name: str) -> Path:
    key = directory / f"{name}.supernode.key"
    NodeAuthKey.generate().save(key, name=name)
    return key


def _said(log: Path) -> str:
    return " ".join(log.read_text(errors="replace").split())


def test_tls_study_with_supernode_auth_admits_only_registered_nodes(tmp_path, hospitals, partners, tls):
    keys, authorized = tmp_path / "keys", tmp_path / "authorized"
    keys.mkdir()
    authorized.mkdir()
    node_keys = {p.name: _node_key(keys, p.name) for p in partners}
    for name in ("hospital-a", "hospital-b"):  # hospital-c's key is never registered
        (authorized / f"{name}.pub").write_bytes(Path(f"{node_keys[name]}.pub").read_bytes())
    study = write_study(tmp_path, hospitals, min_cohort=2, cohort_timeout_s=60)
    federation = LocalFederation(workdir=tmp_path / "nodes", tls=tls)
    try:
        federation.start_coordinator(study, "--supernode-auth", "--authorized-nodes", str(authorized),
                                     log=tmp_path / "coordinator.log")
        intruder = federation.start_partner(partners[2], "--auth-key", str(node_keys["hospital-c"]))
        keyless = federation.start_partner(partners[2].__class__("keyless", partners[2].data, partners[2].manifest))
        for partner in partners[:2]:
            federation.start_partner(partner, "--auth-key", str(node_keys[partner.name]))
        assert intruder.wait(timeout=60) == 7
        assert keyless.wait(timeout=60) == 7
        assert federation.coordinator.wait(timeout=150) == 0, (tmp_path / "coordinator.log").read_text()[-3000:]
    finally:
        federation.stop()

    said = _said(tmp_path / "nodes" / "hospital-c" / "node.log")
    assert "rejected this node: its SuperNode key is not registered there" in said
    assert "Flower said: Exit Code: 305 Failed to initialize the connection to the SuperLink. [code: 2004] Failed to activate SuperNode." in said
    assert "it requires SuperNode authentication. Start the node with --auth-key" in _said(tmp_path / "nodes" / "keyless" / "node.log")
    assert "registered 2 authorized partner node key(s) with the SuperLink: hospital-a (node" in _said(tmp_path / "coordinator.log")

    results = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    assert sorted(results["rounds"][0]["contributors"]) == ["hospital-a", "hospital-b"]
    entries = read_entries(tmp_path / "out" / "latest" / "coordinator-trail.jsonl")
    registered = next(e for e in entries if e["kind"] == "nodes_authorized")["details"]["nodes"]
    assert [node["name"] for node in registered] == ["hospital-a", "hospital-b"]
    node_ids = {node["node"] for node in registered}
    assert {e["details"]["node"] for e in entries if e["kind"] == "task_sent"} == node_ids
    assert all(e["details"].get("nonce") for e in entries if e["kind"] == "task_sent")


def test_secure_mode_options_that_flower_would_refuse_are_named(tmp_path, hospitals, partners, tls):
    study = write_study(tmp_path, hospitals)
    key = _node_key(tmp_path, "hospital-a")

    def run(module: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)

    insecure_auth = run("federated.server", "--study", str(study), "--insecure", "--supernode-auth",
                        "--authorized-nodes", f"{key}.pub")
    assert insecure_auth.returncode == 3 and "--supernode-auth needs TLS" in insecure_auth.stderr
    off_loopback = run("federated.server", "--study", str(study), "--host", "10.1.2.3", *tls.coordinator_args())
    assert off_loopback.returncode == 3
    assert "off 127.0.0.1 the SuperLink runs in secure mode" in " ".join(off_loopback.stderr.split())
    partner = run("federated.client", "--data", str(partners[0].data), "--manifest", str(partners[0].manifest),
                  "--coordinator", "127.0.0.1:9", "--insecure", "--auth-key", str(key), "--workdir", str(tmp_path / "n"))
    assert partner.returncode == 3 and "needs TLS (--root-certificates), not --insecure" in " ".join(partner.stderr.split())


def _deliver(content: RecordDict, context: Context) -> PartnerInfo:
    """One delivery of a task to the partner's ClientApp pipeline, as Flower makes it."""
    message = Message(content, dst_node_id=1, message_type=MESSAGE_TYPE)
    message.metadata.__dict__["_message_id"] = message.object_id  # what the SuperLink sets on delivery
    reply = serve(EVALUATE, message, context)
    return PartnerInfo.model_validate_json(reply.content.config_records["info"]["json"])


def test_a_replayed_task_is_refused_and_a_forged_nonce_fails_the_signature(tmp_path, hospitals, partners, monkeypatch):
    for attribute in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)
    model = (hospitals / "models" / "logreg.onnx").read_bytes()
    spec = TaskSpec(study="replay", round=1, study_sha256="0" * 64,
                    models=[ModelRef(name="logreg", sha256=sha256_bytes(model), output="probabilities")],
                    evaluation=EvaluationSettings(subgroup_levels=["under_50", "50_plus"]))
    trail = AuditTrail(tmp_path / "coordinator-trail.jsonl", actor="coordinator")
    trail.append("cohort_ready", study="replay", nodes=1)
    coordinator = CoordinatorAudit(trail, Identity.generate(), study_id="replay")
    coordinator.checkpoint()
    task = build_task(spec, {"logreg": model})
    coordinator.attach_task(task, 1, spec.sha256())
    node = tmp_path / "node"
    context = Context(run_id=1, node_id=1, state=RecordDict(), run_config={}, node_config={
        "partner-id": "hospital-a", "data": str(partners[0].data), "manifest": str(partners[0].manifest),
        "trail": str(node / "trail.jsonl")})

    assert _deliver(task, context).status == "ok"
    replayed = _deliver(task, context)
    assert (replayed.status, replayed.clause) == ("refused", "replay")
    assert "replayed task: nonce" in replayed.reason

    forged = build_task(spec, {"logreg": model})
    attach(forged, read_task_audit(task).model_copy(update={"nonce": secrets.token_hex(16)}))
    refused = _deliver(forged, context)
    assert (refused.status, refused.clause) == ("refused", "audit")
    assert "is not signed by the coordinator key" in refused.reason
    assert len(ReplayCache.beside(node / "trail.jsonl")) == 1  # only the verified nonce was kept
    kinds = [(e["kind"], e["details"].get("clause")) for e in read_entries(node / "trail.jsonl")]
    assert ("task_refused", "replay") in kinds and kinds.count(("result_sent", None)) == 1
