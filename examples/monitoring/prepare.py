"""A monitoring study's world: three sites, four data snapshots each, one deployed model, from scikit-learn.

Writes, under OUT (default `demo/monitoring/`):
- `data/site-{a,b,c}.csv` (the file each site's contract governs) and `data/site-X.snapshot-P.csv` for
  periods P = 1..4, declared in each site's manifest (`data/site-X.toml`, `[[snapshots]]`) with their own
  SHA-256. Each snapshot is a fresh sample (with replacement) of the site's own records. site-a and
  site-b stay stable; at site-c the labels drift: a growing share of them is flipped from one snapshot to
  the next (0 %, 15 %, 30 %, 45 %), as if the population or the labelling changed under the deployed model;
- `models/deployed.onnx`: the deployed model (logistic regression on a held-out public slice);
- `data/site-X.contract.toml`: purpose "monitoring" only, DP required (ε ≤ 4 per period), snapshots allowed,
  at most 6 periods per study;
- `output/coordinator.key` (+ `.pub`) and `study.toml`: the monitoring study (one period per snapshot,
  baseline = the first period, thresholds on accuracy, AUROC, prevalence and calibration-in-the-large; alerts
  to `output/alerts.jsonl`). No threshold on ECE: at ε = 4 a site's period is too small for its DP ECE to be
  estimable (the report says "not estimable"), so it would never be compared; calibration-in-the-large is.

Deterministic (seeded), except the coordinator key.
"""

from __future__ import annotations

import argparse
import csv
from datetime import date
from pathlib import Path

import numpy as np
import tomli_w
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from accord.hashing import sha256_file
from federated.audit.keys import load_or_create_identity

SEED = 11
SITES = ("site-a", "site-b", "site-c")
DEGRADING = "site-c"
PERIODS = 4
RECORDS_PER_SNAPSHOT = 300
LABEL_FLIPS = (0.0, 0.15, 0.30, 0.45)  # share of site-c's labels flipped in snapshot 1..4
EPSILON_PER_PERIOD = 4.0
COORDINATOR_KEY = Path("output") / "coordinator.key"
STUDY_ID = "monitoring-example"


def _write_csv(path: Path, features: list[str], x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*features, "malignant"])
        for row, label in zip(x, y):
            writer.writerow([*(f"{v:.6g}" for v in row), int(label)])


def _write_contract(out: Path, name: str, fingerprint: str) -> None:
    document = {
        "dataset_id": name, "data_sha256": sha256_file(out / "data" / f"{name}.csv"),
        "licence": "accord-demo-research-1.0",
        "provenance": f"{name}: breast-cancer records derived from scikit-learn's bundled dataset (monitoring example)",
        "sensitivity": "special_category", "jurisdictions": ["EU"], "legal_bases": ["public_interest"],
        "allowed_purposes": ["monitoring"], "allowed_coordinators": [fingerprint], "release_per_partner": True,
        "protections": {"require_dp": True, "max_epsilon_per_release": EPSILON_PER_PERIOD},
        "monitoring": {"max_epsilon_per_period": EPSILON_PER_PERIOD, "max_periods": 6, "allow_snapshots": True},
        "budget": {"max_epsilon_per_study": 40.0, "max_epsilon_total": 100.0},
        "min_cohort": 2, "retention_days": 365, "expires": date(2030, 12, 31),
    }
    (out / "data" / f"{name}.contract.toml").write_text(tomli_w.dumps(document), encoding="utf-8")


def study_document(out: Path) -> dict[str, object]:
    """The monitoring study (written to OUT/study.toml; paths relative to it)."""
    return {
        "id": STUDY_ID, "purpose": "monitoring", "title": "Deployed breast-cancer classifier: drift at three sites",
        "min_cohort": 2, "round_timeout_s": 120, "cohort_timeout_s": 180, "expected_partners": list(SITES),
        "output_dir": "output",
        "models": [{"name": "deployed", "path": "models/deployed.onnx"}],
        "evaluation": {"metrics": ["accuracy", "recall", "auroc", "ece"], "num_classes": 2, "positive_class": 1,
                       "threshold": 0.5, "score_bins": 10, "calibration_bins": 10,
                       "privacy": {"enabled": True, "epsilon": EPSILON_PER_PERIOD, "delta": 1e-6, "loss_bound": 10.0}},
        "governance": {"controller": "Accord monitoring example", "jurisdiction": "EU", "legal_basis": "public_interest",
                       "accepted_licences": ["accord-demo-research-1.0"], "retention_days": 180},
        "monitoring": {
            "schedule": "snapshots", "periods": PERIODS, "baseline": "first_period", "alert_file": "output/alerts.jsonl",
            "thresholds": {"accuracy": {"max_drop": 0.1, "alpha": 0.001}, "auroc": {"max_drop": 0.1, "alpha": 0.001},
                           "prevalence": {"max_drop": 0.15, "alpha": 0.001},
                           "calibration_in_the_large": {"max_drop": 0.15, "alpha": 0.001}},
        },
    }


def prepare(out: Path) -> Path:
    """Write everything under `out`; returns the study file."""
    rng = np.random.default_rng(SEED)
    dataset = load_breast_cancer()
    features = [f"f{i:02d}" for i in range(dataset.data.shape[1])]
    x, y = dataset.data, 1 - dataset.target  # Accord: 1 = malignant
    x_pool, x_public, y_pool, y_public = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SEED)
    for folder in ("data", "models", "output"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    sites = np.array_split(rng.permutation(len(y_pool)), len(SITES))
    for name, rows in zip(SITES, sites):
        _write_csv(out / "data" / f"{name}.csv", features, x_pool[rows], y_pool[rows])
        snapshots = []
        for period in range(1, PERIODS + 1):
            sample = rng.choice(rows, size=RECORDS_PER_SNAPSHOT, replace=True)
            labels = y_pool[sample].copy()
            if name == DEGRADING:
                flip = rng.random(labels.size) < LABEL_FLIPS[period - 1]
                labels[flip] = 1 - labels[flip]
            path = out / "data" / f"{name}.snapshot-{period}.csv"
            _write_csv(path, features, x_pool[sample], labels)
            snapshots.append({"number": period, "path": path.name, "sha256": sha256_file(path),
                              "declared": f"2026-{period:02d}-01"})
        manifest = {"dataset_id": name, "description": f"{name}'s records (monitoring example)", "features": features,
                    "label": "malignant", "sha256": sha256_file(out / "data" / f"{name}.csv"), "release_per_partner": True,
                    "snapshots": snapshots}
        (out / "data" / f"{name}.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")
    coordinator, _ = load_or_create_identity(out / COORDINATOR_KEY)
    for name in SITES:
        _write_contract(out, name, coordinator.fingerprint)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)).fit(x_public, y_public)
    onnx_model = to_onnx(model, x_public[:1].astype(np.float32), options={"zipmap": False}, target_opset=17)
    (out / "models" / "deployed.onnx").write_bytes(onnx_model.SerializeToString())
    study = out / "study.toml"
    study.write_text(tomli_w.dumps(study_document(out)), encoding="utf-8")
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo") / "monitoring", help="output folder (default: demo/monitoring/)")
    args = parser.parse_args()
    print(f"monitoring example written under {args.out}/ (study: {prepare(args.out)})")


if __name__ == "__main__":
    main()
