"""What a privacy budget costs: utility of DP evaluation and DP-SGD training against ε, and RDP vs PRV.

Run from the repository root (opacus ships a top-level `benchmarks` package of its own, so the
module must be found here first): `python -m benchmarks.privacy_budget [--quick] [--skip-training]`.

1. **DP evaluation** (in-process, Accord's own code, no Flower): the three demo hospitals' records
   (`examples.hospitals.prepare`, 410 breast-cancer records) scored by the demo logistic-regression
   ONNX model, split at random into N ∈ {3, 10, 100} partners of near-equal size. Every repeat, each
   partner privatizes its statistics (`federated.evaluation.dp_release.privatize`, the study's default
   δ = 1e-6 and loss bound) and the coordinator's `aggregate_round` sums, estimates standard errors
   and clamps, exactly as in a study. Against the non-private pooled metric of the same layout:
   mean absolute error, bias, RMSE, the spread of the DP metric, the mean reported standard error
   and how often ±1.96·SE covers the truth; as a diagnostic, the error of the same noisy sums
   without the coordinator's clamping. The records are fixed, so N partners add √N times one
   partner's noise. A second sweep varies the score histogram's bins (AUROC's resolution). A third
   is issue 13's setting: 10 partners of 500 records (synthetic scores, exact AUROC ≈ 0.92, no
   subgroups), ε ∈ {1, 3} per release, 10–100 bins: the median |AUROC error| against the exact
   (unbinned) AUROC, coverage of ±1.96·SE, and how often the ECE is not estimable at that ε.
2. **DP-SGD training** (Flower's simulation engine, `examples.digits.run_simulation.run`): the
   digits study (CNN, 10 non-IID partners) at a few noise multipliers. Per run: ε per partner of the
   DP-SGD releases composed over the rounds (PRV and RDP, at the study's δ), the totals the study's
   privacy report states (they include DP evaluation releases when the study has them, composed at
   the summed δ), the pooled accuracy the study reports (DP-noised when its evaluation is private)
   and the exact accuracy of every global model on all partners' records, from the saved weights.
   One run per σ: DP-SGD's noise is not seeded, so a rerun moves the accuracies a little.
3. **Accountants**: ε from RDP and from PRV for the same (q, σ, steps) over realistic configurations,
   the σ with which PRV reports the ε that RDP reports at the configuration's σ, and the per-partner
   ε of part 2's runs under both.
4. **Local vs distributed noise under encryption** (`benchmarks.distributed_noise`, also runnable alone):
   issue 13's 10 partners of 500 records at ε ∈ {1, 3}, each partner adding the full local noise or a share
   σ²/t (t = 5, the default ⌈n/2⌉, and t = 10), the encrypted sum simulated as the plain sum of the same
   noisy statistics: median |AUROC error|, coverage, and the ε each partner's own share gives alone.

Writes `benchmarks/results/privacy_budget.json`, `.md` (tables) and three PNG plots
(`benchmarks.privacy_budget_report`). Default: 200 repeats, σ ∈ {0.5, 0.7, 1, 2} × 3 rounds.
`--quick` (40 repeats, σ ∈ {0.7, 2} × 2 rounds) took 7.4 minutes on 2 shared cores (9.6 under a load
average of 14), about 4.5 of them the two simulations; `--skip-training` leaves part 2 out.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from accord.cli import App
from benchmarks.distributed_noise import distributed_benchmark, distributed_markdown
from benchmarks.privacy_budget_report import markdown, plot
from federated.evaluation.dp_release import calibrate, privatize
from federated.evaluation.metrics import compute_metrics
from federated.evaluation.statistics import (
    EvaluationStatistics,
    StatisticsLayout,
    compute_statistics,
)
from federated.messages.common import NoiseInfo, PartnerInfo
from federated.messages.evaluation import EvaluationReply
from federated.server.pooling import aggregate_round
from federated.study import EvaluationPrivacy
from privacy import PrivacyAccount, epsilon, noise_multiplier

RESULTS = Path(__file__).parent / "results"
EPSILONS = (0.1, 0.3, 1.0, 3.0, 10.0)
PARTNERS = (3, 10, 100)
SCORE_BINS = 100  # main sweep; the demo study uses 1000, see the bins sweep
BINS_SWEEP = (10, 100, 1000)
BINS_SWEEP_PARTNERS = 10
CALIBRATION_BINS = 10
SPLIT_SEED = 4
METRICS = ("accuracy", "auroc", "ece")
MODEL = "logreg"
SUBGROUPS = ("under_50", "50_plus")
ISSUE_PARTNERS, ISSUE_RECORDS = 10, 500  # issue 13: "at ε = 1 per release with 10 partners of 500 records"
ISSUE_EPSILONS = (1.0, 3.0)
ISSUE_BINS = (10, 20, 50, 100)
ISSUE_SEED = 11
EXACT_BINS = 10_000  # AUROC on this many bins stands for the exact (per-record) AUROC
TRAINING_PARTNERS = 10
TRAINING_DELTA = 1e-5  # configs/digits-training.toml
# (name, sample rate q, noise multiplier σ, steps): typical DP-SGD runs at δ = 1e-5
ACCOUNTANT_CONFIGS = (
    ("digits partner: n≈160, batch 32, 2 epochs × 3 rounds", 0.2, 1.0, 30),
    ("small clinic: n=1,000, batch 50, 20 epochs", 0.05, 1.0, 400),
    ("hospital: n=10,000, batch 64, 10 epochs", 0.0064, 1.0, 1563),
    ("MNIST-scale: n=60,000, batch 256, 60 epochs", 256 / 60000, 1.1, 14063),
    ("high noise: n=100,000, batch 1,000, 20 epochs", 0.01, 2.0, 2000),
    ("10 DP evaluation releases at ε=1, δ=1e-6 each", 1.0, None, 10),
)


@dataclass(frozen=True)
class Scores:
    """Every record's predicted probabilities, label and subgroup: the evaluation set."""

    probabilities: np.ndarray
    labels: np.ndarray
    subgroups: np.ndarray


