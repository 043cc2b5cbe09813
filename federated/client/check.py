"""`python -m federated.client check`: would this node accept this study, and if not, why?

Runs the node's contract check on the study file before the study starts: every clause,
its verdict and the value it looked at. With `--data`/`--manifest` the data is loaded to
check the contract's data hash and to compute a training round's DP-SGD ε for this
dataset's size; without them, `--records N` gives the size.

Exit codes: 0 every clause passes · 3 invalid contract, study or data · 5 a clause fails.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from accord.errors import AccordError, ExitCode
from federated.audit.keys import pinned_fingerprint
from federated.client.contract_request import task_request
from federated.client.costs import round_cost
from federated.client.data import load_manifest, load_partner_data
from federated.study import load_study
from privacy.contract import ClauseResult, load_contract

console = Console(stderr=True, soft_wrap=True)
cli = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode=None)


def check_study(
    contract_path: Path, study_path: Path, *, coordinator_key: str | None, data: Path | None, manifest: Path | None,
    records: int | None, today: date | None = None,
) -> list[ClauseResult]:
    """Every clause's verdict on round 1 of the study, as the node would decide it."""
    contract = load_contract(contract_path)
    study = load_study(study_path)
    today = today or date.today()
    results: list[ClauseResult] = []
    if data is not None and manifest is not None:
        loaded = load_partner_data(data, load_manifest(manifest))
        records = loaded.size
        try:
            contract.check_data(loaded.data_sha256, today=today, source=str(contract_path))
            results.append(ClauseResult("data_sha256", True, f"governs {data} ({loaded.data_sha256[:16]}…)"))
        except AccordError as exc:
            results.append(ClauseResult("data_sha256", False, str(exc)))
    cost = round_cost(
        evaluation=study.evaluation, training=study.training, round_number=1, num_examples=records or 1
    )
    if study.training is not None and study.training.privacy.enabled and records is None:
        results.append(ClauseResult("records", False, "training ε depends on the dataset size: give --data/--manifest or --records"))
    request = task_request(
        purpose=study.purpose, governance=study.governance, min_cohort=study.min_cohort, cost=cost,
        encrypted=study.encryption.enabled, coordinator_key=coordinator_key, today=today,
    )
    return results + contract.evaluate(request)


@cli.command()
def check(
    contract: Annotated[Path, typer.Option(help="The partner's data contract (TOML).")],
    study: Annotated[Path, typer.Option(help="The study file the coordinator proposes.")],
    coordinator_key: Annotated[str | None, typer.Option(help="The coordinator's public key (PEM file) or fingerprint.")] = None,
    data: Annotated[Path | None, typer.Option(help="The data file the contract governs (checks its hash; sizes DP-SGD).")] = None,
    manifest: Annotated[Path | None, typer.Option(help="The data's manifest (with --data).")] = None,
    records: Annotated[int | None, typer.Option(help="Dataset size, if --data is not given (sizes DP-SGD's ε).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON on stdout.")] = False,
) -> None:
    """Check STUDY against CONTRACT clause by clause, as the partner's node would."""
    try:
        key = pinned_fingerprint(coordinator_key) if coordinator_key else None
        results = check_study(contract, study, coordinator_key=key, data=data, manifest=manifest, records=records)
    except AccordError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(int(exc.exit_code)) from None
    accepted = all(result.ok for result in results)
    if json_output:
        print(json.dumps({"accepted": accepted, "clauses": [r.__dict__ for r in results]}, indent=2))
    else:
        table = Table(title=f"{contract} vs {study}")
        for column in ("clause", "verdict", "detail"):
            table.add_column(column)
        for result in results:
            table.add_row(result.clause, "[green]ok[/]" if result.ok else "[red]refused[/]", result.detail)
        console.print(table)
        console.print("[green]this node would accept the study[/]" if accepted else "[red]this node would refuse the study[/]")
    if not accepted:
        raise typer.Exit(int(ExitCode.REFUSED))
