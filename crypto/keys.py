"""Key ceremonies on the command line: `python -m crypto.keys init|show|identity|ca`.

    python -m crypto.keys init --study STUDY --out DIR [--force] [--json]
    python -m crypto.keys show FILE [--json]
    python -m crypto.keys identity --name NAME --out DIR [--ca CA_DIR] [--force] [--json]
    python -m crypto.keys ca --out DIR --host HOST [--host HOST ...] [--days N] [--force] [--json]

`init` creates fresh keys for one study: `he-secret-context.json` (mode 0600, for the partners),
`he-public-context.json` (for the coordinator: no key of any kind) and `he-params.json` (parameters and
security level, no key material). Distribution is out of band. `show` verifies a file and prints what it
holds. `identity` creates one party's keys (see `identity_files`): its Ed25519 signing key (Accord's
`--key`) and its SuperNode authentication key (Flower's, `--auth-key`), each with its public half; with
`--ca` it also copies that CA's certificate, the one the party trusts. `ca` creates a local test CA and
a SuperLink TLS certificate for the given hosts (`crypto.tls`). Exit codes: 0 ok, 2 usage, 3 invalid,
tampered or misplaced key file, or a key file that would be overwritten (`accord.errors.ExitCode`).
This command must never print a secret key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from accord.errors import AccordError, ExitCode
from crypto.errors import KeyFileError
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
from crypto.identity import Identity
from crypto.node_auth import NodeAuthKey, check_node_name
from crypto.tls import CA_CERTIFICATE, create_ca, issue_server_certificate

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Keys of a study: HE contexts, identities, a test CA.")
_out = Console()
_err = Console(stderr=True, soft_wrap=True)  # error lines name paths: never wrap them


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


def identity_files(out: Path, name: str) -> dict[str, Path]:
    """Where `identity` writes NAME's keys in `out`."""
    return {
        "signing_key": out / f"{name}.key",
        "signing_public_key": out / f"{name}.key.pub",
        "supernode_key": out / f"{name}.supernode.key",
        "supernode_public_key": out / f"{name}.supernode.key.pub",
    }


@app.command()
def identity(
    name: Annotated[str, typer.Option("--name", help="The partner's or coordinator's name (letters, digits, . _ -).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the key files.")],
    ca: Annotated[Path | None, typer.Option("--ca", help="A CA directory made by `ca`: copy its ca.pem here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Create one party's Ed25519 signing key and Flower SuperNode authentication key (EC P-384)."""
    try:
        check_node_name(name)
        files = identity_files(out, name)
        if not force:
            for path in files.values():
                if path.exists():
                    raise KeyFileError(f"{path} already exists; refusing to overwrite a key file (--force)")
        out.mkdir(parents=True, exist_ok=True)
        signing = Identity.generate()
        signing.save(files["signing_key"], overwrite=force)
        node_key = NodeAuthKey.generate()
        node_key.save(files["supernode_key"], name=name, overwrite=force)
        if ca is not None:
            files["ca_certificate"] = out / CA_CERTIFICATE
            _copy_ca_certificate(ca, files["ca_certificate"], overwrite=force)
    except (AccordError, OSError) as exc:
        _fail(exc)
    summary: dict[str, Any] = {
        "name": name,
        "signing_fingerprint": signing.fingerprint,
        "supernode_key_fingerprint": node_key.fingerprint,
        "files": {role: str(path) for role, path in files.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary, title=f"Keys of {name}")
    _out.print(
        f"[bold]Keep private, never send:[/] {files['signing_key']}, {files['supernode_key']} (0600).\n"
        f"[bold]Partner:[/] send {files['supernode_public_key']} to the coordinator, who registers it "
        "(`python -m federated.server --supernode-auth --authorized-nodes DIR`); start the node with "
        f"`--key {files['signing_key']} --auth-key {files['supernode_key']}`.\n"
        f"[bold]Coordinator:[/] start with `--key {files['signing_key']}` and send {files['signing_public_key']} "
        "(or its fingerprint above) to every partner, who pins it with `--coordinator-key`.\n"
        "Check every fingerprint over a second channel."
    )


@app.command("ca")
def certificate_authority(
    out: Annotated[Path, typer.Option("--out", help="Directory for the CA and the SuperLink certificate.")],
    host: Annotated[list[str], typer.Option("--host", help="An IP address or DNS name partners dial (repeatable).")],
    days: Annotated[int, typer.Option("--days", help="Validity of both certificates, in days.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Create a local test CA and a SuperLink TLS certificate for HOST(s), for demos and tests."""
    try:
        authority = create_ca(out, days=days, overwrite=force)
        server = issue_server_certificate(out, out, host, days=days, overwrite=force)
    except AccordError as exc:
        _fail(exc)
    summary = {
        "hosts": list(host),
        "days": days,
        "files": {"ca_certificate": str(authority.certificate), "ca_key": str(authority.key),
                  "superlink_certificate": str(server.certificate), "superlink_key": str(server.key)},
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(summary, title=f"Test CA and SuperLink certificate for {', '.join(host)}")
    _out.print(
        f"[bold]Coordinator:[/] `--ssl-certfile {server.certificate} --ssl-keyfile {server.key} "
        f"--ssl-ca-certfile {authority.certificate}`.\n[bold]Partners:[/] `--root-certificates "
        f"{authority.certificate}` (public). Keep {authority.key} offline: whoever holds it can impersonate the SuperLink."
    )


def _copy_ca_certificate(ca_dir: Path, target: Path, *, overwrite: bool) -> None:
    source = ca_dir / CA_CERTIFICATE
    if not source.is_file():
        raise KeyFileError(f"--ca {ca_dir}: no {CA_CERTIFICATE} there (create one with `python -m crypto.keys ca`)")
    if target.exists() and not overwrite:
        raise KeyFileError(f"{target} already exists; refusing to overwrite it (--force)")
    shutil.copyfile(source, target)


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


def _fail(exc: HEError | AccordError | OSError) -> NoReturn:
    _err.print(f"[red]error:[/] {exc}")
    code = exc.exit_code if isinstance(exc, AccordError) else ExitCode.INVALID_INPUT
    raise typer.Exit(int(code))


__all__ = ["PARAMS_FILE", "PUBLIC_FILE", "SECRET_FILE", "app", "describe", "identity_files"]

if __name__ == "__main__":
    app()
