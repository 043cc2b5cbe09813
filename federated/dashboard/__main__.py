"""`python -m federated.dashboard --output DIR`: serve a read-only dashboard over a coordinator's study outputs;
`... partner --trail T [--ledger L] [--contract C]`: the same over a partner's node.

It listens on 127.0.0.1 unless `--host` names another address, which it does only with `--token` (then every
request carries it: `Authorization: Bearer T`, `X-Accord-Token` or `?token=T`). Exit codes: 0 stopped normally
· 2 bad usage · 3 invalid option (a non-loopback address without a token, a missing folder) · 1 unexpected error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich.console import Console

from accord.cli import App
from federated.audit.keys import pinned_fingerprint
from federated.dashboard.app import coordinator_app, partner_app
from federated.dashboard.partner import PartnerSources
from federated.dashboard.security import check_bind
from federated.dashboard.studies import Sources
from federated.errors import ConfigError

if TYPE_CHECKING:
    from starlette.applications import Starlette

console = Console(stderr=True, soft_wrap=True)
cli = App(help=__doc__)
DEFAULT_PORT = 8050

Host = Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs --token.")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")]
Token = Annotated[str | None, typer.Option(envvar="ACCORD_DASHBOARD_TOKEN", help="Require this token on every request (at least 16 characters).")]


def address_line(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"dashboard: http://{shown}:{port}/" + (" (send the token: Authorization: Bearer …, or ?token=…)" if token else "")


def serve(app: Starlette, *, host: str, port: int, token: str | None) -> None:
    """Bind first (so that `--port 0` prints the port it got), print the address line, serve until stopped."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)  # connections made as soon as the address is printed wait for the server
    except OSError as exc:
        listener.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    config = uvicorn.Config(app, log_level="warning", server_header=False, date_header=False)
    console.print(address_line(host, listener.getsockname()[1], token), highlight=False)
    uvicorn.Server(config).run(sockets=[listener])


@cli.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="A study's output directory, or a folder of them. Required for the coordinator's dashboard.")] = None,
    pack: Annotated[list[Path] | None, typer.Option(help="An evidence pack (.zip) to verify on demand and read partner trails from (repeatable).")] = None,
    partner_trail: Annotated[list[Path] | None, typer.Option(help="A partner's hand-over (node work directory or trail file): its ε spent, and verification (repeatable).")] = None,
    coordinator_key: Annotated[str | None, typer.Option(help="Pin the coordinator key for verification: a PEM public key file or its SHA-256 fingerprint.")] = None,
    host: Host = "127.0.0.1",
    port: Port = DEFAULT_PORT,
    token: Token = None,
) -> None:
    """Serve the studies under --output: status, rounds, refusals, pooled metrics with intervals, plots, the
    model × partner matrix, ε per partner, and the evidence's verification on demand."""
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        raise click.MissingParameter(ctx=ctx, param_hint="'--output'", param_type="option")
    if not output.is_dir():
        raise ConfigError(f"--output {output}: not a directory")
    check_bind(host, token)
    sources = Sources(output, tuple(pack or ()), tuple(partner_trail or ()),
                      pinned_fingerprint(coordinator_key) if coordinator_key else None)
    serve(coordinator_app(sources, host=host, token=token), host=host, port=port, token=token)


@cli.command("partner")
def partner(
    trail: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The node's audit trail (WORKDIR/trail.jsonl).")],
    ledger: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="The node's privacy ledger (WORKDIR/budget.sqlite).")] = None,
    contract: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="The dataset's data contract (TOML).")] = None,
    host: Host = "127.0.0.1",
    port: Port = DEFAULT_PORT,
    token: Token = None,
) -> None:
    """Serve a partner's node: tasks accepted and refused with their clauses, ε spent and remaining per study,
    its contract in words."""
    check_bind(host, token)
    serve(partner_app(PartnerSources(trail, ledger, contract), host=host, token=token), host=host, port=port, token=token)


if __name__ == "__main__":
    cli(prog_name="python -m federated.dashboard")
