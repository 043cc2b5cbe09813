"""The regression example as a real federation: pooled MAE, RMSE and R² equal scikit-learn's on the
partners' records concatenated, and the report, results and the coordinator's trail show them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from examples.regression.prepare import FEATURES, PARTNERS
from examples.regression.run_regression import TOLERANCE, run

pytestmark = pytest.mark.timeout(600)


def _concatenated(out):
    """Every partner's records as the partners hold them (CSV), concatenated."""
    rows = [np.genfromtxt(out / "data" / f"{name}.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
            for name, _ in PARTNERS]
    table = np.concatenate(rows)
    return np.column_stack([table[f] for f in FEATURES]).astype(np.float32), table["progression"].astype(np.float64)


def _predict(out, model: str, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession((out / "models" / f"{model}.onnx").read_bytes(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    return session.run(["variable"], {session.get_inputs()[0].name: features})[0].reshape(-1).astype(np.float64)


def test_the_regression_example_pools_errors_equal_to_scikit_learn_on_the_concatenated_data(tmp_path):
    code, results, _ = run(tmp_path)
    assert code == 0, (tmp_path / "nodes" / "coordinator.log").read_text(encoding="utf-8")[-3000:]
    assert results["task"] == "regression" and results["status"] == "completed"
    final = results["rounds"][-1]
    assert sorted(final["contributors"]) == sorted(name for name, _ in PARTNERS)
    features, outcomes = _concatenated(tmp_path)
    for model in ("linear", "boosted"):
        predictions = _predict(tmp_path, model, features)
        pooled = final["pooled"][model]
        assert pooled["count"] == outcomes.size
        assert pooled["mae"] == pytest.approx(mean_absolute_error(outcomes, predictions), rel=TOLERANCE)
        assert pooled["rmse"] == pytest.approx(math.sqrt(mean_squared_error(outcomes, predictions)), rel=TOLERANCE)
        assert pooled["r2"] == pytest.approx(r2_score(outcomes, predictions), rel=TOLERANCE)
        interval = final["validation"][model]["mae_ci"]
        assert interval["low"] < pooled["mae"] < interval["high"]
    report = (tmp_path / "output" / "latest" / "report.md").read_text(encoding="utf-8")
    assert "## Regression — linear" in report and "## Regression — boosted" in report
    assert (tmp_path / "output" / "latest" / "residuals-linear.png").is_file()
