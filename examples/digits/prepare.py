"""Non-IID partners from scikit-learn's digits (8x8 images, 10 classes) for training studies.

Writes, under OUT: `partner-NNN.csv` and a manifest `partner-NNN.toml` per partner (64 pixel
features scaled to [0, 1], label `digit`), and `initial-<architecture>.safetensors` (the
registry model's seeded initial weights). Each partner lacks some classes (2 to 4 of 10)
and partner sizes vary five-fold. With more partners than the data allows without
overlap, records are drawn with replacement (the summary says so).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from accord.hashing import sha256_file
from federated.runtime.simulation import partner_name

SEED = 11
FEATURES = [f"px{i:02d}" for i in range(64)]


def _sizes(partners: int, total: int, rng: np.random.Generator) -> np.ndarray:
    weights = np.geomspace(1.0, 5.0, partners)
    rng.shuffle(weights)
    return np.maximum(8, np.floor(weights / weights.sum() * total)).astype(int)


def _write(out: Path, name: str, x: np.ndarray, y: np.ndarray) -> None:
    data = out / f"{name}.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "digit"])
        for row, label in zip(x, y):
            writer.writerow([*(f"{v:.4g}" for v in row), int(label)])
    manifest = [
        f'dataset_id = "{name}"',
        'description = "Handwritten digits (derived from scikit-learn), non-IID demo partition."',
        "features = [" + ", ".join(f'"{f}"' for f in FEATURES) + "]",
        'label = "digit"',
        f'sha256 = "{sha256_file(data)}"',
        "release_per_partner = true",
    ]
    (out / f"{name}.toml").write_text("\n".join(manifest) + "\n", encoding="utf-8")


def prepare_digits(out: Path, *, partners: int, seed: int = SEED, use_fraction: float = 0.9) -> dict:
    """Write `partners` non-IID partitions under `out`; return a summary (also in summary.json)."""
    rng = np.random.default_rng(seed)
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    out.mkdir(parents=True, exist_ok=True)
    sizes = _sizes(partners, int(len(y) * use_fraction), rng)
    replace = sizes.sum() > len(y)
    pools = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in range(10)}
    summary = {"partners": partners, "with_replacement": bool(replace), "sizes": [], "missing_classes": []}
    for index, size in enumerate(sizes):
        missing = sorted(rng.choice(10, size=int(rng.integers(2, 5)), replace=False).tolist())
        allowed = [c for c in range(10) if c not in missing]
        if replace:
            candidates = np.flatnonzero(np.isin(y, allowed))
            rows = rng.choice(candidates, size=int(size), replace=True)
        else:
            rows = []
            for _ in range(int(size)):
                available = [c for c in allowed if pools[c]]
                if not available:
                    break
                rows.append(pools[int(rng.choice(available))].pop())
            rows = np.array(rows)
        _write(out, partner_name(index), x[rows], y[rows])
        summary["sizes"].append(int(len(rows)))
        summary["missing_classes"].append(missing)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def write_initial_weights(out: Path, *, architecture: str, seed: int = 0) -> Path:
    """The registry model's seeded initial weights, as safetensors."""
    import torch

    from federated.training import create_model, model_arrays, save_safetensors

    torch.manual_seed(seed)
    model = create_model(architecture, num_features=64, num_classes=10)
    path = out / f"initial-{architecture}.safetensors"
    save_safetensors(path, model_arrays(model), metadata={"architecture": architecture, "seed": str(seed)})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo/digits"))
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--architecture", default="cnn")
    args = parser.parse_args()
    summary = prepare_digits(args.out, partners=args.partners)
    write_initial_weights(args.out, architecture=args.architecture)
    print(f"{args.partners} partners under {args.out}/ (sizes {min(summary['sizes'])}–{max(summary['sizes'])})")


if __name__ == "__main__":
    main()
