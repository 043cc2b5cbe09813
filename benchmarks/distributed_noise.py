"""Local vs distributed noise under encryption: what a DP evaluation's AUROC gains when partners add shares.

Run from the repository root: `python -m benchmarks.distributed_noise [--repeats N]` (also part 4 of
`python -m benchmarks.privacy_budget`). Issue 13's setting: 10 partners of 500 records each (synthetic
scores: balanced labels, positive-class score N(0.3 + 0.4·label, 0.2) clipped to [0, 1], exact AUROC ≈ 0.92,
no subgroups), one model, ε = 1 (and 3) per release, δ = 1e-6, score bins 10–50. Per repeat, every partner
privatizes its statistics with the product's own function (`federated.evaluation.dp_release.privatize`):

- **local**: the full noise N(0, σ²) each (what every partner adds without encryption, or without opting in);
- **distributed, t = ⌈n/2⌉ = 5** (the default: an honest majority) and **t = n = 10** (every contributor
  honest: exactly one central release): a share N(0, σ²/t) each (`privatize(..., honest_required=t)`).

The coordinator pools as in an encrypted round: `aggregate_round(..., decrypted=sum)`, the decrypted sum being
the plain sum of the partners' noisy statistics. The encryption itself is SIMULATED (not run): the BFV
bundle carries these sums exactly up to 2^-32 rounding per partner (`federated.messages.he_codec`), and
`tests/he/test_he_distributed_noise.py` runs the real encrypted path with the same functions. The noise
variance the coordinator uses for standard errors is the sum of the σ² the partners report (n·σ²/t).

Reported per (noise, ε, bins): the median and 90th percentile of |AUROC − exact AUROC| (the exact AUROC
is computed from 10,000 bins), the same against the binned AUROC (the noise's part alone), the coverage
of ±1.96·SE around the binned AUROC, the ε each partner's own share gives alone, and the summed noise's
standard deviation per cell. Targets (issue 13, ε = 1): median |error| ≤ 0.05 local, ≤ 0.02 distributed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from accord.cli import App
from federated.evaluation.dp_release import calibrate, privatize
from federated.evaluation.metrics import compute_metrics
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)
from federated.messages.common import DistributedNoise, NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.server.pooling import aggregate_round
from federated.study import EvaluationPrivacy

RESULTS = Path(__file__).parent / "results"
PARTNERS, RECORDS = 10, 500
EPSILONS = (1.0, 3.0)
BINS = (10, 20, 50)
CALIBRATION_BINS = 10
EXACT_BINS = 10_000
SEED = 13
MODEL = "model"
# (label, t): t = 1 is local noise; ⌈n/2⌉ the study's default; n the best case (one central release)
NOISE = (("local", 1), ("distributed t=5 (default, ⌈n/2⌉)", 5), ("distributed t=10 (all honest)", 10))


def synthetic_parts(bins: int, *, loss_bound: float, seed: int = SEED) -> list[EvaluationStatistics]:
    """PARTNERS consecutive partners of RECORDS records each, summarised with `bins` score bins."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, PARTNERS * RECORDS)
    score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0.0, 1.0)
    layout = StatisticsLayout(num_classes=2, score_bins=bins, subgroup_levels=(), loss_bound=loss_bound)
    probabilities = np.column_stack([1 - score, score])
    return [compute_statistics(probabilities[r], labels[r], None, layout)
            for r in np.array_split(np.arange(labels.size), PARTNERS)]


def noise_record(statistics: EvaluationStatistics, privacy: EvaluationPrivacy, t: int) -> NoiseInfo:
    """What a partner reports of its noise (as `federated.client.tasks` does): the share's σ and both ε."""
    central = calibrate(statistics.layout, privacy, 1)
    if t == 1:
        return NoiseInfo.model_validate(central.as_record())
    from privacy.release import noise_share

    share = noise_share(central, honest_required=t)
    return NoiseInfo(epsilon=privacy.epsilon, delta=share.delta, l2_sensitivity=share.l2_sensitivity, sigma=share.sigma,
                     distributed=DistributedNoise(honest_required=t, cohort=PARTNERS, central_sigma=central.sigma,
                                                  share_epsilon=share.epsilon))


