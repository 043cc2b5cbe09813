"""The HE key ceremony on the command line: `python -m crypto.keys init|show`.

    python -m crypto.keys init --study STUDY --out DIR [--force] [--json]
    python -m crypto.keys show FILE [--json]

`init` creates fresh keys for one study: `he-secret-context.json` (mode 0600, for the partners),
`he-public-context.json` (for the coordinator: no key of any kind) and `he-params.json` (parameters and
security level, no key material). Distribution is out of band. `show` verifies a file and prints what it
holds. Exit codes: 0 ok, 2 usage, 3 invalid, tampered or misplaced key file (`accord.errors.ExitCode`).
This command must never print a secret key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from crypto.he_errors import HEError
from crypto.he_keys import (
    PARAMS_FILE,
    PUBLIC_FILE,
    SECRET_FILE,
    generate_context,
    load_public_context,
    load_secret_context,
    read_key_document,
    write_key_files,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Homomorphic-encryption keys of a study.")
_out = Console()
_err = Console(stderr=True)


@app.command()
def init(
    study: Annotated[str, typer.Option("--study", help="Study id; every study gets fresh keys.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the three key files.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Create the study's secret context (partners), public context (coordinator) and params file."""
    try:
        secret = generate_context(study)
        files = write_key_files(secret, out, overwrite=force)
        summary = describe(files.public)
    except HEError as exc:
        _fail(exc)
    for key in ("file", "kind", "has_secret_key", "fingerprint_verified"):
        del summary[key]
    summary["files"] = {"secret": str(files.secret), "public": str(files.public), "params": str(files.params)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary, title=f"HE keys for study {study}")
    _out.print(
        f"[bold]Distribute out of band:[/] {files.secret} to each decrypting partner (keep it 0600, never to the "
        f"coordinator); {files.public} to the coordinator. Everyone checks the fingerprint "
        f"{summary['fingerprint']} over a second channel."
    )


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A he-secret-context, he-public-context or he-params file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Verify a key file and print what it holds (never the secret key itself)."""
    try:
        summary = describe(file)
    except HEError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, title=str(file))


def describe(path: Path) -> dict[str, Any]:
    """What a key file holds, after the loader for its kind has verified it."""
    doc = read_key_document(path)
    if doc["kind"] == "params":
        params, fingerprint, verified = doc["parameters"], doc.get("fingerprint"), False
        study_id, has_secret = doc.get("study_id"), False
    else:
        has_secret = "secret_key" in doc
        public = load_secret_context(path).public if has_secret else load_public_context(path)
        params, fingerprint, verified = public.parameters.describe(), public.fingerprint, True
        study_id = public.study_id
    return {
        "file": str(path),
        "kind": doc["kind"],
        "study_id": study_id,
        "scheme": params["scheme"],
        "poly_modulus_degree": params["poly_modulus_degree"],
        "coeff_modulus_bits": params["coeff_modulus_bits"],
        "plain_modulus": params["plain_modulus"],
        "plain_modulus_bits": params["plain_modulus_bits"],
        "security_bits": params["security_bits"],
        "security_standard": params["security_standard"],
        "max_addends": params["max_addends"],
        "has_secret_key": has_secret,
        "fingerprint": fingerprint,
        "fingerprint_verified": verified,
        "created": doc.get("created"),
    }


def _print_summary(summary: dict[str, Any], *, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in summary.items():
        if key == "files":
            for role, path in value.items():
                table.add_row(f"file ({role})", path)
        else:
            table.add_row(key.replace("_", " "), str(value))
    _out.print(table)


def _fail(exc: HEError) -> NoReturn:
    _err.print(f"[red]error:[/] {exc}")
    raise typer.Exit(int(exc.exit_code))


__all__ = ["PARAMS_FILE", "PUBLIC_FILE", "SECRET_FILE", "app", "describe"]

if __name__ == "__main__":
    app()
