"""How tight and how honest is Accord's ε? The full grid against Google dp_accounting's PLD.

`python -m benchmarks.privacy_accounting_grid [--out FILE] [--accountant prv|rdp]` computes, for
every q ∈ {0.001, 0.01, 0.1, 1}, σ ∈ {0.6, 1, 2, 5}, steps ∈ {1, 10, 100, 1000} at δ = 1e-5,
Accord's ε (`privacy.epsilon`) and dp_accounting's PLD ε for the same composition (add/remove
neighbours), and writes one JSON object: every cell, and the largest and smallest relative gap
(ours − PLD) / PLD. A negative gap would mean Accord reports less than a certified upper bound,
which must never happen; the test suite runs a 16-cell Latin square of this grid.

Reference: dp_accounting's PLD with its default 1e-4 discretisation (`pld_default`), refined to
ε·1e-3 when ε < 0.1 (`pld_reference`), because on the default grid the PLD's own pessimism exceeds
1% of ε for ε ≲ 0.02. For q = 1 the n Gaussian steps are one Gaussian with σ/√n (exact), so the
reference is that single event, which the PLD handles tightly and fast; there Accord's ε is exact,
so each q = 1 cell also records δ(ε) evaluated in 50-digit arithmetic (mpmath), which must be ≤ δ.
Where a q = 1 cell sits below the PLD (σ=0.6, 1000 steps: ε≈1613), the PLD is the loose one: its
tail truncation is pessimistic by 0.06% there. Needs the `test` extra (dp-accounting).
Takes about two minutes on two cores; peak memory ~1.5 GB (the smallest-ε cells).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from accord.cli import App
from privacy import epsilon

QS = (0.001, 0.01, 0.1, 1.0)
SIGMAS = (0.6, 1.0, 2.0, 5.0)
STEPS = (1, 10, 100, 1000)
DELTA = 1e-5

app = App()  # accord.cli: the conventions of every Accord CLI


def pld_epsilon(q: float, sigma: float, steps: int, *, interval: float) -> float:
    """dp_accounting's PLD ε at δ for `steps` Poisson-subsampled Gaussian steps (add/remove)."""
    import dp_accounting
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

    accountant = PLDAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        value_discretization_interval=interval,
    )
    if q == 1.0:  # n unsampled Gaussian steps are exactly one Gaussian with σ/√n
        accountant.compose(dp_accounting.GaussianDpEvent(sigma / math.sqrt(steps)))
    else:
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
        accountant.compose(event, steps)
    return accountant.get_epsilon(DELTA)


def exact_gaussian_delta(*, epsilon: float, mu: float) -> float:
    """δ(ε) of the μ-Gaussian mechanism (Balle & Wang 2018, Theorem 8) in 50-digit arithmetic."""
    import mpmath

    with mpmath.workdps(50):
        eps, mu_ = mpmath.mpf(epsilon), mpmath.mpf(mu)
        return float(mpmath.ncdf(mu_ / 2 - eps / mu_) - mpmath.exp(eps) * mpmath.ncdf(-mu_ / 2 - eps / mu_))


def measure_cell(q: float, sigma: float, steps: int, accountant: str) -> dict[str, Any]:
    started = time.perf_counter()
    ours = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=DELTA, accountant=accountant)
    seconds = time.perf_counter() - started
    default = pld_epsilon(q, sigma, steps, interval=1e-4)
    reference = pld_epsilon(q, sigma, steps, interval=default * 1e-3) if default < 0.1 else default
    exact_delta = exact_gaussian_delta(epsilon=ours, mu=math.sqrt(steps) / sigma) if q == 1.0 else None
    return {
        "sample_rate": q,
        "noise_multiplier": sigma,
        "steps": steps,
        "delta": DELTA,
        "epsilon": ours,
        "seconds": round(seconds, 3),
        "pld_default": default,
        "pld_reference": reference,
        "gap_vs_reference": (ours - reference) / reference,
        "gap_vs_default": (ours - default) / default,
        "exact_delta_at_epsilon": exact_delta,
    }


@app.command()
def main(
    out: Annotated[Path | None, typer.Option(help="Write the JSON here instead of stdout.")] = None,
    accountant: Annotated[str, typer.Option(help="Accord accountant: prv or rdp.")] = "prv",
) -> None:
    """Compare Accord's ε with dp_accounting's PLD over the full (q, σ, steps) grid."""
    cells = []
    for q, sigma, steps in itertools.product(QS, SIGMAS, STEPS):
        cells.append(measure_cell(q, sigma, steps, accountant))
        typer.echo(
            f"q={q:<6} σ={sigma:<4} steps={steps:<5} ε={cells[-1]['epsilon']:<12.6g} "
            f"gap={cells[-1]['gap_vs_reference']:+.4%}",
            err=True,
        )
    gaps = [cell["gap_vs_reference"] for cell in cells]
    result = {
        "benchmark": "privacy_accounting_grid",
        "accountant": accountant,
        "max_gap_vs_reference": max(gaps),
        "min_gap_vs_reference": min(gaps),
        "below_reference": [
            {key: cell[key] for key in ("sample_rate", "noise_multiplier", "steps", "exact_delta_at_epsilon")}
            for cell in cells
            if cell["gap_vs_reference"] < 0
        ],
        "exact_cells_over_delta": sum(
            cell["exact_delta_at_epsilon"] is not None and cell["exact_delta_at_epsilon"] > DELTA
            for cell in cells
        ),
        "over_2_percent": sum(gap > 0.02 for gap in gaps),
        "total_seconds": round(sum(cell["seconds"] for cell in cells), 1),
        "cells": cells,
    }
    text = json.dumps(result, indent=2)
    if out is None:
        typer.echo(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