def hospital_scores(work: Path) -> Scores:
    """The demo hospitals' records, scored by the demo logistic regression (as partners do)."""
    from examples.hospitals.prepare import HOSPITALS, prepare
    from federated.client.data import load_manifest, load_partner_data
    from federated.evaluation.onnx_model import predict_probabilities

    prepare(work)
    model = (work / "models" / f"{MODEL}.onnx").read_bytes()
    parts = [
        load_partner_data(work / "data" / f"{name}.csv", load_manifest(work / "data" / f"{name}.toml"))
        for name, *_ in HOSPITALS
    ]
    features = np.concatenate([part.features for part in parts])
    return Scores(
        predict_probabilities(MODEL, model, "probabilities", features),
        np.concatenate([part.labels for part in parts]),
        np.concatenate([part.subgroups for part in parts]),
    )


def layout_for(score_bins: int, privacy: EvaluationPrivacy) -> StatisticsLayout:
    """The demo study's layout (binary, age-band subgroups) with `score_bins` and DP's loss bound."""
    return StatisticsLayout(
        num_classes=2, score_bins=score_bins, subgroup_levels=SUBGROUPS, loss_bound=privacy.loss_bound
    )


def partner_statistics(
    scores: Scores, layout: StatisticsLayout, partners: int, rng: np.random.Generator
) -> list[EvaluationStatistics]:
    """A random split of the records into `partners` near-equal parts, summarised per part."""
    rows = np.array_split(rng.permutation(scores.labels.size), partners)
    return [
        compute_statistics(scores.probabilities[r], scores.labels[r], scores.subgroups[r], layout) for r in rows
    ]


