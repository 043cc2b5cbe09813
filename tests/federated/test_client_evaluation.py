"""A partner's evaluation over its data file: per-batch sums equal the sums over the loaded data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.hashing import sha256_bytes, sha256_file
from federated.client.data import load_manifest, load_partner_data, scan_partner_data
from federated.client.evaluation import evaluate_batches, evaluate_file, evaluate_task
from federated.errors import DataError, MessageError
from federated.messages.evaluation import ModelRef, TaskSpec, build_task, parse_task
from federated.study import EvaluationSettings

RECORDS = 300


def _model() -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    model = LogisticRegression().fit(x, (x[:, 0] + rng.normal(size=200) > 0).astype(int))
    return to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False}, target_opset=17).SerializeToString()


@pytest.fixture(scope="module")
def task():
    model = _model()
    spec = TaskSpec(
        study="s", round=1, study_sha256="a" * 64,
        models=[ModelRef(name="m", sha256=sha256_bytes(model), output="probabilities")],
        evaluation=EvaluationSettings(score_bins=10, calibration_bins=5, subgroup_levels=["a", "b"]),
    )
    return parse_task(build_task(spec, {"m": model}))


def _csv(rows: int, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    lines = [f"{float(a)!r},{float(b)!r},{int(a > 0)},{'ab'[i % 2]}" for i, (a, b) in enumerate(x)]
    return "x1,x2,y,g\n" + "\n".join(lines) + "\n"


def _dataset(tmp_path: Path, text: str) -> tuple[Path, Path]:
    data = tmp_path / "d.csv"
    data.write_text(text, encoding="utf-8")
    manifest = tmp_path / "d.toml"
    manifest.write_text(
        f'dataset_id = "site"\nfeatures = ["x1", "x2"]\nlabel = "y"\nsubgroup = "g"\nsha256 = "{sha256_file(data)}"\n',
        encoding="utf-8",
    )
    return data, manifest


def test_sums_over_batches_equal_sums_over_the_loaded_data(tmp_path, task):
    data, manifest = _dataset(tmp_path, _csv(RECORDS))
    streamed = evaluate_batches(task, scan_partner_data(data, load_manifest(manifest), batch_records=64), num_features=2)
    loaded = evaluate_task(task, load_partner_data(data, load_manifest(manifest)))
    assert streamed["m"].count == RECORDS
    for name, array in loaded["m"].arrays.items():
        np.testing.assert_allclose(streamed["m"][name], array, rtol=1e-12, err_msg=name)


def test_evaluating_a_file_reads_it_once_and_checks_its_hash(tmp_path, task):
    data, manifest = _dataset(tmp_path, _csv(RECORDS))
    assert evaluate_file(task, data, load_manifest(manifest))["m"].count == RECORDS
    data.write_text(_csv(RECORDS, seed=2), encoding="utf-8")
    with pytest.raises(DataError, match="does not match the manifest"):
        evaluate_file(task, data, load_manifest(manifest))


def test_a_batch_that_fails_on_a_changed_file_is_reported_as_the_changed_file(tmp_path, task):
    data, manifest = _dataset(tmp_path, _csv(RECORDS))
    data.write_text(_csv(RECORDS).replace(",b\n", ",z\n"), encoding="utf-8")  # unknown subgroup, and a new hash
    with pytest.raises(DataError, match="does not match the manifest"):
        evaluate_batches(task, scan_partner_data(data, load_manifest(manifest), batch_records=64), num_features=2)


def test_a_batch_that_fails_on_the_declared_file_raises_its_own_error(tmp_path, task):
    data, manifest = _dataset(tmp_path, _csv(RECORDS).replace(",b\n", ",z\n"))
    with pytest.raises(MessageError, match=r"subgroup values \['z'\]"):
        evaluate_file(task, data, load_manifest(manifest))
