"""Key ceremonies on the command line: `python -m crypto.keys init|show|identity|ca`.

    python -m crypto.keys init --study STUDY --out DIR --partner NAME=NAME.key.pub [--partner ...] [--force] [--json]
    python -m crypto.keys show FILE [--json]      # an HE file, or an identity or SuperNode key
    python -m crypto.keys identity --name NAME --out DIR [--ca CA_DIR] [--force] [--json]
    python -m crypto.keys ca --out DIR --host HOST [--host HOST ...] [--days N] [--force] [--json]

`init` creates fresh keys for one study: `he-secret-context.json` (mode 0600, for the partners),
`he-public-context.json` (for the coordinator: no key of any kind) and `he-params.json` (parameters and
security level, no key material); `--partner` pins each partner's node signing key in both contexts
(the fingerprint covers them). Distribution is out of band. `show` verifies a file and prints what it
holds: an HE file, or an identity key (`NAME.key`, `NAME.key.pub`) or SuperNode key (`NAME.supernode.key`,
`.pub`) and its fingerprint, the value everyone compares over a second channel. `identity` creates one party's keys (see `identity_files`): its Ed25519 signing key (Accord's
`--key`) and its SuperNode authentication key (Flower's, `--auth-key`), each with its public half; with
`--ca` it also copies that CA's certificate, the one the party trusts. `ca` creates a local test CA and
a SuperLink TLS certificate for the given hosts (`crypto.tls`). Exit codes: 0 ok, 2 usage, 3 invalid,
tampered or misplaced key file, or a key file that would be overwritten (`accord.errors.ExitCode`,
mapped by `accord.cli`). Fingerprints are printed on lines of their own, never folded.
This command must never print a secret key.
"""

from __future__ import annotations

import shutil
from enum import Enum
from hashlib import sha256
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from accord.cli import App, print_json, print_table
from crypto.errors import KeyFileError
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
from crypto.identity import Identity, fingerprint, load_public_key, public_key_bytes
from crypto.node_auth import NodeAuthKey, check_node_name, parse_public_key_line
from crypto.tls import CA_CERTIFICATE, create_ca, issue_server_certificate

app = App(no_args_is_help=True, help="Keys of a study: HE contexts, identities, a test CA.")
_out = Console(soft_wrap=True)  # advice names paths and fingerprints: never wrap them


@app.command()
def init(
    study: Annotated[str, typer.Option("--study", help="Study id; every study gets fresh keys.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the three key files.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    partner: Annotated[list[str] | None, typer.Option("--partner", help="NAME=PATH: pin partner NAME's node signing key (its NAME.key.pub, from `identity` or the node's --key .pub); repeat for every partner. The study's encrypted rounds are bound to these partners, and their bundles are checked against these keys only.")] = None,
) -> None:
    """Create the study's secret context (partners), public context (coordinator) and params file."""
    secret = generate_context(study, partners=_pinned_partners(partner or []))
    files = write_key_files(secret, out, overwrite=force)
    summary = describe(files.public)
    for key in ("file", "kind", "has_secret_key", "fingerprint_verified"):
        del summary[key]
    summary["files"] = {"secret": str(files.secret), "public": str(files.public), "params": str(files.params)}
    if as_json:
        print_json(summary)
        return
    _print_summary(summary, title=f"HE keys for study {study}")
    _out.print(
        f"[bold]Distribute out of band:[/] {files.secret} to each decrypting partner (keep it 0600, never to the "
        f"coordinator); {files.public} to the coordinator. Everyone checks the fingerprint above over a second channel."
    )


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="An HE file (he-*.json), or an identity or SuperNode key (NAME.key[.pub], NAME.supernode.key[.pub]).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Verify FILE (an HE file, an identity or a SuperNode key) and print what it holds and its fingerprint, never a secret key."""
    summary = describe_identity_key(file) or describe(file)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary, title=str(file))


