"""Signed checkpoints: C2SP signed-note, tlog-checkpoint bodies and tlog-cosignature/v1.

A coordinator signs each checkpoint (origin, tree size, root) of its audit trail
as a signed note (https://c2sp.org/signed-note, Ed25519, signature type 0x01);
each partner verifies it and adds a cosignature (https://c2sp.org/tlog-cosignature,
timestamped Ed25519, type 0x04), so a later rollback or fork of the trail is
exposed by the checkpoints partners keep. Notes written here are byte-identical
to those of Go's golang.org/x/mod/sumdb/note and transparency-dev/formats.

This module must never return a note's text without having verified a signature
from a key the caller trusts, never let a known key's failed signature pass
silently, and never import `federated`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from crypto.errors import (
    CryptoError,
    KeyFileError,
    NoteFormatError,
    SignatureError,
    UnknownSignerError,
)
from crypto.identity import public_key_bytes, public_key_from_bytes, verify
from crypto.merkle import HASH_SIZE

MAX_SIGNATURES = 4096  # spec: accept at least 16; a checkpoint collects one cosignature per partner (500+ simulated)
_EM_DASH_PREFIX = "\u2014 "
_SIZE_PATTERN = re.compile(r"0|[1-9][0-9]*")
_MAX_TIMESTAMP = 2**63 - 1


class SignatureType(IntEnum):
    """C2SP signed-note signature type bytes this module speaks."""

    ED25519 = 0x01
    COSIGNATURE_V1 = 0x04  # timestamped Ed25519 witness cosignature


def key_id(name: str, public_key: Ed25519PublicKey, signature_type: SignatureType) -> bytes:
    """The 4-byte key ID: SHA-256(name || 0x0A || type || 32-byte public key)[:4]."""
    _check_key_name(name)
    material = name.encode() + b"\n" + bytes([signature_type]) + public_key_bytes(public_key)
    return hashlib.sha256(material).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: which log, how many leaves, and their RFC 9162 root."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteFormatError(f"a checkpoint origin must be one non-empty line, got {self.origin!r}")
        _check_text(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size < 2**64:
            raise NoteFormatError(f"a checkpoint size must be an integer in [0, 2**64), got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise NoteFormatError(f"a checkpoint root must be {HASH_SIZE} bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            if not line or "\n" in line:
                raise NoteFormatError(f"a checkpoint extension must be one non-empty line, got {line!r}")
            _check_text(line, "checkpoint extension line")

    def to_body(self) -> str:
        """The note text: origin, size and base64 root lines, extension lines, each newline-terminated."""
        root = base64.b64encode(self.root).decode()
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions))

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text; `NoteFormatError` names the offending line."""
        _check_text(body, "checkpoint")
        if not body.endswith("\n"):
            raise NoteFormatError("a checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteFormatError(f"a checkpoint body has at least 3 lines, this one has {len(lines)}")
        origin, size_line, root_line, *extensions = lines
        if not _SIZE_PATTERN.fullmatch(size_line):
            raise NoteFormatError(f"checkpoint line 2 must be a decimal tree size, got {size_line!r}")
        try:
            root = base64.b64decode(root_line, validate=True)
        except binascii.Error:
            raise NoteFormatError(f"checkpoint line 3 is not base64: {root_line!r}") from None
        if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_line:
            raise NoteFormatError(f"checkpoint line 3 must be the base64 of a {HASH_SIZE}-byte root hash")
        return cls(origin=origin, size=int(size_line), root=root, extensions=tuple(extensions))


@dataclass(frozen=True)
class NoteVerifier:
    """A key a reader trusts, with the name and signature type it signs notes under."""

    name: str
    public_key: Ed25519PublicKey
    signature_type: SignatureType = SignatureType.ED25519

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        object.__setattr__(self, "signature_type", SignatureType(self.signature_type))

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key, self.signature_type)

    def to_vkey(self) -> str:
        """The verifier key string `<name>+<hex key ID>+<base64(type || public key)>`."""
        material = bytes([self.signature_type]) + public_key_bytes(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(material).decode()}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string, checking its key ID against its name and key."""
        parts = vkey.split("+", 2)  # the base64 part may itself contain '+'
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise NoteFormatError(f"a verifier key is <name>+<8 hex digits>+<base64>, got {vkey!r}")
        name, id_hex, encoded = parts
        try:
            material = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteFormatError(f"verifier key {name!r}: its key is not base64") from None
        if not material or material[0] not in set(SignatureType):
            raise NoteFormatError(f"verifier key {name!r}: unsupported signature type")
        try:
            verifier = cls(name, public_key_from_bytes(material[1:]), SignatureType(material[0]))
        except KeyFileError as exc:
            raise NoteFormatError(f"verifier key {name!r}: {exc}") from None
        if verifier.key_id.hex() != id_hex:
            raise NoteFormatError(f"verifier key {name!r}: key ID {id_hex} does not match its name and key")
        return verifier

    def check(self, body: bytes, signature: bytes) -> int | None:
        """Verify this key's signature bytes (after the key ID) over a note body.

        Returns the cosignature timestamp for type 0x04, None for type 0x01; raises `SignatureError`.
        """
        if self.signature_type is SignatureType.ED25519:
            message, timestamp = body, None
        else:
            if len(signature) != 8 + 64:
                raise SignatureError(f"cosignature by {self.name} is {len(signature)} bytes, expected 72")
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp > _MAX_TIMESTAMP:
                raise SignatureError(f"cosignature by {self.name} has an out-of-range timestamp")
            message, signature = _cosigned_message(body, timestamp), signature[8:]
        try:
            verify(self.public_key, message, signature)
        except SignatureError:
            raise SignatureError(
                f"the {self.signature_type.name.lower()} signature by {self.name} "
                f"(key ID {self.key_id.hex()}) does not verify"
            ) from None
        return timestamp


@dataclass(frozen=True)
class OpenedNote:
    """A note whose text has been checked against trusted keys."""

    body: str
    signers: tuple[str, ...]  # names of the trusted keys whose signatures verified, in note order
    cosignature_times: Mapping[str, int] = field(default_factory=dict)  # cosigner name -> unix seconds


def sign_note(body: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note for `body`: the text, a blank line, and one Ed25519 signature line."""
    _check_text(body, "note text")
    if not body.endswith("\n"):
        raise NoteFormatError("a note text must end with a newline")
    signer_id = key_id(name, private_key.public_key(), SignatureType.ED25519)
    signature = private_key.sign(body.encode())
    return f"{body}\n{_signature_line(name, signer_id + signature)}"


