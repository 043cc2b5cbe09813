"""What the audit adds to each task and reply: one extra record, no extra message.

Flower starts a process per message, so checkpoints and cosignatures ride on the task and
reply a round sends anyway, in a ConfigRecord named `audit` holding one JSON document:

- task (coordinator -> partner): the coordinator's verifier key, its Ed25519 signature over
  the task's SHA-256 (the spec it hashes names every model by SHA-256, its study and round) and
  a fresh random nonce (so a partner can refuse a replayed task), its latest signed checkpoint, RFC 9162
  consistency proofs to it from every earlier checkpoint the partner may hold, the size of
  the newest checkpoint of each partner log the coordinator holds, and, for a node it knows,
  that partner's latest checkpoint countersigned by the coordinator;
- reply (partner -> coordinator): the partner's verifier key, its cosignature line for the
  coordinator's checkpoint (absent when it refused on audit grounds), its own signed
  checkpoint and a consistency proof to it from the size the coordinator said it holds.

Records are pydantic models with unknown fields refused; hashes travel as base64.
This module must never decide whether to trust anything: it only carries and parses.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from accord.config_files import describe_validation_error
from accord.models import Strict
from crypto import CryptoError, Identity, NoteVerifier, verify
from federated.errors import MessageError

if TYPE_CHECKING:  # Flower is imported where a record is built: an auditor's verify needs only the origins
    from flwr.app import RecordDict

AUDIT_RECORD = "audit"
TASK_SIGNATURE_CONTEXT = b"accord/task/v1\n"  # domain separation: the same key signs notes
MAX_AUDIT_BYTES = 4 * 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def coordinator_origin(study_id: str) -> str:
    """The origin (and key name) of a coordinator trail first used for `study_id`."""
    return f"accord.coordinator/{_UNSAFE.sub('_', study_id)}"


def partner_origin(partner_id: str) -> str:
    """The origin (and key name) of a partner node's trail."""
    return f"accord.partner/{_UNSAFE.sub('_', partner_id)}"


class TaskAudit(Strict):
    coordinator: str = Field(description="C2SP verifier key of the coordinator's log")
    task_signature: str = Field(description="base64 Ed25519 signature over signed_task_bytes(task SHA-256, nonce)")
    nonce: str = Field(default="", pattern=r"^([0-9a-f]{32})?$", description="128 random bits (hex), fresh per task message")
    checkpoint: str = Field(description="the coordinator's latest signed checkpoint (signed note)")
    proofs: dict[int, list[str]] = Field(default_factory=dict, description="old size -> base64 hashes")
    held: dict[str, int] = Field(default_factory=dict, description="partner origin -> size held")
    countersigned: str = Field(default="", description="this partner's latest checkpoint, cosigned")


class ReplyAudit(Strict):
    partner: str = Field(description="C2SP verifier key of the partner's log")
    cosignature: str = Field(default="", description="cosignature line for the task's checkpoint")
    checkpoint: str = Field(default="", description="the partner's own signed checkpoint")
    proof_from: int = Field(default=0, ge=0)
    proof: list[str] = Field(default_factory=list)


def encode_hashes(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(hash_).decode() for hash_ in hashes]


def decode_hashes(encoded: list[str], *, what: str) -> list[bytes]:
    try:
        return [base64.b64decode(item, validate=True) for item in encoded]
    except binascii.Error:
        raise MessageError(f"{what}: a proof hash is not base64") from None


def attach(content: RecordDict, record: Strict) -> RecordDict:
    """Add the audit record to a task or reply (in place) and return it."""
    from flwr.app import ConfigRecord

    content[AUDIT_RECORD] = ConfigRecord({"json": record.model_dump_json()})
    return content


def _read(content: RecordDict, model: type[Strict], what: str) -> Strict | None:
    record = content.config_records.get(AUDIT_RECORD)
    if record is None:
        return None
    text = record.get("json")
    if not isinstance(text, str) or len(text) > MAX_AUDIT_BYTES:
        raise MessageError(f"{what} audit record must be a JSON string of at most {MAX_AUDIT_BYTES} bytes")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise MessageError(describe_validation_error(f"{what} audit record", exc)) from None


def read_task_audit(content: RecordDict) -> TaskAudit | None:
    return _read(content, TaskAudit, "task")  # type: ignore[return-value]


def read_reply_audit(content: RecordDict) -> ReplyAudit | None:
    return _read(content, ReplyAudit, "reply")  # type: ignore[return-value]


def parse_vkey(vkey: str, *, what: str) -> NoteVerifier:
    try:
        return NoteVerifier.from_vkey(vkey)
    except CryptoError as exc:
        raise MessageError(f"{what}: {exc}") from None


def signed_task_bytes(task_sha256: str, nonce: str) -> bytes:
    """What a task signature covers: the task's hash (its spec names study, round and every model
    by SHA-256) and, when present, the nonce; hash and nonce are fixed-length hex, so unambiguous."""
    return TASK_SIGNATURE_CONTEXT + task_sha256.encode() + (b"\n" + nonce.encode() if nonce else b"")


def sign_task(identity: Identity, task_sha256: str, nonce: str = "") -> str:
    """Sign a task by its hash and nonce; the spec it hashes names every model (and weights) by SHA-256."""
    return base64.b64encode(identity.sign(signed_task_bytes(task_sha256, nonce))).decode()


def verify_task(verifier: NoteVerifier, task_sha256: str, signature: str, nonce: str = "") -> None:
    """Raises `SignatureError` (a `CryptoError`) unless the coordinator signed exactly this task and nonce."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raw = b""
    verify(verifier.public_key, signed_task_bytes(task_sha256, nonce), raw)
