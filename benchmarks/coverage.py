"""Do the reported intervals cover? Coverage of each metric's 95 % interval, by seeded simulation.

A large synthetic population of scored records (a logistic model: one "moderate" population with AUROC
≈ 0.85 and one "near the edge" with AUROC ≈ 0.995 and accuracy ≈ 0.98) stands for the truth. Each repeat
draws N partners of `records` records each from it, computes each partner's statistics with Accord's own
code, privatizes them when ε is given (`federated.evaluation.dp_release.privatize`, δ = 1e-6), pools them
with the coordinator's `aggregate_round`, and checks whether each interval in the round's `validation`
section covers the population value (accuracy, sensitivity and specificity at the study threshold, and
the binned AUROC; the exact AUROC for the interval widened by the binning bound; the mean Brier score and
log loss, the log loss clipped at the DP loss bound when DP is on, as partners clip it). Target: 0.93–0.97.

    python -m benchmarks.coverage [--repeats 200] [--partners 3 10] [--epsilons none 1 3 10] [--out DIR]

Writes coverage.json and coverage.png under benchmarks/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federated.evaluation.dp_release import privatize
from federated.evaluation.statistics import LOG_LOSS_EPSILON, StatisticsLayout, compute_statistics, score_bin
from federated.messages.common import NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.server.pooling import aggregate_round
from federated.study import EvaluationPrivacy, ValidationSettings

SCORE_BINS = 20
POPULATION = 400_000
METRICS = ("accuracy", "sensitivity", "specificity", "auroc", "brier", "log_loss")


@dataclass(frozen=True)
class Population:
    name: str
    scores: np.ndarray
    labels: np.ndarray

    def truth(self, threshold: float = 0.5, loss_bound: float | None = None) -> dict[str, float]:
        called = self.scores >= threshold
        positive = self.labels == 1
        bins = score_bin(self.scores, SCORE_BINS)
        pos = np.bincount(bins[positive], minlength=SCORE_BINS).astype(float)
        neg = np.bincount(bins[~positive], minlength=SCORE_BINS).astype(float)
        neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
        return {
            "accuracy": float((called == positive).mean()),
            "sensitivity": float(called[positive].mean()),
            "specificity": float((~called[~positive]).mean()),
            "auroc": float((pos * (neg_below + 0.5 * neg)).sum() / (pos.sum() * neg.sum())),
            "brier": float(((self.scores - self.labels) ** 2).mean()),
            "log_loss": float(np.minimum(-np.log(np.clip(np.where(positive, self.scores, 1 - self.scores), LOG_LOSS_EPSILON,
                                                             1 - LOG_LOSS_EPSILON)), loss_bound or np.inf).mean()),
        }


def population(name: str, separation: float, seed: int) -> Population:
    rng = np.random.default_rng(seed)
    labels = (rng.random(POPULATION) < 0.35).astype(np.int64)
    logits = separation * (labels - 0.35) + rng.normal(0, 1, POPULATION) - 0.3
    return Population(name, 1 / (1 + np.exp(-logits)), labels)


def _interval(summary: dict, metric: str) -> dict:
    if metric == "accuracy":
        return summary["accuracy_ci"]
    if metric in ("auroc", "brier", "log_loss"):
        return summary[f"{metric}_ci"]
    return summary["at_study_threshold"][f"{metric}_ci"]


def run_cell(pop: Population, *, partners: int, records: int, epsilon: float | None, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    layout = StatisticsLayout(num_classes=2, score_bins=SCORE_BINS, subgroup_levels=(),
                              loss_bound=10.0 if epsilon is not None else None)
    privacy = EvaluationPrivacy(enabled=True, epsilon=epsilon, delta=1e-6, loss_bound=10.0) if epsilon is not None else None
    truth = pop.truth(loss_bound=layout.loss_bound)
    covered = {metric: 0 for metric in METRICS}
    widths = {metric: [] for metric in METRICS}
    for _ in range(repeats):
        replies = []
        for index in range(partners):
            pick = rng.integers(0, pop.scores.size, records)
            scores = pop.scores[pick]
            stats = {"m": compute_statistics(np.column_stack([1 - scores, scores]), pop.labels[pick], None, layout)}
            noise = None
            if privacy is not None:
                stats, release = privatize(stats, privacy, rng=rng)
                noise = NoiseInfo(**release.as_record())
            replies.append(EvaluationReply(info=PartnerInfo(partner=f"p{index}", status="ok", noise=noise), statistics=stats))
        summary = aggregate_round(1, replies, 10, validation=ValidationSettings()).validation["m"]
        for metric in METRICS:
            interval = _interval(summary, metric)
            low, high = interval["low"], interval["high"]
            covered[metric] += bool(low is not None and low <= truth[metric] <= high)
            widths[metric].append(high - low)
    return {"population": pop.name, "partners": partners, "records_per_partner": records, "epsilon": epsilon,
            "repeats": repeats, "truth": truth,
            "coverage": {m: covered[m] / repeats for m in METRICS},
            "mean_width": {m: float(np.mean(widths[m])) for m in METRICS}}


def plot(cells: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.6), sharey=True)
    for axis, metric in zip(axes, METRICS):
        for key in sorted({(c["population"], c["partners"]) for c in cells}):
            row = [c for c in cells if (c["population"], c["partners"]) == key]
            labels = ["none" if c["epsilon"] is None else f"{c['epsilon']:g}" for c in row]
            axis.plot(labels, [c["coverage"][metric] for c in row], marker="o", label=f"{key[0]}, {key[1]} partners")
        axis.axhspan(0.93, 0.97, color="green", alpha=0.15)
        axis.set(title=metric, xlabel="ε per release (none = no DP)", ylim=(0.5, 1.0))
    axes[0].set_ylabel("coverage of the 95 % interval")
    axes[-1].legend(fontsize="x-small", loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--records", type=int, default=150, help="records per partner")
    parser.add_argument("--partners", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--epsilons", nargs="+", default=["none", "1", "3", "10"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    populations = [population("moderate", 2.0, seed=1), population("near the edge", 5.5, seed=2)]
    cells = []
    for seed, (pop, partners, epsilon) in enumerate(
            (p, n, None if e == "none" else float(e)) for p in populations for n in args.partners for e in args.epsilons):
        cell = run_cell(pop, partners=partners, records=args.records, epsilon=epsilon, repeats=args.repeats, seed=100 + seed)
        cells.append(cell)
        print(f"{pop.name:14s} {partners:3d} partners ε={epsilon}: " +
              ", ".join(f"{m} {cell['coverage'][m]:.3f}" for m in METRICS), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"target": [0.93, 0.97], "nominal": 0.95, "score_bins": SCORE_BINS, "cells": cells,
              "seconds": round(time.monotonic() - started, 1)}
    (args.out / "coverage.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(cells, args.out / "coverage.png")
    return result


if __name__ == "__main__":
    main()
