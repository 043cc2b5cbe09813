"""`python -m federated.client`: run a partner's node next to its data.

Exit codes: 0 node stopped normally · 2 bad usage · 3 invalid manifest, data or option ·
7 the Flower SuperNode failed · 1 unexpected error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from accord.errors import AccordError, ExitCode
from federated.audit.keys import load_or_create_identity
from federated.client.node import explain_exit, prepare_node, run_node

console = Console(stderr=True, soft_wrap=True)
cli = typer.Typer(add_completion=False, help=__doc__, rich_markup_mode=None)


@cli.command()
def main(
    data: Annotated[Path, typer.Option(help="The partner's data file (.csv or .parquet); it never leaves this node.")],
    manifest: Annotated[Path, typer.Option(help="Manifest (TOML): feature, label and subgroup columns, data SHA-256.")],
    coordinator: Annotated[str, typer.Option(help="The coordinator's SuperLink, HOST:PORT.")],
    partner_id: Annotated[str | None, typer.Option(help="This partner's name in results (default: the manifest's dataset_id).")] = None,
    workdir: Annotated[Path, typer.Option(help="Where the node keeps its audit trail and Flower state.")] = Path("accord-node"),
    port: Annotated[int, typer.Option(help="Local port of the node's runtime API; distinct per node on one host.")] = 9094,
    insecure: Annotated[bool, typer.Option(help="Plain HTTP to the coordinator: only for 127.0.0.1 demos and tests.")] = False,
    root_certificates: Annotated[Path | None, typer.Option(help="CA certificate that signed the SuperLink's TLS certificate.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Give up after this many failed connection attempts (default: never).")] = None,
    max_wait_time: Annotated[float | None, typer.Option(help="Give up reconnecting after this many seconds (default: never).")] = None,
    key: Annotated[Path | None, typer.Option(help="This node's Ed25519 signing key (PEM); created if absent (default: WORKDIR/node.key).")] = None,
    coordinator_key: Annotated[str | None, typer.Option(help="Accept only this coordinator key: a PEM public key file or its SHA-256 fingerprint (default: pin the first key seen).")] = None,
    ledger: Annotated[Path | None, typer.Option(help="This dataset's privacy budget ledger (SQLite; default: WORKDIR/budget.sqlite).")] = None,
    max_epsilon: Annotated[float | None, typer.Option(help="Cap on ε spent from this dataset over all studies (default: no cap).")] = None,
    max_epsilon_per_study: Annotated[float | None, typer.Option(help="Cap on ε spent from this dataset in one study (default: no cap).")] = None,
    auth_key: Annotated[Path | None, typer.Option(help="This node's SuperNode authentication key (OpenSSH EC private key, from `python -m crypto.keys identity`); the coordinator registers its .pub (secure mode).")] = None,
    he_secret_context: Annotated[Path | None, typer.Option(help="The study's HE secret context (he-secret-context.json from `python -m crypto.keys init`); without it, encrypted tasks are refused.")] = None,
    contract: Annotated[Path | None, typer.Option(help="This dataset's data contract (TOML): every task is checked against it before the data is used.")] = None,
) -> None:
    """Check the local data against its manifest, then serve Accord tasks through a Flower SuperNode."""
    try:
        launch, loaded = prepare_node(
            data=data, manifest=manifest, coordinator=coordinator, partner_id=partner_id, workdir=workdir,
            runtime_port=port, insecure=insecure, root_certificates=root_certificates,
            max_retries=max_retries, max_wait_time_s=max_wait_time, key=key, coordinator_key=coordinator_key,
            ledger=ledger, max_epsilon=max_epsilon, max_epsilon_per_study=max_epsilon_per_study, auth_key=auth_key,
            he_secret_context=he_secret_context, contract=contract,
        )
        identity, created = load_or_create_identity(launch.settings.key_path)
    except AccordError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(int(exc.exit_code)) from None
    if created:
        console.print(f"created this node's signing key {launch.settings.key_path} (fingerprint {identity.fingerprint}); keep it")
    console.print(
        f"partner [bold]{launch.settings.partner_id}[/]: {loaded.size} records, data SHA-256 {loaded.data_sha256[:16]}…, "
        f"connecting to {coordinator}; trail {launch.settings.trail}"
    )
    result = run_node(launch)
    if not result.normal:
        console.print(f"[red]error:[/] {escape(explain_exit(result, launch))}")  # Flower's "[code: N]" is no markup
        raise typer.Exit(int(ExitCode.FLOWER))


def run() -> None:
    """`check` is the contract dry run (federated.client.check); anything else starts the node."""
    if sys.argv[1:2] == ["check"]:
        from federated.client.check import cli as check_cli

        del sys.argv[1]
        check_cli(prog_name="python -m federated.client check")
    else:
        cli(prog_name="python -m federated.client")


if __name__ == "__main__":
    run()
