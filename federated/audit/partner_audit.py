"""The partner's half of the checkpoint exchange: check the coordinator, cosign, sign its own log.

For each task, before any data is touched, a partner node checks that:
- the coordinator's key is the one it pinned (`--coordinator-key`, or the first key it saw);
- the task, by its SHA-256 (its spec names every model by SHA-256) and its nonce, carries that
  key's signature (whether the nonce was seen before is `federated.client.replay`'s check);
- the coordinator's checkpoint is signed by that key and extends the newest checkpoint of the
  same log this node cosigned (never smaller, never another root, consistency proven).
Any failure is an `AuditRefusal` (clause "audit"). Otherwise the node cosigns the checkpoint,
keeps the cosigned copy, and stores the coordinator's countersignature of its own last
checkpoint if the task brings one. When the reply is ready, `seal` signs a checkpoint of the
partner's own trail and attaches it, with its cosignature and a consistency proof from the
size of this partner's log the coordinator said it holds.

This module must never cosign a checkpoint before all of the checks above have passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import RecordDict

from accord.durable import make_directory
from crypto import (
    CryptoError,
    Identity,
    NoteVerifier,
    fingerprint,
    load_public_key,
    open_note,
    save_public_key,
)
from federated.audit.errors import AuditRefusal
from federated.audit.keys import load_or_create_identity
from federated.audit.log import TrailLog, cosigner, same_key
from federated.audit.store import NoteSeries
from federated.audit.witness import (
    check_extends,
    cosign_and_keep,
    held_checkpoint,
    open_checkpoint,
)
from federated.errors import MessageError
from federated.messages.audit_exchange import (
    ReplyAudit,
    TaskAudit,
    attach,
    decode_hashes,
    encode_hashes,
    parse_vkey,
    partner_origin,
    read_task_audit,
    verify_task,
)

PINNED_COORDINATOR_KEY = "coordinator.pub"


class PartnerAudit:
    """One task's audit work on a partner node (each Flower message runs in a fresh process)."""

    def __init__(self, trail: Path, identity: Identity, *, partner_id: str, coordinator_key: str | None = None) -> None:
        self.identity = identity
        self.log = TrailLog(trail, identity, origin=partner_origin(partner_id))
        self.store = self.log.store
        self.pinned_fingerprint = coordinator_key
        self._cosignature = ""
        self._proof_from = 0

    @classmethod
    def for_node(cls, *, trail: Path, key_path: Path, partner_id: str, coordinator_key: str | None) -> PartnerAudit:
        """The audit of a node started by `python -m federated.client` (its key created if absent)."""
        identity, _ = load_or_create_identity(key_path)
        return cls(trail, identity, partner_id=partner_id, coordinator_key=coordinator_key)

    def check_task(self, content: RecordDict, task_sha256: str) -> dict[str, Any]:
        """Check and cosign the coordinator's checkpoint; return the fields `task_received` records."""
        try:
            record = read_task_audit(content)
            if record is None:
                raise AuditRefusal("the task carries no audit record: no signed checkpoint, no spec signature")
            self._proof_from = record.held.get(self.log.origin, 0)
            coordinator = parse_vkey(record.coordinator, what="the coordinator's key")
        except MessageError as exc:
            raise AuditRefusal(str(exc)) from None
        with self.store.locked():
            self._check_pin(coordinator)
            try:
                verify_task(coordinator, task_sha256, record.task_signature, record.nonce)
            except CryptoError:
                raise AuditRefusal(
                    f"task {task_sha256} is not signed by the coordinator key {fingerprint(coordinator.public_key)}: "
                    "its models or settings were changed after signing"
                ) from None
            checkpoint = open_checkpoint(record.checkpoint, coordinator, what="the coordinator's checkpoint")
            series = self.store.peer(checkpoint.origin)
            self._check_log_key(series, coordinator)
            proofs = {old: decode_hashes(hashes, what="the coordinator's proof") for old, hashes in record.proofs.items()}
            check_extends(held_checkpoint(series, coordinator), checkpoint, proofs, log=f"the coordinator's log {checkpoint.origin}")
            self._cosignature = cosign_and_keep(series, record.checkpoint, self.identity, name=self.log.origin)
            fields: dict[str, Any] = {
                "coordinator_key": fingerprint(coordinator.public_key),
                "nonce": record.nonce,
                "cosigned": {"origin": checkpoint.origin, "size": checkpoint.size, "root": checkpoint.root.hex()},
            }
            countersigned = self._keep_countersignature(record, coordinator)
            if countersigned is not None:
                fields["countersigned_size"] = countersigned
        return fields

    @staticmethod
    def _check_log_key(series: NoteSeries, coordinator: NoteVerifier) -> None:
        """A log's key never changes: a known origin signed with another key is refused, even if
        that key is now accepted (a new coordinator key starts new logs)."""
        known = series.read_key()
        if known is None:
            series.write_key(coordinator)
        elif not same_key(known, coordinator):
            raise AuditRefusal(
                f"the coordinator's log {coordinator.name} was signed with key {fingerprint(known.public_key)} when this "
                f"node cosigned it, this checkpoint with {fingerprint(coordinator.public_key)}: a log's key never changes"
            )

    def _check_pin(self, coordinator: NoteVerifier) -> None:
        """The key given with --coordinator-key, else the one pinned on first contact, else pin this one."""
        presented = fingerprint(coordinator.public_key)
        if self.pinned_fingerprint is not None:
            if presented != self.pinned_fingerprint:
                raise AuditRefusal(
                    f"the coordinator's key is {presented}, but this node only accepts {self.pinned_fingerprint} "
                    "(--coordinator-key)"
                )
            return
        path = self.store.root / PINNED_COORDINATOR_KEY
        if path.is_file():
            pinned = fingerprint(load_public_key(path))
            if pinned != presented:
                raise AuditRefusal(
                    f"the coordinator's key changed: this node pinned {pinned} on first contact, the task is "
                    f"signed with {presented} (to accept a new coordinator key, restart the node with "
                    "--coordinator-key)"
                )
        else:
            make_directory(self.store.root)
            save_public_key(coordinator.public_key, path)

    def _keep_countersignature(self, record: TaskAudit, coordinator: NoteVerifier) -> int | None:
        """Append the coordinator's cosignature to this node's own checkpoint it countersigned."""
        if not record.countersigned:
            return None
        try:
            opened = open_note(record.countersigned, verifiers=[self.log.verifier, cosigner(coordinator)])
        except CryptoError as exc:
            raise AuditRefusal(f"the countersigned checkpoint in the task does not verify: {exc}") from None
        if opened.signers != (self.log.origin, coordinator.name):
            raise AuditRefusal("the countersigned checkpoint in the task lacks this node's or the coordinator's signature")
        size = int(opened.body.split("\n", 2)[1])
        line = record.countersigned.rstrip("\n").rsplit("\n", 1)[1] + "\n"
        self.log.add_cosignature(size, line, coordinator)
        return size

    def attach_reply_audit(self, content: RecordDict) -> RecordDict:
        """Sign a checkpoint of this node's trail and attach the reply's audit record."""
        with self.store.locked():
            signed = self.log.sign()
        size = signed.checkpoint.size
        proof = self.log.consistency_proof(self._proof_from, size) if 0 < self._proof_from <= size else []
        record = ReplyAudit(
            partner=self.log.verifier.to_vkey(),
            cosignature=self._cosignature,
            checkpoint=signed.note.text,
            proof_from=self._proof_from,
            proof=encode_hashes(proof),
        )
        return attach(content, record)
