"""Three hospitals' data and two candidate models, from scikit-learn's breast-cancer set.

Writes, under OUT (default `demo/`):
- `data/hospital-{a,b,c}.csv` with a manifest each (`.toml`): different sizes and label
  balance per hospital, a synthetic sensitive attribute `age_band` for subgroup metrics;
- `models/logreg.onnx` and `models/mlp.onnx`, trained on a held-out public slice that no
  hospital holds, exported with skl2onnx (output `probabilities`, no ZipMap).

- `output/coordinator.key` (+ `.pub`): the demo coordinator's Ed25519 key, made once, where
  `python -m federated.server` looks by default (the study's output_dir; each run writes under `output/runs/`);
- `data/hospital-{a,b,c}.contract.toml`: each hospital's data contract, naming that key as
  the only allowed coordinator. hospital-a allows evaluation and training without DP
  (`allow_exact_statistics`, so its default `[disclosure]` control applies to those releases);
  hospital-b allows evaluation only, with DP at ε ≤ 2 per release; hospital-c allows both, also
  without DP under disclosure control, but forbids per-partner release.

Label `malignant` is 1 for a malignant tumour (the positive class). Deterministic (seeded),
except the coordinator key.
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import date
from pathlib import Path

import numpy as np
import tomli_w
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from accord.hashing import sha256_file
from federated.audit.keys import load_or_create_identity

SEED = 7
# (name, malignant records, benign records, per-partner results released?)
HOSPITALS = (("hospital-a", 90, 110, True), ("hospital-b", 39, 91, True), ("hospital-c", 18, 62, False))
AGE_LEVELS = ("under_50", "50_plus")


def _column_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _write_hospital(out: Path, name: str, features: list[str], x: np.ndarray, y: np.ndarray, age: np.ndarray, release: bool) -> None:
    data_path = out / "data" / f"{name}.csv"
    with open(data_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*features, "malignant", "age_band"])
        for row, label, band in zip(x, y, age):
            writer.writerow([*(f"{v:.6g}" for v in row), int(label), band])
    manifest = [
        f'dataset_id = "{name}"',
        f'description = "Breast-cancer records of {name} (demo data derived from scikit-learn)."',
        "features = [" + ", ".join(f'"{f}"' for f in features) + "]",
        'label = "malignant"',
        'subgroup = "age_band"',
        f'sha256 = "{sha256_file(data_path)}"',
        f"release_per_partner = {'true' if release else 'false'}",
    ]
    (out / "data" / f"{name}.toml").write_text("\n".join(manifest) + "\n", encoding="utf-8")


# (purposes, require DP, max ε per release) per hospital; hospital-c's release flag is in HOSPITALS.
CONTRACT_TERMS = {
    "hospital-a": (["evaluation", "training"], False, None),
    "hospital-b": (["evaluation"], True, 2.0),
    "hospital-c": (["evaluation", "training"], False, None),
}


def _write_contract(out: Path, name: str, release: bool, coordinator_fingerprint: str) -> None:
    purposes, require_dp, max_epsilon = CONTRACT_TERMS[name]
    # Without DP the contract must say so in so many words; its default [disclosure] control then applies.
    protections = {"require_dp": require_dp, "allow_exact_statistics": not require_dp, "require_encryption": False}
    if max_epsilon is not None:
        protections["max_epsilon_per_release"] = max_epsilon
    document = {
        "dataset_id": name,
        "data_sha256": sha256_file(out / "data" / f"{name}.csv"),
        "licence": "accord-demo-research-1.0",
        "provenance": f"{name}: breast-cancer records derived from scikit-learn's bundled dataset (demo)",
        "sensitivity": "special_category",
        "jurisdictions": ["EU"],
        "legal_bases": ["consent", "public_interest"],
        "consent_scope": "evaluation and improvement of diagnostic models",
        "allowed_purposes": purposes,
        "allowed_coordinators": [coordinator_fingerprint],
        "release_per_partner": release,
        "protections": protections,
        "budget": {"max_epsilon_per_study": 10.0, "max_epsilon_total": 50.0},
        "min_cohort": 2,
        "retention_days": 365,
        "expires": date(2030, 12, 31),
    }
    (out / "data" / f"{name}.contract.toml").write_text(tomli_w.dumps(document), encoding="utf-8")


def _export(model: object, sample: np.ndarray, path: Path) -> None:
    onnx_model = to_onnx(model, sample[:1].astype(np.float32), options={"zipmap": False}, target_opset=17)
    path.write_bytes(onnx_model.SerializeToString())


COORDINATOR_KEY = Path("output") / "coordinator.key"  # under OUT: the default --key of configs/demo-evaluation.toml


def prepare(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    dataset = load_breast_cancer()
    features = [_column_name(n) for n in dataset.feature_names]
    x, y = dataset.data, 1 - dataset.target  # sklearn: 0 = malignant; Accord: 1 = malignant
    x_pool, x_public, y_pool, y_public = train_test_split(x, y, test_size=0.25, stratify=y, random_state=SEED)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    malignant, benign = list(rng.permutation(np.flatnonzero(y_pool == 1))), list(rng.permutation(np.flatnonzero(y_pool == 0)))
    for name, n_malignant, n_benign, release in HOSPITALS:
        rows = np.array([malignant.pop() for _ in range(n_malignant)] + [benign.pop() for _ in range(n_benign)])
        rows = rng.permutation(rows)
        # Older patients are more often malignant here, so subgroup rates differ.
        older = rng.random(rows.size) < np.where(y_pool[rows] == 1, 0.65, 0.4)
        _write_hospital(out, name, features, x_pool[rows], y_pool[rows], np.where(older, AGE_LEVELS[1], AGE_LEVELS[0]), release)
    coordinator, _ = load_or_create_identity(out / COORDINATOR_KEY)
    for name, _, _, release in HOSPITALS:
        _write_contract(out, name, release, coordinator.fingerprint)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)).fit(x_public, y_public)
    mlp = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=3000, random_state=SEED)
    ).fit(x_public, y_public)
    _export(logreg, x_public, out / "models" / "logreg.onnx")
    _export(mlp, x_public, out / "models" / "mlp.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output directory (default: demo/)")
    args = parser.parse_args()
    prepare(args.out)
    print(f"demo data and models written under {args.out}/")


if __name__ == "__main__":
    main()
