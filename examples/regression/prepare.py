"""Three partners' data and two regression models, from scikit-learn's diabetes set.

Writes, under OUT (default `demo/regression/`):
- `data/clinic-{a,b,c}.csv` with a manifest each (`.toml`, `label_type = "number"`): unequal sizes, the
  outcome `progression` (disease progression one year after baseline, 25–346) and the subgroup `sex`
  (`sex_1`/`sex_2`, the dataset's own coding);
- `models/linear.onnx` (ridge regression) and `models/boosted.onnx` (gradient-boosted trees), trained
  on a held-out public slice that no partner holds, exported with skl2onnx (output `variable`, [n, 1]);
- `pooled-truth.json`: the three partners' records concatenated, and scikit-learn's MAE, RMSE and R² of
  each model on them: what the federation's pooled result must equal.

Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from accord.hashing import sha256_file

SEED = 3
PARTNERS = (("clinic-a", 130), ("clinic-b", 100), ("clinic-c", 70))
PUBLIC = 142  # records only the model developer saw
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
OUTPUT = "variable"


def _sex_levels(sex: np.ndarray) -> np.ndarray:
    """The dataset's scaled sex column back to its two codes (the lower value is code 1)."""
    return np.where(sex <= sex.min() + 1e-9, "sex_1", "sex_2")


def _write_partner(out: Path, name: str, x: np.ndarray, y: np.ndarray) -> None:
    data_path = out / "data" / f"{name}.csv"
    with open(data_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "progression", "sex_group"])
        for row, outcome, group in zip(x, y, _sex_levels(x[:, 1])):
            writer.writerow([*(repr(float(v)) for v in row), repr(float(outcome)), group])
    manifest = [
        f'dataset_id = "{name}"',
        f'description = "Diabetes progression records of {name} (demo data derived from scikit-learn)."',
        "features = [" + ", ".join(f'"{f}"' for f in FEATURES) + "]",
        'label = "progression"',
        'label_type = "number"',
        'subgroup = "sex_group"',
        f'sha256 = "{sha256_file(data_path)}"',
        "release_per_partner = true",
    ]
    (out / "data" / f"{name}.toml").write_text("\n".join(manifest) + "\n", encoding="utf-8")


def _export(model: object, sample: np.ndarray, path: Path) -> None:
    onnx_model = to_onnx(model, sample[:1].astype(np.float32), target_opset=17)
    path.write_bytes(onnx_model.SerializeToString())


def prepare(out: Path) -> dict[str, dict[str, float]]:
    """Write data, manifests, models and the pooled truth under `out`; return the truth per model."""
    rng = np.random.default_rng(SEED)
    x, y = load_diabetes(return_X_y=True)
    order = rng.permutation(y.size)
    public, held = order[:PUBLIC], order[PUBLIC:]
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    start, rows = 0, []
    for name, size in PARTNERS:
        part = held[start:start + size]
        start += size
        rows.append(part)
        _write_partner(out, name, x[part], y[part])
    models = {
        "linear": Ridge(alpha=0.1).fit(x[public], y[public]),
        "boosted": GradientBoostingRegressor(n_estimators=60, max_depth=2, learning_rate=0.1, random_state=SEED)
        .fit(x[public], y[public]),
    }
    pooled = np.concatenate(rows)
    # What the partners' models see: float32 features, as the node reads its CSV and runs the ONNX model.
    features = x[pooled].astype(np.float32)
    truth = {}
    for name, model in models.items():
        _export(model, x[public], out / "models" / f"{name}.onnx")
        import onnxruntime as ort

        options = ort.SessionOptions()  # as the node runs it (one thread: tree ensembles sum in one order)
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        session = ort.InferenceSession((out / "models" / f"{name}.onnx").read_bytes(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        predictions = session.run([OUTPUT], {session.get_inputs()[0].name: features})[0].reshape(-1).astype(np.float64)
        outcomes = y[pooled]
        truth[name] = {"count": float(outcomes.size), "mae": mean_absolute_error(outcomes, predictions),
                       "rmse": float(np.sqrt(mean_squared_error(outcomes, predictions))), "r2": r2_score(outcomes, predictions)}
    (out / "pooled-truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo") / "regression", help="output directory (default: demo/regression/)")
    args = parser.parse_args()
    prepare(args.out)
    print(f"regression demo data and models written under {args.out}/")


if __name__ == "__main__":
    main()
