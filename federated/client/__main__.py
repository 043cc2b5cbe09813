"""`python -m federated.client`: run a partner's node next to its data; `... check`: would it accept a study?

The node's options sit on the command itself (`python -m federated.client --data ... --manifest ...`), and
`check` is a subcommand (`federated.client.check`). Exit codes: docs/exit-codes.md (`accord.errors.ExitCode`):
0 node stopped normally · 2 bad usage · 3 invalid manifest, data or option · 5 `check`: a clause, connectivity or model fit fails ·
7 the Flower SuperNode failed · 1 unexpected error.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console

from accord.cli import AccordGroup, App
from federated.audit.keys import load_or_create_identity
from federated.client.node import explain_exit, prepare_node, run_node
from federated.errors import FlowerRuntimeError

console = Console(stderr=True, soft_wrap=True)


class _NodeCommands(AccordGroup):
    # the node's start never imports them
    lazy_commands = {"check": "federated.client.check:check", "init": "federated.client.init:init"}


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


cli = App(cls=_NodeCommands)
_REQUIRED = "Required to run the node."


@cli.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help=f"The partner's data file (.csv or .parquet); it never leaves this node. {_REQUIRED}")] = None,
    manifest: Annotated[Path | None, typer.Option(help=f"Manifest (TOML): feature, label and subgroup columns, data SHA-256. {_REQUIRED}")] = None,
    coordinator: Annotated[str | None, typer.Option(help=f"The coordinator's SuperLink, HOST:PORT. {_REQUIRED}")] = None,
    partner_id: Annotated[str | None, typer.Option(help="This partner's name in results (default: the manifest's dataset_id).")] = None,
    workdir: Annotated[Path, typer.Option(help="Where the node keeps its audit trail and Flower state.")] = Path("accord-node"),
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Local port of the node's runtime API; distinct per node on one host.")] = 9094,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP to the coordinator: only for 127.0.0.1 demos and tests.")] = False,
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
    log_file: Annotated[Path | None, typer.Option(help="Flower's output and the node's lines, appended (default: WORKDIR/node.log).")] = None,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False, help="Flower's log level in the log file.")] = LogLevel.INFO,
    health_server_address: Annotated[str | None, typer.Option(metavar="HOST:PORT", help="Serve Flower's gRPC health endpoint there (flower-supernode --health-server-address), for a service manager or load balancer.")] = None,
) -> None:
    """Check the local data against its manifest, then serve Accord tasks through a Flower SuperNode.

    The console gets one line per task (accepted, with the ε spent and left, or refused, with the clause)
    and an idle line after each study; Flower's own output goes to the log file.
    `init` writes a manifest and contract template for a data file; `check` tells whether this node
    would accept a study, clause by clause, and whether it can reach the coordinator.
    """
    if ctx.invoked_subcommand is not None:
        return
    for option, value in (("--data", data), ("--manifest", manifest), ("--coordinator", coordinator)):
        if value is None:
            raise click.MissingParameter(ctx=ctx, param_hint=f"'{option}'", param_type="option")
    assert data is not None and manifest is not None and coordinator is not None
    launch, loaded = prepare_node(
        data=data, manifest=manifest, coordinator=coordinator, partner_id=partner_id, workdir=workdir,
        runtime_port=port, insecure=insecure, root_certificates=root_certificates,
        max_retries=max_retries, max_wait_time_s=max_wait_time, key=key, coordinator_key=coordinator_key,
        ledger=ledger, max_epsilon=max_epsilon, max_epsilon_per_study=max_epsilon_per_study, auth_key=auth_key,
        he_secret_context=he_secret_context, contract=contract, log_file=log_file, log_level=log_level.value,
        health_server_address=health_server_address,
    )
    identity, created = load_or_create_identity(launch.settings.key_path)
    if created:
        console.print(f"created this node's signing key {launch.settings.key_path}; keep it. Its fingerprint:")
        console.print(identity.fingerprint, highlight=False)
    console.print(f"partner [bold]{launch.settings.partner_id}[/]: {loaded.size} records; data SHA-256:", highlight=False)
    console.print(loaded.data_sha256, highlight=False)  # on its own line, never folded: partners compare it by eye
    console.print(f"trail: {launch.settings.trail}\nlog: {launch.log_path}", highlight=False)
    console.print(f"connecting to {coordinator}; waiting for a study", highlight=False)
    result = run_node(launch, lambda line: console.print(line, highlight=False))
    if not result.normal:
        raise FlowerRuntimeError(explain_exit(result, launch))


if __name__ == "__main__":
    cli(prog_name="python -m federated.client")