def private_round(
    parts: list[EvaluationStatistics], privacy: EvaluationPrivacy, rng: np.random.Generator
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One DP evaluation round: every partner privatizes, the coordinator pools.

    Returns the coordinator's metrics, their standard errors, and (a diagnostic, not what Accord
    reports) the metrics of the same noisy sums without clamping, clipped to [0, 1].
    """
    replies = []
    for index, stats in enumerate(parts):
        noisy, release = privatize({MODEL: stats}, privacy, rng=rng)
        info = PartnerInfo(partner=f"partner-{index:03d}", status="ok", noise=NoiseInfo(**release.as_record()))
        replies.append(EvaluationReply(info=info, statistics=noisy))
    outcome = aggregate_round(1, replies, CALIBRATION_BINS)
    raw = compute_metrics(EvaluationStatistics.total([reply.statistics[MODEL] for reply in replies]), CALIBRATION_BINS)
    unclamped = {name: float(np.clip(raw[name], 0.0, 1.0)) for name in METRICS}
    return outcome.pooled[MODEL], outcome.standard_errors[MODEL], unclamped


def error_summary(values: list[float], truth: float, errors: list[float] | None = None) -> dict[str, float]:
    """Error of DP estimates of one metric against the non-private truth; with `errors` (the reported
    standard errors), also whether they are honest: their mean against the observed spread, and coverage."""
    value = np.asarray(values)
    se = np.asarray(errors) if errors is not None else np.zeros_like(value)
    ok = np.isfinite(value) & np.isfinite(se)
    diff = value[ok] - truth
    if not ok.any():  # e.g. the ECE, not estimable at this ε in every repeat
        nan = float("nan")
        summary = {"truth": truth, "mae": nan, "bias": nan, "rmse": nan, "undefined": int(value.size)}
        return summary | ({"spread": nan, "mean_se": nan, "se_to_spread": nan, "coverage_95": nan} if errors is not None else {})
    summary = {
        "truth": truth,
        "mae": float(np.mean(np.abs(diff))),
        "bias": float(np.mean(diff)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "undefined": int((~ok).sum()),
    }
    if errors is not None:
        spread = float(np.std(value[ok], ddof=1)) if ok.sum() > 1 else float("nan")
        summary.update(
            spread=spread,
            mean_se=float(np.mean(se[ok])),
            se_to_spread=float(np.mean(se[ok]) / spread) if spread > 0 else float("nan"),
            coverage_95=float(np.mean(np.abs(diff) <= 1.96 * se[ok])),
        )
    return summary


def evaluation_cell(
    scores: Scores, *, partners: int, eps: float, score_bins: int, repeats: int, seed: int
) -> dict[str, Any]:
    """Error of pooled accuracy and AUROC for one (partners, ε, bins) setting, over `repeats` rounds."""
    privacy = EvaluationPrivacy(enabled=True, epsilon=eps)
    layout = layout_for(score_bins, privacy)
    # the split depends on the number of partners only, so every ε sees the same partners
    parts = partner_statistics(scores, layout, partners, np.random.default_rng([SPLIT_SEED, partners]))
    rng = np.random.default_rng(seed)
    truth = compute_metrics(EvaluationStatistics.total(parts), CALIBRATION_BINS)
    draws: dict[str, tuple[list[float], list[float], list[float]]] = {m: ([], [], []) for m in METRICS}
    for _ in range(repeats):
        metrics, errors, unclamped = private_round(parts, privacy, rng)
        for name in METRICS:
            draws[name][0].append(metrics[name])
            draws[name][1].append(errors[name])
            draws[name][2].append(unclamped[name])
    return {
        "partners": partners,
        "records_per_partner": [min(p.count for p in parts), max(p.count for p in parts)],
        "epsilon": eps,
        "delta": privacy.delta,
        "score_bins": score_bins,
        "noise_std_per_count": calibrate(layout, privacy, 1).sigma,  # each partner, each count
        "auroc_binning_bound": truth["auroc_bound"],
        "repeats": repeats,
        **{name: error_summary(draws[name][0], truth[name], draws[name][1]) for name in METRICS},
        "unclamped": {name: error_summary(draws[name][2], truth[name]) for name in METRICS},
    }


def synthetic_scores(records: int, seed: int) -> Scores:
    """Balanced labels, positive-class score N(0.3 + 0.4·label, 0.2) clipped to [0, 1] (exact AUROC ≈ 0.92)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, records)
    score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0.0, 1.0)
    return Scores(np.column_stack([1 - score, score]), labels, np.full(records, SUBGROUPS[0]))


