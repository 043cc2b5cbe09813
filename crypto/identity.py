"""Ed25519 identities: each partner and coordinator signs with its own key and is named by its fingerprint.

An `Identity` wraps one private key; its public half is what others pin (in data
contracts, in signed-note verifier lists), by `fingerprint`: the lowercase hex
SHA-256 of the raw 32-byte public key. Key files are PEM (PKCS#8 for private
keys, SubjectPublicKeyInfo for public keys); a private key file is written with
mode 0600 through a temporary file that is fsynced and renamed into place, so a
crash never leaves half a key.

This module must never log or print private key material, never overwrite an
existing key file unless asked to, never return a boolean from `verify` (it
raises `SignatureError`), and never import `federated`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from accord.durable import write_durably
from crypto.errors import KeyFileError, SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def public_key_bytes(public_key: Ed25519PublicKey) -> bytes:
    """The raw 32-byte RFC 8032 encoding of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_bytes(raw: bytes) -> Ed25519PublicKey:
    """A public key from its raw 32-byte RFC 8032 encoding."""
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_SIZE:
        size = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise KeyFileError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {size}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyFileError(f"not an Ed25519 public key: {exc}") from None


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw public key: how contracts and trails name a key."""
    return hashlib.sha256(public_key_bytes(public_key)).hexdigest()


def verify(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature over `data`; returns None, raises `SignatureError`."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        size = f"{len(signature)} bytes" if isinstance(signature, bytes) else type(signature).__name__
        raise SignatureError(f"an Ed25519 signature is {SIGNATURE_SIZE} bytes, got {size}")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"the Ed25519 signature does not verify under key {fingerprint(public_key)}"
        ) from None


@dataclass(frozen=True, repr=False)
class Identity:
    """One Ed25519 signing key and what others need to know about it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        """A fresh key from the operating system's random source."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The key whose RFC 8032 32-byte secret is `seed` (test vectors, key ceremonies)."""
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, password: bytes | None = None) -> Identity:
        """Read a PEM private key file; `KeyFileError` names the file on any problem."""
        path = Path(path)
        data = _read_key_file(path, "private key")
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError as exc:  # a password for an unencrypted key, or none for an encrypted one
            raise KeyFileError(f"cannot open private key file {path}: {exc}") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path} is not a PEM private key Accord can read ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self.private_key.sign(data)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        public_path: str | os.PathLike[str] | None = None,
        password: bytes | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the private key (mode 0600) and its public key (default: `path` + ".pub")."""
        path = Path(path)
        public_path = Path(public_path) if public_path is not None else path.with_name(path.name + ".pub")
        encryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        _write_atomically(path, pem, mode=0o600, overwrite=overwrite)
        save_public_key(self.public_key, public_path, overwrite=overwrite)

    def __repr__(self) -> str:  # never show key material
        return f"Identity(fingerprint={self.fingerprint!r})"


def save_public_key(
    public_key: Ed25519PublicKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    """Write a public key as PEM SubjectPublicKeyInfo (mode 0644), atomically."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomically(Path(path), pem, mode=0o644, overwrite=overwrite)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read a PEM public key file; `KeyFileError` names the file on any problem."""
    path = Path(path)
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not a PEM public key Accord can read ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None


def _write_atomically(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    """Write a key file atomically with `mode` (`accord.durable`); never over an existing one unless `overwrite`."""
    if not overwrite and path.exists():
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key file")
    if not path.parent.is_dir():  # a mistyped directory is an error, not something to create
        raise KeyFileError(f"cannot write key file {path}: directory {path.parent} does not exist")
    try:
        write_durably(path, data, mode=mode)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None
