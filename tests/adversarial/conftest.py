"""A hostile coordinator: it holds the legitimate coordinator key the demo contracts allow, signs
every task it sends, and drives the partners' REAL pipeline (`federated.local.inprocess.InProcessGrid`
through the server's own `collect_replies`). What it receives is kept byte for byte, as Flower would
carry it, so the tests can count what leaks rather than only see a refusal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from flwr.common.serde import message_to_proto
from flwr.supercore.task_identity import TaskIdentity
from onnx import TensorProto, helper, numpy_helper

from accord.hashing import sha256_bytes
from crypto import Identity, fingerprint
from examples.hospitals.prepare import COORDINATOR_KEY, HOSPITALS, prepare
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.client.data import load_manifest, load_partner_data
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import MESSAGE_TYPE, ModelRef, TaskSpec, build_task, parse_reply
from federated.messages.seal import SEAL_MESSAGE_TYPE, SealSpec, build_seal_task, parse_seal_reply
from federated.server.collect import Channel, Collected, collect_replies
from federated.study import EvaluationPrivacy, EvaluationSettings, Governance

GOVERNANCE = Governance(jurisdiction="EU", legal_basis="consent", accepted_licences=["accord-demo-research-1.0"],
                        retention_days=90)
# Small statistics, so that no disclosure-control clause is what refuses: the tests are about the release path.
EVALUATION = EvaluationSettings(score_bins=10, calibration_bins=5,
                                privacy=EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6))
EXACT = EVALUATION.model_copy(update={"privacy": EvaluationPrivacy(enabled=False)})  # statistics without DP


@pytest.fixture(scope="session")
def hospitals(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hospitals")
    prepare(root)
    return root


@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def leaking_model(*, row: int, column: int, scale: float = 100.0) -> bytes:
    """A 7-node ONNX model that fails on purpose: it reshapes its input to [value × scale, -1], where
    value is feature `column` of record `row`, so onnxruntime's error names that value."""
    constant = lambda name, value, dtype: numpy_helper.from_array(np.asarray(value, dtype=dtype), name)  # noqa: E731
    nodes = [
        helper.make_node("Gather", ["input", "row"], ["picked_row"], axis=0),
        helper.make_node("Gather", ["picked_row", "column"], ["value"], axis=1),
        helper.make_node("Mul", ["value", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["as_int"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["as_int", "one"], ["first"]),
        helper.make_node("Concat", ["first", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["input", "shape"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes, "leak", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2])],
        initializer=[constant("row", [row], np.int64), constant("column", [column], np.int64),
                     constant("scale", scale, np.float32), constant("one", [1], np.int64), constant("minus_one", [-1], np.int64)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def appears(token: str, text: str) -> bool:
    """Whether `token` (a number) appears in `text` as a number of its own, not inside a hash or a longer number."""
    return re.search(rf"(?<![0-9A-Za-z+/=.]){re.escape(token)}(?![0-9A-Za-z+/=])", text) is not None


@dataclass
class HostileCoordinator:
    """The legitimate coordinator key in hostile hands, and the three demo hospitals' real nodes."""

    hospitals: Path
    workdir: Path
    received: list[bytes] = field(default_factory=list)  # every reply, serialized as Flower carries it
    _audits: dict[str, CoordinatorAudit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = self.hospitals / COORDINATOR_KEY
        pinned = fingerprint(Identity.load(key).public_key)
        nodes = {}
        for index, (name, *_rest) in enumerate(HOSPITALS, start=1):
            data = self.hospitals / "data"
            config = node_config(name, data / f"{name}.csv", data / f"{name}.toml", self.workdir / "nodes")
            nodes[index] = config | {"contract": str(data / f"{name}.contract.toml"), "coordinator-key": pinned}
        self.grid = InProcessGrid(nodes, tamper=lambda _node, reply: self.received.append(message_to_proto(reply).SerializeToString()))
        self.names = {index: name for index, (name, *_rest) in enumerate(HOSPITALS, start=1)}

    def node(self, name: str) -> int:
        return next(index for index, partner in self.names.items() if partner == name)

    def trail(self, study: str) -> AuditTrail:
        """The coordinator's trail of `study` (one per study id, continued when the id is used again)."""
        return self.channel(study).trail

    def channel(self, study: str) -> Channel:
        """How the coordinator sends `study`'s tasks: the grid, its trail and the audit of that trail."""
        if study not in self._audits:
            trail = AuditTrail(self.workdir / "coordinator" / study / "coordinator-trail.jsonl", actor="coordinator")
            self._audits[study] = CoordinatorAudit.for_study(trail, self.hospitals / COORDINATOR_KEY, study_id=study)
            trail.append("study_started", study=study)
        audit = self._audits[study]
        return Channel(self.grid, audit.trail, audit)

    def evaluate(self, study: str, round_number: int, models: dict[str, bytes], *, to: list[str],
                 evaluation: EvaluationSettings = EVALUATION) -> tuple[TaskSpec, Collected[Any]]:
        """One validly signed evaluation task (a fresh nonce every call) to the partners `to`."""
        spec = TaskSpec(study=study, round=round_number, study_sha256="0" * 64, evaluation=evaluation, governance=GOVERNANCE,
                        min_cohort=2, models=[ModelRef(name=name, sha256=sha256_bytes(blob), output="probabilities")
                                              for name, blob in models.items()])
        collected = collect_replies(
            self.channel(study), [self.node(name) for name in to], content=lambda: build_task(spec, models),
            message_type=MESSAGE_TYPE, parse=lambda content: parse_reply(content, spec),
            where={"study": study, "round": round_number}, task_sha256=spec.sha256(), timeout_s=1.0,
        )
        return spec, collected

    def seal(self, study: str, *, rounds: int, to: list[str], status: str = "completed") -> Collected[Any]:
        spec = SealSpec(study=study, rounds=rounds, status=status)  # type: ignore[arg-type]
        return collect_replies(
            self.channel(study), [self.node(name) for name in to], content=lambda: build_seal_task(spec),
            message_type=SEAL_MESSAGE_TYPE, parse=parse_seal_reply, where={"study": study, "round": None},
            task_sha256=spec.sha256(), timeout_s=1.0,
        )

    def everything_received(self) -> str:
        """All the coordinator got: every reply's bytes and its trails, as one text to search."""
        replies = b"\n".join(self.received).decode("latin-1")
        trails = "\n".join(path.read_text(encoding="utf-8") for path in (self.workdir / "coordinator").rglob("*.jsonl"))
        return replies + "\n" + trails

    def partner_dir(self, name: str) -> Path:
        return self.workdir / "nodes" / name


@pytest.fixture
def coordinator(hospitals: Path, tmp_path: Path) -> HostileCoordinator:
    return HostileCoordinator(hospitals, tmp_path)


def partner_features(hospitals: Path, name: str) -> np.ndarray:
    data = hospitals / "data"
    return load_partner_data(data / f"{name}.csv", load_manifest(data / f"{name}.toml")).features