def issue_cell(scores: Scores, *, eps: float, score_bins: int, repeats: int, seed: int) -> dict[str, Any]:
    """Issue 13's setting for one (ε, bins): consecutive partners of ISSUE_RECORDS records, each privatizing."""
    privacy = EvaluationPrivacy(enabled=True, epsilon=eps)
    rows = np.array_split(np.arange(scores.labels.size), ISSUE_PARTNERS)

    def summed(bins: int) -> list[EvaluationStatistics]:
        layout = StatisticsLayout(num_classes=2, score_bins=bins, subgroup_levels=(), loss_bound=privacy.loss_bound)
        return [compute_statistics(scores.probabilities[r], scores.labels[r], None, layout) for r in rows]

    parts = summed(score_bins)
    exact = compute_metrics(EvaluationStatistics.total(summed(EXACT_BINS)), CALIBRATION_BINS)
    binned = compute_metrics(EvaluationStatistics.total(parts), CALIBRATION_BINS)
    rng = np.random.default_rng(seed)
    draws: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in METRICS}
    for _ in range(repeats):
        metrics, errors, _ = private_round(parts, privacy, rng)
        for name in METRICS:
            draws[name][0].append(metrics[name])
            draws[name][1].append(errors[name])
    auroc, auroc_se = np.asarray(draws["auroc"][0]), np.asarray(draws["auroc"][1])
    return {
        "partners": ISSUE_PARTNERS, "records_per_partner": ISSUE_RECORDS, "epsilon": eps, "delta": privacy.delta,
        "score_bins": score_bins, "repeats": repeats,
        "noise_std_per_count": calibrate(parts[0].layout, privacy, 1).sigma,
        "exact_auroc": exact["auroc"], "binned_auroc": binned["auroc"],
        "auroc_median_abs_error": float(np.nanmedian(np.abs(auroc - exact["auroc"]))),
        "auroc_p90_abs_error": float(np.nanquantile(np.abs(auroc - exact["auroc"]), 0.9)),
        "auroc_coverage_binned": float(np.mean(np.abs(auroc - binned["auroc"]) <= 1.96 * auroc_se)),
        **{name: error_summary(draws[name][0], exact[name], draws[name][1]) for name in METRICS},
    }


def issue_benchmark(repeats: int) -> dict[str, Any]:
    scores = synthetic_scores(ISSUE_PARTNERS * ISSUE_RECORDS, ISSUE_SEED)
    cells = []
    for index, (eps, score_bins) in enumerate((e, b) for e in ISSUE_EPSILONS for b in ISSUE_BINS):
        cells.append(issue_cell(scores, eps=eps, score_bins=score_bins, repeats=repeats, seed=2000 + index))
        _progress("issue setting", cells[-1])
    return {"partners": ISSUE_PARTNERS, "records_per_partner": ISSUE_RECORDS, "cells": cells}


def evaluation_benchmark(repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="accord-privacy-budget-") as work:
        scores = hospital_scores(Path(work))
    grid, bins = [], []
    for index, (partners, eps) in enumerate((p, e) for p in PARTNERS for e in EPSILONS):
        grid.append(evaluation_cell(scores, partners=partners, eps=eps, score_bins=SCORE_BINS, repeats=repeats, seed=index))
        _progress("evaluation", grid[-1])
    for index, (score_bins, eps) in enumerate((b, e) for b in BINS_SWEEP for e in EPSILONS):
        done = [c for c in grid if (c["partners"], c["score_bins"], c["epsilon"]) == (BINS_SWEEP_PARTNERS, score_bins, eps)]
        bins.append(done[0] if done else evaluation_cell(
            scores, partners=BINS_SWEEP_PARTNERS, eps=eps, score_bins=score_bins, repeats=repeats, seed=1000 + index
        ))
        _progress("bins", bins[-1])
    return {
        "records": int(scores.labels.size), "model": MODEL, "metrics": list(METRICS), "partners": list(PARTNERS),
        "score_bins": SCORE_BINS, "bins_sweep_partners": BINS_SWEEP_PARTNERS, "grid": grid, "bins_sweep": bins,
    }


def _progress(part: str, cell: dict[str, Any]) -> None:
    typer.echo(
        f"{part}: N={cell['partners']:<3} ε={cell['epsilon']:<4} bins={cell['score_bins']:<4} "
        f"accuracy MAE={cell['accuracy']['mae']:.4f} (SE {cell['accuracy']['mean_se']:.4f}) "
        f"AUROC MAE={cell['auroc']['mae']:.4f} (SE {cell['auroc']['mean_se']:.4f})",
        err=True,
    )


def composed_epsilon(segments: list[tuple[float, float, int]], accountant: str, delta: float) -> float:
    """ε at `delta` of DP-SGD segments (σ, q, steps) composed by one accountant."""
    account = PrivacyAccount(accountant=accountant)
    for sigma, q, steps in segments:
        account.add_dpsgd(noise_multiplier=sigma, sample_rate=q, steps=steps)
    return account.epsilon(delta=delta)


