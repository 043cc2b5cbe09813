"""Regression models evaluated by a real federation: three clinics and a coordinator on 127.0.0.1.

    python -m examples.regression.run_regression [--dp EPSILON]

Prepares the clinics' data and the two ONNX models (`examples.regression.prepare`), starts
`python -m federated.server` (which starts the SuperLink) with `configs/regression-evaluation.toml`,
then three `python -m federated.client` nodes, waits for the study and stops the nodes. Prints the pooled
MAE, RMSE and R² of each model beside scikit-learn's on the concatenated records (exact without DP;
with `--dp` the study runs with the partners' Gaussian noise at that ε per round). Exits with the
coordinator's exit code, or 1 when an exact result differs from scikit-learn's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from examples.regression.prepare import PARTNERS, prepare
from federated.local.localhost import LocalFederation, Partner

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "configs" / "regression-evaluation.toml"
TOLERANCE = 1e-9  # relative: exact sums, float64 rounding only


def study_file(out: Path, *, epsilon: float | None) -> Path:
    """The shipped study, copied into `out` with its paths pointing there (and DP on at `epsilon`, if given)."""
    text = STUDY.read_text(encoding="utf-8").replace('"../demo/regression/', f'"{out.resolve()}/')
    name = "regression-evaluation"
    if epsilon is not None:
        text = re.sub(r"enabled = false\nepsilon = [0-9.]+", f"enabled = true\nepsilon = {epsilon!r}", text)
        text = text.replace('/output"', '/output-dp"').replace(f'id = "{name}"', f'id = "{name}-dp"')
        name += "-dp"
    copy = out / f"{name}.toml"
    copy.write_text(text, encoding="utf-8")
    return copy


def run(out: Path, *, epsilon: float | None = None, timeout_s: float = 600) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Run the study over three local nodes; (exit code, results.json, scikit-learn's truth)."""
    shutil.rmtree(out / "nodes", ignore_errors=True)  # fresh nodes: a node never serves a sealed study id again
    truth = prepare(out)  # creates `out`
    study = study_file(out, epsilon=epsilon)
    federation = LocalFederation(workdir=out / "nodes")
    try:
        federation.start_coordinator(study, log=out / "nodes" / "coordinator.log")
        for name, _ in PARTNERS:
            federation.start_partner(Partner(name, out / "data" / f"{name}.csv", out / "data" / f"{name}.toml"))
        assert federation.coordinator is not None
        code = federation.coordinator.wait(timeout=timeout_s)
    finally:
        federation.stop()
    output = out / "output" if epsilon is None else out / "output-dp"
    latest = output / "latest"
    results_path = (latest if latest.exists() else output) / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    return code, results, truth


def compare(results: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """One line per model and metric: pooled, scikit-learn, relative difference."""
    final = results["rounds"][-1]
    lines = []
    for model, expected in truth.items():
        pooled = final["pooled"][model]
        for metric in ("mae", "rmse", "r2"):
            difference = abs(pooled[metric] - expected[metric]) / abs(expected[metric])
            lines.append(f"{model:8s} {metric:5s} pooled {pooled[metric]:.6f}  scikit-learn {expected[metric]:.6f}  "
                         f"relative difference {difference:.1e}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dp", type=float, default=None, metavar="EPSILON", help="run with DP at this ε per round")
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "regression")
    args = parser.parse_args()
    code, results, truth = run(args.out, epsilon=args.dp)
    if code != 0 or not results:
        print(f"the study failed (exit code {code}); see {args.out / 'nodes'}", file=sys.stderr)
        return code or 1
    for line in compare(results, truth):
        print(line)
    print(f"report: {args.out / ('output' if args.dp is None else 'output-dp') / 'latest' / 'report.md'}")
    if args.dp is None:
        final = results["rounds"][-1]["pooled"]
        exact = all(abs(final[m][k] - v[k]) <= TOLERANCE * abs(v[k]) for m, v in truth.items() for k in ("mae", "rmse", "r2"))
        return 0 if exact else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