def cosign_note(
    text: str, *, name: str, private_key: Ed25519PrivateKey, timestamp: int | None = None
) -> str:
    """`text` (a signed checkpoint) with a tlog-cosignature/v1 line by `name` appended.

    This only checks that the body is a well-formed checkpoint; verifying the log's signature
    and its consistency with earlier checkpoints is the cosigner's job before calling this.
    """
    body, _ = _split_note(text)
    Checkpoint.parse_body(body)
    if timestamp is None:
        timestamp = int(time.time())
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise NoteFormatError(f"a cosignature timestamp must be an integer in [0, 2**63), got {timestamp!r}")
    cosigner_id = key_id(name, private_key.public_key(), SignatureType.COSIGNATURE_V1)
    signature = private_key.sign(_cosigned_message(body.encode(), timestamp))
    return text + _signature_line(name, cosigner_id + struct.pack(">Q", timestamp) + signature)


def open_note(text: str | bytes, *, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Verify a signed note against trusted keys and return its body and verified signers.

    Signatures from unknown keys are ignored (as the spec requires); a known key's bad
    signature raises `SignatureError`; no verified known signature raises `UnknownSignerError`.
    """
    body, signatures = _split_note(text)
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            raise CryptoError(
                f"two different trusted keys share name {verifier.name} and key ID {slot[1].hex()}"
            )
        known[slot] = verifier
    message = body.encode()
    signers: list[str] = []
    times: dict[str, int] = {}
    seen: set[tuple[str, bytes]] = set()
    for name, raw in signatures:
        slot = (name, raw[:4])
        signer = known.get(slot)
        if signer is None:
            continue
        if slot in seen:
            raise NoteFormatError(f"the note carries two signatures by {name} (key ID {raw[:4].hex()})")
        seen.add(slot)
        timestamp = signer.check(message, raw[4:])
        signers.append(name)
        if timestamp is not None:
            times[name] = timestamp
    if not signers:
        present = ", ".join(sorted({name for name, _ in signatures}))
        trusted = ", ".join(sorted({name for name, _ in known})) or "none"
        raise UnknownSignerError(
            f"the note is signed by none of the trusted keys ({trusted}); signed by: {present}"
        )
    return OpenedNote(body=body, signers=tuple(signers), cosignature_times=times)


def _split_note(text: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """Split a note into its text and its (key name, key ID || signature) pairs, checking syntax only."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteFormatError("a signed note must be valid UTF-8") from None
    _check_text(text, "note")
    if not text.endswith("\n"):
        raise NoteFormatError("a signed note must end with a newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise NoteFormatError("the note has no blank line between its text and its signatures")
    body, lines = text[: cut + 1], text[cut + 2 : -1].split("\n")
    if lines == [""]:
        raise NoteFormatError("the note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(
            f"the note has {len(lines)} signature lines, more than the {MAX_SIGNATURES} accepted"
        )
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_EM_DASH_PREFIX):
            raise NoteFormatError(
                f"signature line {number} does not start with an em dash and a space: {line!r}"
            )
        parts = line[len(_EM_DASH_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise NoteFormatError(f"signature line {number} is not '— <key name> <base64>': {line!r}")
        name, encoded = parts
        _check_key_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise NoteFormatError(f"signature line {number} ({name}): the signature is not base64") from None
        if len(raw) < 5:
            raise NoteFormatError(f"signature line {number} ({name}): too short for a key ID and a signature")
        signatures.append((name, raw))
    return body, signatures


def _signature_line(name: str, payload: bytes) -> str:
    return f"{_EM_DASH_PREFIX}{name} {base64.b64encode(payload).decode()}\n"


def _cosigned_message(body: bytes, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteFormatError(f"a key name must be non-empty, without spaces or '+', got {name!r}")
    _check_text(name, "key name")


def _check_text(text: str, what: str) -> None:
    """Signed notes are UTF-8 without control characters other than newline."""
    if not isinstance(text, str):
        raise NoteFormatError(f"the {what} must be text, got {type(text).__name__}")
    bad = next((ch for ch in text if ch < " " and ch != "\n"), None)
    if bad is not None:
        raise NoteFormatError(f"the {what} contains the control character {bad!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteFormatError(f"the {what} is not valid UTF-8 (it holds a lone surrogate)") from None