def exact_accuracy(weights: Path, data: Path) -> float:
    """Accuracy of saved global weights on every partner's records (the researcher holds them all)."""
    import torch

    from federated.client.data import load_manifest, load_partner_data
    from federated.training import create_model, load_arrays, load_safetensors

    arrays, metadata = load_safetensors(weights)
    model = create_model(metadata["architecture"], num_features=64, num_classes=10)
    load_arrays(model, arrays)
    model.eval()
    correct = total = 0
    for manifest in sorted(data.glob("partner-*.toml")):
        part = load_partner_data(manifest.with_suffix(".csv"), load_manifest(manifest))
        with torch.no_grad():
            predicted = model(torch.as_tensor(part.features, dtype=torch.float32)).argmax(dim=1).numpy()
        correct += int((predicted == part.labels).sum())
        total += part.size
    return correct / total


@contextlib.contextmanager
def output_to(log: Path):
    """Send this process's (and its children's) stdout and stderr to `log` for the duration."""
    saved = [os.dup(1), os.dup(2)]
    with open(log, "wb") as handle:
        try:
            for fd in (1, 2):
                os.dup2(handle.fileno(), fd)
            yield
        finally:
            for fd, original in zip((1, 2), saved):
                os.dup2(original, fd)
                os.close(original)


def training_run(sigma: float, rounds: int) -> dict[str, Any]:
    """One digits training study under the simulation engine at noise multiplier σ."""
    from examples.digits.run_simulation import run

    work = Path(tempfile.mkdtemp(prefix=f"accord-privacy-budget-sigma{sigma}-"))
    started = time.monotonic()
    with output_to(work / "simulation.log"):
        code = run(TRAINING_PARTNERS, work, rounds=rounds, overrides={"noise_multiplier": str(sigma)})
    entry: dict[str, Any] = {"noise_multiplier": sigma, "rounds": rounds, "exit_code": code,
                             "wall_s": round(time.monotonic() - started, 1)}
    if code != 0 or not (work / "output" / "latest" / "results.json").exists():
        entry.update(work_dir=str(work), log_tail=(work / "simulation.log").read_text(errors="replace")[-3000:])
        return entry
    entry.update(training_summary(work))
    shutil.rmtree(work, ignore_errors=True)
    return entry


def training_summary(work: Path) -> dict[str, Any]:
    """ε per partner (DP-SGD releases composed, and the report's totals) and accuracy of one finished run."""
    results = json.loads((work / "output" / "latest" / "results.json").read_text(encoding="utf-8"))
    study = tomllib.loads((work / "study.toml").read_text(encoding="utf-8"))
    partners = {}
    for partner, report in results.get("privacy", {}).items():
        dpsgd = [r for r in report["releases"] if "steps" in r]
        segments = [(r["noise_multiplier"], r["sample_rate"], r["steps"]) for r in dpsgd]
        partners[partner] = {
            "segments": segments,
            "dpsgd_prv": composed_epsilon(segments, "prv", TRAINING_DELTA),
            "dpsgd_rdp": composed_epsilon(segments, "rdp", TRAINING_DELTA),
            "dpsgd_basic": sum(r["epsilon"] for r in dpsgd),
            "report_basic": report["basic_composition"],
            "report_prv": report["prv_composition"],
            "evaluation_releases": sum("sigma" in r for r in report["releases"]),
        }
    final = results["final_evaluation"]
    summary: dict[str, Any] = {
        "study_privacy": {"training": study["training"]["privacy"], "evaluation": study["evaluation"].get("privacy")},
        "partners": partners,
        "reported_accuracy": final["pooled"]["global"]["accuracy"],
        "reported_accuracy_se": final.get("standard_errors", {}).get("global", {}).get("accuracy"),
        # per global model, round 0 (initial) to the final one: what the study reported (DP-noised when
        # its evaluation is private) and the exact accuracy of the saved weights
        "reported_accuracy_per_model": [r["pooled"].get("global", {}).get("accuracy") for r in [*results["rounds"], final]],
        "exact_accuracy_per_model": [exact_accuracy(Path(model["file"]), work / "data") for model in results["lineage"]],
    }
    summary["exact_accuracy"] = summary["exact_accuracy_per_model"][-1]
    for key in ("dpsgd_prv", "dpsgd_rdp"):
        values = [p[key] for p in partners.values()]
        summary[f"{key}_min_median_max"] = [min(values), float(np.median(values)), max(values)]
    return summary


