"""A node evaluates its file in one streaming pass: the same statistics as the loaded data, and
nothing leaves when the pass ends on a hash that does not match the manifest.

The file holds more records than one batch (`federated.client.data.BATCH_RECORDS`), so the pass
really is several batches; the node is the real ClientApp, driven through the in-process grid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from accord.hashing import sha256_bytes, sha256_file
from crypto import Identity
from federated.audit import AuditTrail
from federated.audit.coordinator_audit import CoordinatorAudit
from federated.client.data import (
    BATCH_RECORDS,
    load_manifest,
    load_partner_data,
    open_partner_file,
)
from federated.client.evaluation import evaluate_task
from federated.errors import DataFileError
from federated.local.inprocess import InProcessGrid, node_config
from federated.messages.evaluation import (
    MESSAGE_TYPE,
    ModelRef,
    TaskSpec,
    build_task,
    parse_reply,
    parse_task,
)
from federated.server.collect import Channel, Collected, collect_replies
from federated.study import EvaluationPrivacy, EvaluationSettings
from privacy import BudgetLedger

RECORDS = BATCH_RECORDS + 4_465  # two batches, the second one short
EXACT = EvaluationSettings(score_bins=10, calibration_bins=5, subgroup_levels=["a", "b"])
PRIVATE = EXACT.model_copy(update={"privacy": EvaluationPrivacy(enabled=True, epsilon=1.0, delta=1e-6)})


@pytest.fixture(autouse=True)
def flower_task_identity(monkeypatch):
    # Flower's Message needs the identity a ServerApp process has; give it one.
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


@pytest.fixture(scope="module")
def model() -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    fitted = LogisticRegression().fit(x, (x[:, 0] + rng.normal(size=200) > 0).astype(int))
    return to_onnx(fitted, x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17).SerializeToString()


def _write_csv(path: Path, *, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(RECORDS, 2))
    y = (x[:, 0] + rng.normal(size=RECORDS) > 0).astype(int)
    rows = "\n".join(f"{a!r},{b!r},{label},{'ab'[i % 2]}" for i, ((a, b), label) in enumerate(zip(x.tolist(), y, strict=True)))
    path.write_text("x1,x2,y,g\n" + rows + "\n", encoding="utf-8")


def _partner(tmp_path: Path, *, sha256: str | None = None) -> tuple[Path, Path]:
    data, manifest = tmp_path / "site.csv", tmp_path / "site.toml"
    _write_csv(data, seed=1)
    manifest.write_text(
        f'dataset_id = "site"\nfeatures = ["x1", "x2"]\nlabel = "y"\nsubgroup = "g"\nsha256 = "{sha256 or sha256_file(data)}"\n',
        encoding="utf-8",
    )
    return data, manifest


def _evaluate(tmp_path: Path, data: Path, manifest: Path, model: bytes, evaluation: EvaluationSettings) -> tuple[TaskSpec, Collected[Any]]:
    """One signed evaluation task to the partner's real ClientApp; its reply as the coordinator collects it."""
    key = tmp_path / "coordinator.key"
    Identity.generate().save(key)
    trail = AuditTrail(tmp_path / "coordinator" / "coordinator-trail.jsonl", actor="coordinator")
    audit = CoordinatorAudit.for_study(trail, key, study_id="s")
    trail.append("study_started", study="s")
    grid = InProcessGrid({1: node_config("site", data, manifest, tmp_path / "nodes")})
    spec = TaskSpec(study="s", round=1, study_sha256="0" * 64, evaluation=evaluation,
                    models=[ModelRef(name="m", sha256=sha256_bytes(model), output="probabilities")])
    collected = collect_replies(
        Channel(grid, trail, audit), [1], content=lambda: build_task(spec, {"m": model}), message_type=MESSAGE_TYPE,
        parse=lambda content: parse_reply(content, spec), where={"study": "s", "round": 1},
        task_sha256=spec.sha256(), timeout_s=1.0,
    )
    return spec, collected


def _partner_trail(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "nodes" / "site" / "trail.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_file_of_several_batches_gives_the_node_the_statistics_of_the_loaded_data(tmp_path, model):
    data, manifest = _partner(tmp_path)
    spec, collected = _evaluate(tmp_path, data, manifest, model, EXACT)
    assert not collected.refused, collected.refused
    (reply,) = collected.accepted
    assert reply.info.count == RECORDS
    loaded = evaluate_task(parse_task(build_task(spec, {"m": model})), load_partner_data(data, load_manifest(manifest)))
    streamed = reply.statistics["m"]
    assert streamed.count == RECORDS
    for name, array in loaded["m"].arrays.items():
        np.testing.assert_allclose(streamed[name], array, rtol=1e-12, err_msg=name)


def test_a_hash_mismatch_found_at_the_end_of_the_pass_is_refused_and_nothing_leaves(tmp_path, model):
    data, manifest = _partner(tmp_path, sha256="f" * 64)  # the file is read whole before the hash can disagree
    _, collected = _evaluate(tmp_path, data, manifest, model, PRIVATE)
    assert not collected.accepted
    (refusal,) = collected.refused
    assert refusal["clause"] == "data"
    assert refusal["reason"].startswith("this partner's data could not be loaded as its manifest describes")
    trail = _partner_trail(tmp_path)
    assert [e["kind"] for e in trail if e["kind"] in ("task_accepted", "task_refused", "result_sent", "privacy_spent")] == [
        "task_accepted", "task_refused"]
    # The file, not the model: the study goes on on this node, and no ε was charged for a release that never left.
    assert BudgetLedger.open_existing(tmp_path / "nodes" / "site" / "budget.sqlite").spent(study_id="s") == 0.0
    log = (tmp_path / "nodes" / "site" / "trail.node.log").read_text(encoding="utf-8")
    assert f"does not match the manifest's sha256 {'f' * 64}" in log


def test_the_pre_pass_count_is_checked_again_by_the_pass(tmp_path):
    data, manifest = _partner(tmp_path)
    opened = open_partner_file(data, load_manifest(manifest))
    assert opened.size == RECORDS
    text = data.read_text(encoding="utf-8")
    data.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1], encoding="utf-8")  # one record fewer
    stale = opened.__class__(opened.path, load_manifest(manifest).model_copy(update={"sha256": sha256_file(data)}), RECORDS)
    with pytest.raises(DataFileError, match=rf"{RECORDS - 1} records read, but {RECORDS} were counted before the pass"):
        sum(batch.size for batch in stale.batches())


def test_a_file_that_cannot_be_counted_is_named_as_changed_when_its_hash_differs(tmp_path):
    data, manifest = _partner(tmp_path, sha256="f" * 64)
    data.write_text("x1,x2,y,g\n1,2,0,a\n3,4\n", encoding="utf-8")  # ragged, and not the declared file
    with pytest.raises(DataFileError, match="does not match the manifest"):
        open_partner_file(data, load_manifest(manifest))


def test_reading_the_file_and_calibrating_dp_noise_import_neither_pandas_nor_scipy_optimize(tmp_path):
    # Each message runs in a fresh ClientApp process: these imports were paid on every task (issue 11).
    import subprocess
    import sys

    data, manifest = _partner(tmp_path)
    code = (
        "import sys\n"
        "from federated.client.data import load_manifest, open_partner_file\n"
        "from privacy.release import calibrate_release\n"
        f"opened = open_partner_file({str(data)!r}, load_manifest({str(manifest)!r}))\n"
        "assert sum(b.size for b in opened.batches()) == opened.size\n"
        "calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=7)\n"
        "print(','.join(m for m in ('pandas', 'scipy.optimize', 'scipy.stats') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