def encrypted_round(parts: list[EvaluationStatistics], privacy: EvaluationPrivacy, t: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """One round: each partner privatizes (a share when t > 1), the coordinator pools the (simulated) decrypted sum."""
    replies, noisy_parts = [], []
    for index, stats in enumerate(parts):
        noisy = (privatize({MODEL: stats}, privacy, rng=rng, honest_required=t) if t > 1
                 else privatize({MODEL: stats}, privacy, rng=rng))[0][MODEL]
        noisy_parts.append(noisy)
        info = PartnerInfo(partner=f"partner-{index:03d}", status="ok", noise=noise_record(stats, privacy, t))
        replies.append(EvaluationReply(info=info, statistics={}))
    decrypted: dict[str, Any] = {MODEL: EvaluationStatistics.total(noisy_parts)}
    outcome = aggregate_round(1, replies, CALIBRATION_BINS, decrypted=decrypted)
    return outcome.pooled[MODEL]["auroc"], outcome.standard_errors[MODEL]["auroc"]


def cell(*, label: str, t: int, eps: float, bins: int, repeats: int, seed: int) -> dict[str, Any]:
    privacy = EvaluationPrivacy(enabled=True, epsilon=eps, noise="distributed" if t > 1 else "local")
    parts = synthetic_parts(bins, loss_bound=privacy.loss_bound)
    exact = compute_metrics(EvaluationStatistics.total(synthetic_parts(EXACT_BINS, loss_bound=privacy.loss_bound)),
                            CALIBRATION_BINS)["auroc"]
    binned = compute_metrics(EvaluationStatistics.total(parts), CALIBRATION_BINS)["auroc"]
    rng = np.random.default_rng(seed)
    draws = np.array([encrypted_round(parts, privacy, t, rng) for _ in range(repeats)])
    auroc, se = draws[:, 0], draws[:, 1]
    record = noise_record(parts[0], privacy, t)
    return {
        "noise": label, "honest_required": t, "partners": PARTNERS, "records_per_partner": RECORDS, "epsilon": eps,
        "delta": privacy.delta, "score_bins": bins, "repeats": repeats, "exact_auroc": exact, "binned_auroc": binned,
        "median_abs_error": float(np.nanmedian(np.abs(auroc - exact))),
        "p90_abs_error": float(np.nanquantile(np.abs(auroc - exact), 0.9)),
        "median_abs_error_vs_binned": float(np.nanmedian(np.abs(auroc - binned))),
        "coverage_95_vs_binned": float(np.mean(np.abs(auroc - binned) <= 1.96 * se)),
        "share_epsilon": record.distributed.share_epsilon if record.distributed else eps,
        "summed_noise_sd_per_cell": math.sqrt(PARTNERS) * record.sigma,
    }


def distributed_benchmark(repeats: int) -> dict[str, Any]:
    cells = []
    for index, (eps, bins, (label, t)) in enumerate((e, b, n) for e in EPSILONS for b in BINS for n in NOISE):
        cells.append(cell(label=label, t=t, eps=eps, bins=bins, repeats=repeats, seed=3000 + index))
        entry = cells[-1]
        typer.echo(f"distributed noise: {label:<34} ε={eps:<3} bins={bins:<3} median |AUROC error| "
                   f"{entry['median_abs_error']:.4f} (vs binned {entry['median_abs_error_vs_binned']:.4f}), "
                   f"coverage {entry['coverage_95_vs_binned']:.2f}, share ε {entry['share_epsilon']:.3g}", err=True)
    best = {label: min((c for c in cells if c["noise"] == label and c["epsilon"] == 1.0), key=lambda c: c["median_abs_error"])
            for label, _ in NOISE}
    return {"partners": PARTNERS, "records_per_partner": RECORDS, "simulated_encryption": True, "cells": cells,
            "best_at_epsilon_1": {label: {k: c[k] for k in ("score_bins", "median_abs_error", "share_epsilon")}
                                  for label, c in best.items()},
            "targets_at_epsilon_1": {"local": 0.05, "distributed": 0.02}}


def distributed_markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown section (its columns say what they are)."""
    lines = [
        "## Local vs distributed noise under encryption", "",
        (f"{result['partners']} partners of {result['records_per_partner']} records, one model, δ = 1e-6. Each partner "
         "privatizes with the product's `privatize` (a share σ²/t when distributed); the encryption is simulated (the "
         "decrypted sum is the plain sum of the noisy statistics, as the BFV bundle carries it up to 2^-32 per partner). "
         "Errors are against the exact AUROC (10,000 bins); 'vs binned' isolates the noise; coverage: ±1.96·SE "
         "around the binned AUROC. 'ε alone': what each partner's own share gives if the other contributors collude "
         "(the release's ε holds while t are honest)."), "",
        ("| noise | ε per release | score bins | median \\|AUROC error\\| | 90th pct \\|error\\| | median \\|error\\| vs binned | "
         "coverage of ±1.96·SE | ε alone (own share) | summed noise SD per cell |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in result["cells"]:
        lines.append(f"| {c['noise']} | {c['epsilon']:g} | {c['score_bins']} | {c['median_abs_error']:.4f} | "
                     f"{c['p90_abs_error']:.4f} | {c['median_abs_error_vs_binned']:.4f} | {c['coverage_95_vs_binned']:.2f} | "
                     f"{c['share_epsilon']:.3g} | {c['summed_noise_sd_per_cell']:.2f} |")
    return "\n".join(lines) + "\n"


app = App()


@app.command()
def main(
    repeats: Annotated[int, typer.Option(help="Rounds per cell.")] = 200,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON and Markdown go.")] = RESULTS,
) -> None:
    """Median AUROC error with local noise and with distributed noise (shares under encryption)."""
    started = time.monotonic()
    result = {"benchmark": "distributed_noise", "command": f"python -m benchmarks.distributed_noise --repeats {repeats}",
              **distributed_benchmark(repeats)}
    result["total_s"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "distributed_noise.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "distributed_noise.md").write_text(distributed_markdown(result), encoding="utf-8")
    typer.echo(f"wrote {out_dir / 'distributed_noise.json'}, {out_dir / 'distributed_noise.md'}")


if __name__ == "__main__":
    app()
