"""`python -m privacy.ledger show FILE [--json]`: what a dataset's budget ledger has spent.

Prints every spend per study and release with the ε spent and remaining per study and in total,
as a rich table or, with `--json`, as one JSON object for machines. Exit codes (accord.errors):
0 shown, 2 usage, 3 the file is missing or not a ledger. `--ledger FILE` is the deprecated spelling
of the argument. It only reads: it must never write to the ledger, create one, or change a cap.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from accord.cli import App, print_json, print_table
from privacy.ledger.budget import BudgetLedger

app = App(help="Inspect a partner's privacy budget ledger.")


@app.callback()
def _group() -> None:
    """Inspect a partner's privacy budget ledger."""


@app.command()
def show(
    ctx: typer.Context,
    ledger: Annotated[Path | None, typer.Argument(help="The ledger's SQLite file (the node's WORKDIR/budget.sqlite).", show_default=False)] = None,
    ledger_option: Annotated[Path | None, typer.Option("--ledger", hidden=True, help="Deprecated: give the file as the argument.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Show the spends in LEDGER (a node's WORKDIR/budget.sqlite) per study and release, and the budget that remains."""
    if ledger is not None and ledger_option is not None:
        raise click.UsageError("give the ledger once: as the argument (--ledger is its deprecated spelling)", ctx)
    if ledger_option is not None:
        Console(stderr=True, soft_wrap=True).print("note: --ledger FILE is deprecated; give FILE as the argument", highlight=False)
    path = ledger if ledger is not None else ledger_option
    if path is None:
        raise click.MissingParameter(ctx=ctx, param_hint="'LEDGER'", param_type="argument")
    summary = ledger_summary(BudgetLedger.open_existing(path))
    if as_json:
        print_json(summary)
    else:
        _print_tables(summary)


def ledger_summary(ledger: BudgetLedger) -> dict[str, Any]:
    """The ledger as plain data: caps, totals, and each study with its releases (oldest first)."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for spend in ledger.spends():
        record = spend.as_record()
        record.pop("already_spent")
        studies.setdefault(spend.study_id, []).append(record)
    return {
        "ledger": str(ledger.path),
        "composition": "basic (sum of per-release ε and δ)",
        "max_epsilon_total": ledger.max_epsilon_total,
        "max_epsilon_per_study": ledger.max_epsilon_per_study,
        "spent_epsilon_total": ledger.spent(),
        "remaining_epsilon_total": ledger.remaining(),
        "spent_delta_total": math.fsum(r["delta"] for rs in studies.values() for r in rs),
        "studies": [
            {
                "study_id": study_id,
                "spent_epsilon": ledger.spent(study_id=study_id),
                "spent_delta": math.fsum(release["delta"] for release in releases),
                "remaining_epsilon": ledger.remaining(study_id=study_id),
                "releases": releases,
            }
            for study_id, releases in studies.items()
        ],
    }


def _print_tables(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"Privacy budget ledger {summary['ledger']}")
    for column in ("study", "release", "ε", "δ", "σ / q / steps", "distributed: own-share ε (t of n honest)",
                   "spent at (UTC)"):
        table.add_column(column, justify="right" if column in ("ε", "δ") else "left")
    for study in summary["studies"]:
        for release in study["releases"]:
            mechanism = " / ".join(
                "–" if release[key] is None else f"{release[key]:g}"
                for key in ("noise_multiplier", "sample_rate", "steps")
            )
            table.add_row(
                study["study_id"],
                release["release"],
                f"{release['epsilon']:.4g}",
                f"{release['delta']:.2g}",
                mechanism,
                "–" if release.get("share_epsilon") is None else
                f"{release['share_epsilon']:.4g} (ε holds if {release['honest_required']} of {release['cohort']} honest)",
                release["spent_at"][:19],
            )
    print_table(table, console=console)
    budget = Table(title="Budget (basic composition: ε of releases add up)")
    for column in ("scope", "spent ε", "cap ε", "remaining ε"):
        budget.add_column(column, justify="left" if column == "scope" else "right")
    for study in summary["studies"]:
        budget.add_row(
            f"study {study['study_id']}",
            f"{study['spent_epsilon']:.4g}",
            f"{summary['max_epsilon_per_study']:.4g}",
            f"{study['remaining_epsilon']:.4g}",
        )
    budget.add_row(
        "total (all studies)",
        f"{summary['spent_epsilon_total']:.4g}",
        f"{summary['max_epsilon_total']:.4g}",
        f"{summary['remaining_epsilon_total']:.4g}",
    )
    print_table(budget, console=console)


def main() -> None:
    """Entry point for `python -m privacy.ledger`."""
    app(prog_name="python -m privacy.ledger")


if __name__ == "__main__":
    main()