def training_benchmark(sigmas: tuple[float, ...], rounds: int) -> dict[str, Any]:
    runs = []
    for sigma in sigmas:
        runs.append(training_run(sigma, rounds))
        run = runs[-1]
        typer.echo(
            f"training: σ={sigma} exit={run['exit_code']} {run['wall_s']} s "
            f"ε(PRV) median={run.get('dpsgd_prv_min_median_max', [None] * 3)[1]} "
            f"exact accuracy={run.get('exact_accuracy')} reported={run.get('reported_accuracy')}",
            err=True,
        )
    return {"partners": TRAINING_PARTNERS, "delta": TRAINING_DELTA, "runs": runs}


def accountant_benchmark() -> dict[str, Any]:
    """RDP vs PRV for the same (q, σ, steps), and the σ each needs for the same budget."""
    from privacy.release import calibrate_release

    rows = []
    for name, q, sigma, steps in ACCOUNTANT_CONFIGS:
        if sigma is None:  # σ per unit sensitivity of one DP evaluation release
            release = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=9)
            sigma = release.sigma / release.l2_sensitivity
        eps = {acc: epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=TRAINING_DELTA, accountant=acc)
               for acc in ("prv", "rdp")}
        sigma_prv = noise_multiplier(target_epsilon=eps["rdp"], sample_rate=q, steps=steps, delta=TRAINING_DELTA)
        rows.append({
            "configuration": name, "sample_rate": q, "noise_multiplier": sigma, "steps": steps,
            "delta": TRAINING_DELTA, "epsilon_prv": eps["prv"], "epsilon_rdp": eps["rdp"],
            "rdp_over_prv": eps["rdp"] / eps["prv"], "budget_saved": 1 - eps["prv"] / eps["rdp"],
            "prv_sigma_for_rdp_epsilon": sigma_prv, "sigma_ratio": sigma_prv / sigma,
        })
        typer.echo(f"accountants: {name}: RDP/PRV = {rows[-1]['rdp_over_prv']:.3f}", err=True)
    return {"configurations": rows}


def training_accountants(training: dict[str, Any]) -> list[dict[str, Any]]:
    """Per training run of part 2: RDP/PRV of each partner's composed DP-SGD ε."""
    rows = []
    for run in training.get("runs", []):
        ratios = [p["dpsgd_rdp"] / p["dpsgd_prv"] for p in run.get("partners", {}).values()]
        if ratios:
            rows.append({"noise_multiplier": run["noise_multiplier"], "rounds": run["rounds"],
                         "rdp_over_prv_min_median_max": [min(ratios), float(np.median(ratios)), max(ratios)]})
    return rows


app = App()  # accord.cli: the conventions of every Accord CLI


@app.command()
def main(
    quick: Annotated[bool, typer.Option(help="Fewer repeats, two noise multipliers, two rounds.")] = False,
    skip_training: Annotated[bool, typer.Option(help="Leave out the DP-SGD simulation (part 2).")] = False,
    repeats: Annotated[int | None, typer.Option(help="DP evaluation repeats per cell (default 200, quick 40).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON, Markdown and plots go.")] = RESULTS,
) -> None:
    """Utility of DP evaluation and DP-SGD against ε, and what the PRV accountant saves over RDP."""
    started = time.monotonic()
    flags = [flag for flag, on in (("--quick", quick), ("--skip-training", skip_training), (f"--repeats {repeats}", repeats)) if on]
    repeats = repeats or (40 if quick else 200)
    sigmas, rounds = ((0.7, 2.0), 2) if quick else ((0.5, 0.7, 1.0, 2.0), 3)
    result: dict[str, Any] = {
        "benchmark": "privacy_budget",
        "command": " ".join(["python -m benchmarks.privacy_budget", *flags]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), CPU only",
        "settings": {"repeats": repeats, "noise_multipliers": None if skip_training else list(sigmas), "rounds": rounds},
        "evaluation": evaluation_benchmark(repeats),
        "issue_setting": issue_benchmark(repeats),
        "distributed_noise": distributed_benchmark(repeats),  # part 4: local vs distributed noise under encryption
        "training": None if skip_training else training_benchmark(sigmas, rounds),
    }
    result["accountants"] = accountant_benchmark()
    result["accountants"]["training_runs"] = training_accountants(result["training"] or {})
    result["total_s"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "privacy_budget.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "privacy_budget.md").write_text(markdown(result) + "\n" + distributed_markdown(result["distributed_noise"]),
                                               encoding="utf-8")
    paths = plot(result, out_dir)
    typer.echo(f"wrote {out_dir / 'privacy_budget.json'}, {out_dir / 'privacy_budget.md'}, " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    app()
