"""Per-epoch time of DP-SGD (each Opacus grad-sample mode) against non-private training, on digits.

Run from the repository root: `python -m benchmarks.dp_training [--quick]`. For each registry model
(logistic regression, MLP, CNN, and a wider MLP) it builds one `privacy.dp_sgd.LocalTrainer` per configuration —
non-private, then DP-SGD with grad_sample_mode hooks, ew, functorch, ghost — on scikit-learn's digits
(1797 × 64, batch 256, so 8 steps an epoch), and times single epochs alternated in one run
(non-private, hooks, ew, ... repeated) so that load from other processes hits every configuration
alike. torch is pinned to one thread, as partners run it. A mode that fails for a model is skipped
and the reason recorded. The JSON (benchmarks/results/dp_training.json) holds per-epoch medians,
ratios DP / non-private, the mode `grad_sample_mode="auto"` picks, and whether the target (≤ 2×) is met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from federated.training import create_model
from privacy.dp_sgd import DPSGDSettings, LocalTrainer, auto_grad_sample_mode

# (label, registry name, options); "mlp_wide" shows how the modes scale with layer width
MODELS: tuple[tuple[str, str, dict], ...] = (
    ("logistic_regression", "logistic_regression", {}),
    ("mlp", "mlp", {}),
    ("mlp_wide", "mlp", {"hidden": (256, 128)}),
    ("cnn", "cnn", {}),
)
MODES = ("hooks", "ew", "functorch", "ghost")
BATCH_SIZE = 256
TARGET_RATIO = 2.0
OUTPUT = Path(__file__).parent / "results" / "dp_training.json"


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return (features / 16.0).astype(np.float32), labels.astype(np.int64)


def measure_model(
    architecture: str, options: dict, features: np.ndarray, labels: np.ndarray, *, rounds: int
) -> dict:
    """Alternated per-epoch timings of every configuration for one model."""
    torch.manual_seed(0)
    model = create_model(architecture, num_features=features.shape[1], num_classes=10, **options)
    trainers: dict[str, LocalTrainer] = {}
    skipped: dict[str, str] = {}
    for name in ("non_private", *MODES):
        dp = None
        if name != "non_private":
            dp = DPSGDSettings(max_grad_norm=1.0, delta=1e-5, noise_multiplier=1.0, grad_sample_mode=name)
        try:
            trainer = LocalTrainer(model, features, labels, batch_size=BATCH_SIZE, learning_rate=0.1, dp=dp)
            trainer.run_epoch()  # warm-up; also where an unsupported mode fails
        except Exception as error:  # record any failure of a mode and go on with the others
            skipped[name] = f"{type(error).__name__}: {error}"
            continue
        trainers[name] = trainer
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.run_epoch()
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    baseline = medians.get("non_private")
    ratios = {name: medians[name] / baseline for name in medians if name != "non_private" and baseline}
    steps = len(trainers["non_private"].loader) if "non_private" in trainers else None
    # extra milliseconds each DP step costs: on small models this fixed cost is what sets the ratio
    overhead = {name: (medians[name] - baseline) / steps * 1e3 for name in ratios if steps}
    auto = auto_grad_sample_mode(model)
    fastest = min(ratios, key=ratios.__getitem__) if ratios else None
    return {
        "architecture": architecture,
        "options": options,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps_per_epoch": steps,
        "median_epoch_seconds": medians,
        "min_epoch_seconds": {name: min(values) for name, values in seconds.items()},
        "ratio_to_non_private": ratios,
        "dp_overhead_ms_per_step": overhead,
        "skipped": skipped,
        "auto_mode": auto,
        "fastest_mode": fastest,
        "auto_ratio": ratios.get(auto),
        "target_ratio": TARGET_RATIO,
        "target_met": ratios.get(auto, float("inf")) <= TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line, measure, write the JSON and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (well under 2 minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="alternated epochs per configuration")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    labels_known = [label for label, _, _ in MODELS]
    parser.add_argument("--models", nargs="+", choices=labels_known, default=labels_known, help="what to measure")
    args = parser.parse_args(argv)
    rounds = args.rounds or (10 if args.quick else 60)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = _run(args, rounds)
    finally:
        torch.set_num_threads(threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output} ({report['wall_seconds']:.0f} s)")
    return report


def _run(args: argparse.Namespace, rounds: int) -> dict:
    """Measure the selected models one after another; the report without writing it."""
    features, labels = load_digits_data()
    started = time.perf_counter()
    load_before = os.getloadavg()
    models = {}
    for label, architecture, options in (m for m in MODELS if m[0] in args.models):
        models[label] = row = measure_model(architecture, options, features, labels, rounds=rounds)
        ratios = ", ".join(f"{m} {r:.2f}x" for m, r in row["ratio_to_non_private"].items())
        baseline_ms = row["median_epoch_seconds"].get("non_private", float("nan")) * 1e3
        print(
            f"{label}: non-private {baseline_ms:.1f} ms/epoch;"
            f" DP/non-private {ratios}; auto={row['auto_mode']} (fastest {row['fastest_mode']});"
            f" target ≤{TARGET_RATIO:g}x {'met' if row['target_met'] else 'NOT met'}"
        )
    return {
        "benchmark": "dp_training",
        "dataset": {"name": "sklearn digits", "examples": int(len(labels)), "features": int(features.shape[1])},
        "batch_size": BATCH_SIZE,
        "rounds": rounds,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        "dp": {"max_grad_norm": 1.0, "noise_multiplier": 1.0, "poisson_sampling": True},
        "environment": {
            "torch": torch.__version__,
            "opacus": __import__("opacus").__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "wall_seconds": time.perf_counter() - started,
        "models": models,
    }


if __name__ == "__main__":
    main()