class Role(str, Enum):
    """Who runs `identity`: it decides which advice is printed, not which keys are made."""

    PARTNER = "partner"
    COORDINATOR = "coordinator"


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
    role: Annotated[Role | None, typer.Option("--role", help="Whose keys these are, for the advice printed (default: coordinator if NAME is 'coordinator', else partner).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Create one party's Ed25519 signing key and Flower SuperNode authentication key (EC P-384)."""
    role = role or (Role.COORDINATOR if name == "coordinator" else Role.PARTNER)
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
    summary: dict[str, Any] = {
        "name": name,
        "signing_fingerprint": signing.fingerprint,
        "supernode_key_fingerprint": node_key.fingerprint,
        "files": {role: str(path) for role, path in files.items()},
    }
    if as_json:
        print_json(summary)
        return
    _print_summary(summary, title=f"Keys of {name}")
    _out.print(f"[bold]Keep private, never send:[/] {files['signing_key']}, {files['supernode_key']} (0600).")
    if role is Role.PARTNER:
        _out.print(
            f"[bold]Partner:[/] send {files['supernode_public_key']} to the coordinator, who registers it "
            "(`python -m federated.server --supernode-auth --authorized-nodes DIR`); start the node with "
            f"`--key {files['signing_key']} --auth-key {files['supernode_key']}`."
        )
    else:
        _out.print(
            f"[bold]Coordinator:[/] start with `--key {files['signing_key']}` and send {files['signing_public_key']} "
            "(or its fingerprint above) to every partner, who pins it with `--coordinator-key`."
        )
    _out.print("Check every fingerprint over a second channel.")


@app.command("ca")
def certificate_authority(
    out: Annotated[Path, typer.Option("--out", help="Directory for the CA and the SuperLink certificate.")],
    host: Annotated[list[str], typer.Option("--host", help="An IP address or DNS name partners dial (repeatable).")],
    days: Annotated[int, typer.Option("--days", help="Validity of both certificates, in days.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Create a local test CA and a SuperLink TLS certificate for HOST(s), for demos and tests."""
    authority = create_ca(out, days=days, overwrite=force)
    server = issue_server_certificate(out, out, host, days=days, overwrite=force)
    summary = {
        "hosts": list(host),
        "days": days,
        "files": {"ca_certificate": str(authority.certificate), "ca_key": str(authority.key),
                  "superlink_certificate": str(server.certificate), "superlink_key": str(server.key)},
    }
    if as_json:
        print_json(summary)
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


def _pinned_partners(values: list[str]) -> dict[str, bytes]:
    """`--partner NAME=PATH` values as partner id -> raw Ed25519 public key."""
    pinned: dict[str, bytes] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise KeyFileError(f"--partner {value!r}: expected NAME=PATH to the partner's signing public key")
        if name in pinned:
            raise KeyFileError(f"--partner {name}: given twice")
        pinned[name] = public_key_bytes(load_public_key(Path(path)))
    return pinned


def describe(path: Path) -> dict[str, Any]:
    """What a key file holds, after the loader for its kind has verified it."""
    doc = read_key_document(path)
    if doc["kind"] == "params":
        params, fingerprint, verified = doc["parameters"], doc.get("fingerprint"), False
        study_id, has_secret, pinned = doc.get("study_id"), False, {}
    else:
        has_secret = "secret_key" in doc
        public = load_secret_context(path).public if has_secret else load_public_context(path)
        params, fingerprint, verified = public.parameters.describe(), public.fingerprint, True
        study_id = public.study_id
        pinned = {name: sha256(key).hexdigest() for name, key in public.partners}
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
        "partners": ", ".join(sorted(pinned)) or "none pinned",
        **{f"{name} key fingerprint": value for name, value in pinned.items()},
        "fingerprint": fingerprint,
        "fingerprint_verified": verified,
        "created": doc.get("created"),
    }


def describe_identity_key(path: Path) -> dict[str, Any] | None:
    """What an identity or SuperNode key file holds (its public half's fingerprint), or None for other files."""
    try:
        head = path.read_bytes()[:64].lstrip()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    summary: dict[str, Any] = {"file": str(path)}
    if head.startswith(b"-----BEGIN PUBLIC KEY-----"):
        summary.update(kind="signing public key (Ed25519)", fingerprint=fingerprint(load_public_key(path)))
    elif head.startswith((b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN ENCRYPTED PRIVATE KEY-----")):
        summary.update(kind="signing private key (Ed25519; its public half's fingerprint)",
                       fingerprint=Identity.load(path).fingerprint)
    elif head.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        summary.update(kind="SuperNode authentication key (EC, OpenSSH; its public half's fingerprint)",
                       fingerprint=NodeAuthKey.load(path).fingerprint)
    elif head.startswith(b"ecdsa-sha2-"):
        lines = path.read_text(encoding="utf-8", errors="replace").split()
        node = parse_public_key_line(" ".join(lines[:3]), source=str(path), default_name=path.name.split(".")[0])
        summary.update(kind="SuperNode public key (EC, OpenSSH)", name=node.name, fingerprint=node.fingerprint)
    else:
        return None
    return summary


def _print_summary(summary: dict[str, Any], *, title: str) -> None:
    """A table of what a file holds; fingerprints after it, each alone on its line so none is ever folded."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    fingerprints = {}
    for key, value in summary.items():
        if key == "files":
            for role, path in value.items():
                table.add_row(f"file ({role})", path)
        elif "fingerprint" in key and isinstance(value, str):
            fingerprints[key] = value
        else:
            table.add_row(key.replace("_", " "), str(value))
    print_table(table, console=_out)
    for key, value in fingerprints.items():
        _out.print(f"{key.replace('_', ' ')} (SHA-256):", highlight=False)
        _out.print(value, highlight=False)


__all__ = ["PARAMS_FILE", "PUBLIC_FILE", "SECRET_FILE", "app", "describe", "describe_identity_key", "identity_files"]

if __name__ == "__main__":
    app(prog_name="python -m crypto.keys")
