"""SuperNode authentication keys: the EC key pair with which Flower admits a partner's node.

Flower 1.42 authenticates a SuperNode by an elliptic-curve key on a NIST curve: the node
signs a timestamp on every Fleet API request with its private key
(`flower-supernode --auth-supernode-private-key`, read with `load_ssh_private_key`), and a
SuperLink started with `--enable-supernode-auth` only activates nodes whose public key was
registered beforehand through the Control API (`flwr supernode register KEY.pub`, read
with `load_ssh_public_key`). Both files are therefore OpenSSH encoded: the private key as
an "OPENSSH PRIVATE KEY" block (mode 0600), the public key as one authorized_keys-style
line `ecdsa-sha2-nistp384 BASE64 NAME`, whose comment carries the partner's name.

An authorized-nodes list (`read_authorized_nodes`) is a directory of `*.pub` files in that
format, or one file holding such lines; `#` comments and blank lines are ignored.

This module must never print or log private key material, never overwrite a key file
unless asked to, and never import `federated`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.errors import KeyFileError
from crypto.identity import (
    _write_atomically,  # one atomic, 0600-capable key writer for the package
)

CURVE = ec.SECP384R1  # what `ssh-keygen -t ecdsa -b 384` makes and Flower's docs use
_NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_node_name(name: str) -> str:
    """A partner or coordinator name usable in file names and key comments."""
    if not _NAME.fullmatch(name):
        raise KeyFileError(
            f"name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _check_curve(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, source: str) -> None:
    if not isinstance(key.curve, _NIST_CURVES):
        raise KeyFileError(f"{source}: curve {key.curve.name} is not a NIST P-256/P-384/P-521 curve Flower accepts")


def public_key_line(public_key: ec.EllipticCurvePublicKey, name: str) -> str:
    """The OpenSSH public key line `flwr supernode register` reads, commented with `name`."""
    encoded = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{encoded} {check_node_name(name)}"


def node_key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: how trails name a node's key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True, repr=False)
class NodeAuthKey:
    """One SuperNode authentication key pair."""

    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> NodeAuthKey:
        return cls(ec.generate_private_key(CURVE()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeAuthKey:
        """Read an OpenSSH private key file as `flower-supernode` would; errors name the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read SuperNode auth key {path}: {exc.strerror or exc}") from None
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except TypeError:
            raise KeyFileError(f"{path} is password-protected; flower-supernode cannot open it") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path} is not an OpenSSH private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}; SuperNode authentication needs an EC key")
        _check_curve(key, str(path))
        return cls(key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return node_key_fingerprint(self.public_key)

    def save(self, path: str | os.PathLike[str], *, name: str, overwrite: bool = False) -> Path:
        """Write the private key (0600) at `path` and its public line at `path` + ".pub"; return the latter."""
        path = Path(path)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public_path = path.with_name(path.name + ".pub")
        _write_atomically(path, pem, mode=0o600, overwrite=overwrite)
        _write_atomically(public_path, (public_key_line(self.public_key, name) + "\n").encode(), mode=0o644, overwrite=overwrite)
        return public_path

    def __repr__(self) -> str:  # never show key material
        return f"NodeAuthKey(fingerprint={self.fingerprint!r})"


@dataclass(frozen=True)
class AuthorizedNode:
    """A partner node the coordinator admits: its name and public key line."""

    name: str
    line: str
    fingerprint: str
    source: str  # file (and line) it came from, for messages


def parse_public_key_line(line: str, *, source: str, default_name: str) -> AuthorizedNode:
    """One `ecdsa-sha2-nistpNNN BASE64 [NAME]` line; the comment (else `default_name`) names the node."""
    parts = line.split()
    if len(parts) < 2:
        raise KeyFileError(f"{source}: not an OpenSSH public key line (expected 'ecdsa-sha2-nistp384 BASE64 NAME')")
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source}: not an OpenSSH public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{source}: a {parts[0]} key; SuperNode authentication needs an ecdsa-sha2-nistp* key")
    _check_curve(key, source)
    name = parts[2] if len(parts) > 2 else default_name
    try:
        check_node_name(name)
    except KeyFileError as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    return AuthorizedNode(name=name, line=f"{parts[0]} {parts[1]} {name}", fingerprint=node_key_fingerprint(key), source=source)


def read_authorized_nodes(path: str | os.PathLike[str]) -> list[AuthorizedNode]:
    """Every node key in a directory of `*.pub` files or in one file of key lines.

    Refuses an empty list, a repeated key and a repeated name (each partner one identity).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.pub"))
        if not files:
            raise KeyFileError(f"{path}: no *.pub SuperNode public keys in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise KeyFileError(f"{path}: no such authorized-nodes file or directory")
    nodes: list[AuthorizedNode] = []
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read authorized node key {file}: {exc}") from None
        stem = file.name.removesuffix(".pub").split(".")[0]
        for number, raw in enumerate(lines, start=1):
            text = raw.strip()
            if text and not text.startswith("#"):
                nodes.append(parse_public_key_line(text, source=f"{file}:{number}", default_name=stem))
    if not nodes:
        raise KeyFileError(f"{path}: holds no SuperNode public key")
    for attribute in ("fingerprint", "name"):
        seen: dict[str, str] = {}
        for node in nodes:
            value = getattr(node, attribute)
            if value in seen:
                raise KeyFileError(f"{node.source}: the same {attribute} as {seen[value]} ({node.name})")
            seen[value] = node.source
    return nodes
