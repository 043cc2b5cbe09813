"""An encrypted regression round through the coordinator's real round logic and the partners' real pipeline
(in one process): the decrypted pooled errors equal the plaintext round's within the codec's bound."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from accord.hashing import sha256_file
from examples.hospitals.prepare import HOSPITALS
from examples.regression.prepare import PARTNERS, prepare
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import ModelRef, TaskSpec
from federated.server.context import RoundContext
from federated.server.encryption import EncryptedAggregation
from federated.server.rounds import run_round
from federated.study import Study
from tests.he.conftest import STUDY, install_node_keys

pytestmark = pytest.mark.usefixtures("flower_task_identity")
MODELS = ("linear", "boosted")


@pytest.fixture(scope="module")
def clinics(tmp_path_factory) -> tuple[Path, list[tuple[str, Path, Path]]]:
    """The regression example's three clinics, under the names the study's key ceremony pinned."""
    root = tmp_path_factory.mktemp("clinics")
    prepare(root)
    files = []
    for (clinic, _), (hospital, *_) in zip(PARTNERS, HOSPITALS):
        data = root / "data" / f"{hospital}.csv"
        shutil.copy(root / "data" / f"{clinic}.csv", data)
        manifest = root / "data" / f"{hospital}.toml"
        manifest.write_text((root / "data" / f"{clinic}.toml").read_text(encoding="utf-8"), encoding="utf-8")
        files.append((hospital, data, manifest))
    return root, files


def _round(clinics, workdir: Path, node_keys, *, secret: Path | None, encryption: dict | None):
    root, files = clinics
    install_node_keys(node_keys, workdir / "nodes")
    study = Study.model_validate({
        "id": STUDY, "purpose": "evaluation", "output_dir": str(workdir / "out"), "min_cohort": 3,
        "round_timeout_s": 5, "models": [{"name": m, "path": str(root / "models" / f"{m}.onnx"), "output": "variable"}
                                          for m in MODELS],
        "evaluation": {"task": "regression", "subgroup_levels": ["sex_1", "sex_2"],
                       "regression": {"residual_edges": [-200, -100, -50, 0, 50, 100, 200], "value_range": [0, 400]}},
        "encryption": encryption or {},
    })
    grid = InProcessGrid({i + 1: node_config(name, data, manifest, workdir / "nodes", secret)
                          for i, (name, data, manifest) in enumerate(files)})
    trail = AuditTrail(workdir / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, workdir / "coordinator.key", study_id=study.id)
    spec = TaskSpec(study=study.id, round=1, study_sha256="0" * 64, evaluation=study.evaluation,
                    models=[ModelRef(name=m, sha256=sha256_file(root / "models" / f"{m}.onnx"), output="variable")
                            for m in MODELS])
    context = RoundContext(grid, trail, audit, study=study, study_sha256="0" * 64,
                           encryption=EncryptedAggregation.for_study(study, workdir / "study.toml"))
    return run_round(context, spec, {m: (root / "models" / f"{m}.onnx").read_bytes() for m in MODELS})


def test_an_encrypted_regression_round_equals_the_plaintext_round(tmp_path, clinics, keys, node_keys):
    plain = _round(clinics, tmp_path / "plain", node_keys, secret=None, encryption=None)
    encrypted = _round(clinics, tmp_path / "he", node_keys, secret=keys.secret,
                       encryption={"enabled": True, "public_context": str(keys.public)})
    assert sorted(encrypted.contributors) == sorted(plain.contributors) and len(plain.contributors) == 3
    assert encrypted.encryption["decrypted_by"] in plain.contributors
    for model in MODELS:
        assert (encrypted.pooled_statistics[model]["residual_hist"] == plain.pooled_statistics[model]["residual_hist"]).all()
        for metric, value in plain.pooled[model].items():
            assert encrypted.pooled[model][metric] == pytest.approx(value, rel=1e-9), metric
        assert all(cell is None for cell in encrypted.matrix[model].values())  # no partner's own sums are known
