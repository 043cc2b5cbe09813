"""A regression study at the partner's node (its file, an ONNX regression model) and in the coordinator's
outputs (results.json, report.md with the residual histogram, the evidence pack's model card)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, r2_score

from accord.hashing import sha256_bytes, sha256_file
from federated.audit.evidence.documents import model_card
from federated.client.data import load_manifest
from federated.client.evaluation import evaluate_file
from federated.errors import MessageError
from federated.evaluation.regression import regression_metrics
from federated.messages.common import PartnerInfo
from federated.messages.evaluation import (
    EvaluationReply,
    ModelRef,
    TaskSpec,
    build_task,
    parse_task,
)
from federated.reporting.report import write_outputs
from federated.reporting.results import RoundSummary, StudyResults
from federated.server.pooling import aggregate_round
from federated.study import EvaluationSettings

REGRESSION = EvaluationSettings(task="regression", subgroup_levels=["a", "b"],
                                regression={"residual_edges": [-3, -1, 0, 1, 3], "value_range": [-20, 20]})


def _data(rows: int = 240, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    y = 3 * x[:, 0] - x[:, 1] + rng.normal(0, 0.7, rows) + 2
    return x, y, np.array(["ab"[i % 2] for i in range(rows)])


@pytest.fixture(scope="module")
def onnx_model() -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x, y, _ = _data(seed=9)
    return to_onnx(LinearRegression().fit(x, y), x[:1].astype(np.float32), target_opset=17).SerializeToString()


def _task(model: bytes, evaluation: EvaluationSettings = REGRESSION, output: str = "variable"):
    spec = TaskSpec(study="s", round=1, study_sha256="a" * 64, evaluation=evaluation,
                    models=[ModelRef(name="lin", sha256=sha256_bytes(model), output=output)])
    return parse_task(build_task(spec, {"lin": model}))


def _file(tmp_path: Path, *, label_type: str = "number") -> tuple[Path, Path]:
    x, y, groups = _data()
    data = tmp_path / "d.csv"
    data.write_text("x1,x2,y,g\n" + "".join(f"{float(a)!r},{float(b)!r},{float(t)!r},{g}\n"
                                            for (a, b), t, g in zip(x, y, groups)), encoding="utf-8")
    manifest = tmp_path / "d.toml"
    manifest.write_text(f'dataset_id = "site"\nfeatures = ["x1", "x2"]\nlabel = "y"\nlabel_type = "{label_type}"\n'
                        f'subgroup = "g"\nsha256 = "{sha256_file(data)}"\n', encoding="utf-8")
    return data, manifest


def _onnx_predictions(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(["variable"], {session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1).astype(np.float64)


def test_the_node_sums_a_regression_models_errors_over_its_file(tmp_path, onnx_model):
    data, manifest = _file(tmp_path)
    stats = evaluate_file(_task(onnx_model), data, load_manifest(manifest))["lin"]
    x, y, _ = _data()
    predictions = _onnx_predictions(onnx_model, x)
    metrics = regression_metrics(stats)  # type: ignore[arg-type]
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, predictions), rel=1e-12)
    assert metrics["r2"] == pytest.approx(r2_score(y, predictions), rel=1e-12)


def test_a_classification_study_refuses_data_whose_labels_are_numbers(tmp_path, onnx_model):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y, _ = _data()
    classifier = to_onnx(LogisticRegression().fit(x, (y > 2).astype(int)), x[:1].astype(np.float32),
                         options={"zipmap": False}, target_opset=17).SerializeToString()
    data, manifest = _file(tmp_path)
    with pytest.raises(MessageError, match='label_type = "number"'):
        evaluate_file(_task(classifier, EvaluationSettings(subgroup_levels=["a", "b"]), "probabilities"), data,
                      load_manifest(manifest))


def test_a_classifiers_probabilities_are_not_read_as_regression_numbers(tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from federated.errors import DataError

    x, y, _ = _data()
    classifier = to_onnx(LogisticRegression().fit(x, (y > 2).astype(int)), x[:1].astype(np.float32),
                         options={"zipmap": False}, target_opset=17).SerializeToString()
    data, manifest = _file(tmp_path)
    with pytest.raises(DataError, match=r"expected \[n\] or \[n, 1\]"):
        evaluate_file(_task(classifier, output="probabilities"), data, load_manifest(manifest))


def test_report_results_and_model_card_show_the_regression_metrics(tmp_path, onnx_model):
    data, manifest = _file(tmp_path)
    stats = evaluate_file(_task(onnx_model), data, load_manifest(manifest))
    reply = EvaluationReply(info=PartnerInfo(partner="site", status="ok", release_per_partner=True), statistics=stats)
    outcome = aggregate_round(1, [reply], calibration_bins=10)
    results = StudyResults(study="s", task="regression", status="completed", trail="trail.jsonl",
                           models=[{"name": "lin", "sha256": "0" * 64, "path": "lin.onnx"}],
                           rounds=[RoundSummary.of(outcome.summary() | {"contributors": ["site"]})])
    out = tmp_path / "output" / "s"
    hashes = write_outputs(out, results, outcome.pooled_statistics, 10)
    assert {"results.json", "report.md", "residuals-lin.png"} <= set(hashes)
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert document["task"] == "regression"
    entry = document["rounds"][0]
    assert entry["validation"]["lin"]["rmse_ci"]["method"] == "delta (MSE)"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Regression — lin" in report and "| MAE |" in report and "Residual histogram" in report
    assert "![residuals lin](residuals-lin.png)" in report and "## Pooled metrics" not in report
    card = model_card({"name": "lin", "sha256": "0" * 64, "output": "variable"}, document, {})
    assert "| count | mae | rmse | r2 |" in card and "Per partner (MAE / RMSE)" in card
    assert f"{entry['pooled']['lin']['mae']:.4f}" in card and "AUROC" not in card

    from starlette.testclient import TestClient

    from federated.dashboard import Sources, coordinator_app

    page = TestClient(coordinator_app(Sources(tmp_path / "output")), base_url="http://127.0.0.1:8050").get("/study/s")
    assert page.status_code == 200
    assert 'data-metric="mae"' in page.text and "Model × partner matrix (MAE / RMSE)" in page.text


def test_client_init_writes_a_number_label_manifest_whose_data_loads(tmp_path):
    from federated.client.check import model_fit
    from federated.client.data import load_partner_data
    from federated.client.init import manifest_for, read_columns

    data, _ = _file(tmp_path)
    manifest = manifest_for(data, read_columns(data), label="y", subgroup="g", dataset_id="site", label_type="number")
    assert manifest["label_type"] == "number" and manifest["features"] == ["x1", "x2"]
    assert "label_type" not in manifest_for(data, read_columns(data), label="y", subgroup="g", dataset_id="site")
    path = tmp_path / "m.toml"
    import tomli_w

    path.write_text(tomli_w.dumps(manifest), encoding="utf-8")
    loaded = load_partner_data(data, load_manifest(path))
    assert loaded.labels.dtype == np.float64 and loaded.labels == pytest.approx(_data()[1])
    with pytest.raises(Exception, match="--label-type 'numbers'"):
        manifest_for(data, read_columns(data), label="y", subgroup=None, dataset_id="site", label_type="numbers")
    study = type("S", (), {"training": None, "models": [], "evaluation": EvaluationSettings()})()
    (verdict,) = model_fit(study, load_manifest(path))  # type: ignore[arg-type]
    assert not verdict.ok and "label_type" in verdict.detail
