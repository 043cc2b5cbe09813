"""The coordinator's half of the checkpoint exchange: sign, send, collect cosignatures, countersign.

When the cohort is ready, after every round and when the study ends, the coordinator signs
a checkpoint of its trail. Each task carries the latest one with consistency proofs from
every earlier checkpoint the receiving partner may hold as its newest: from the last one
that partner is known to have cosigned (one proof in steady state; more if a reply was
lost); to a node not heard from yet, from the oldest checkpoint any known partner last
cosigned (a partner never seen holds nothing of this log). Each reply's cosignature is
appended to the checkpoint note it signs; each partner's own checkpoint is checked against
the last one held for that partner, countersigned, kept, and handed back in the next task.
All of it is recorded in the coordinator's trail.

This module must never accept a reply whose cosignature or checkpoint fails.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from flwr.app import RecordDict

from crypto import Identity, NoteVerifier, fingerprint
from federated.audit.errors import AuditRefusal
from federated.audit.keys import load_or_create_identity
from federated.audit.log import SignedCheckpoint, TrailLog, same_key, signature_names
from federated.audit.trail import AuditTrail
from federated.audit.witness import (
    check_extends,
    cosign_and_keep,
    held_checkpoint,
    open_checkpoint,
)
from federated.errors import MessageError
from federated.messages.audit_exchange import (
    TaskAudit,
    attach,
    coordinator_origin,
    decode_hashes,
    encode_hashes,
    parse_vkey,
    partner_origin,
    read_reply_audit,
    sign_task,
)


class CoordinatorAudit:
    """Checkpoints of the coordinator's trail and the cosignatures exchanged with partners."""

    def __init__(self, trail: AuditTrail, identity: Identity, *, study_id: str) -> None:
        self.trail = trail
        self.identity = identity
        self.log = TrailLog(trail.path, identity, origin=coordinator_origin(study_id))
        self._checkpoints: list[SignedCheckpoint] = self.log.checkpoints()
        self._cosigned: dict[str, int] = {}  # partner origin -> newest size it is known to have cosigned
        for signed in self._checkpoints:
            for name in signature_names(signed.note.text)[1:]:  # line 1 is the coordinator's own signature
                self._cosigned[name] = max(self._cosigned.get(name, 0), signed.checkpoint.size)
        self._held: dict[str, str] = {}  # partner origin -> its latest checkpoint note, countersigned
        for origin in self.log.store.peer_origins():
            latest = self.log.store.peer(origin).latest()
            if latest is not None:
                self._held[origin] = latest.text
        self._node_origin: dict[int, str] = {}
        self._sent: dict[int, SignedCheckpoint] = {}
        self._current: SignedCheckpoint | None = None

    @classmethod
    def for_study(cls, trail: AuditTrail, key: Path, *, study_id: str) -> CoordinatorAudit:
        """The ServerApp's audit of `trail`, signed with the coordinator key (created if absent).

        The ServerApp passes it explicitly, in its `RoundContext`, to every round it runs."""
        identity, _ = load_or_create_identity(key)
        return cls(trail, identity, study_id=study_id)

    @property
    def origin(self) -> str:
        return self.log.origin

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint

    def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint over the trail as it is now (none if nothing was appended since)."""
        signed = self.log.sign()
        if not self._checkpoints or self._checkpoints[-1].note.number != signed.note.number:
            self._checkpoints.append(signed)
        self._current = signed
        return signed

    def attach_task(self, content: RecordDict, node_id: int, task_sha256: str) -> dict[str, Any]:
        """Add the audit record to a task for `node_id`; return the fields `task_sent` records."""
        current = self._current or self.checkpoint()
        size = current.checkpoint.size
        origin = self._node_origin.get(node_id)
        floor = self._cosigned.get(origin, 0) if origin is not None else min(self._cosigned.values(), default=size)
        sizes = {c.checkpoint.size for c in self._checkpoints if 0 < c.checkpoint.size < size and c.checkpoint.size >= floor}
        nonce = secrets.token_hex(16)  # fresh per message: partners refuse a nonce they have seen
        record = TaskAudit(
            coordinator=self.log.verifier.to_vkey(),
            task_signature=sign_task(self.identity, task_sha256, nonce),
            nonce=nonce,
            checkpoint=current.note.text,
            proofs={old: encode_hashes(self.log.consistency_proof(old, size)) for old in sorted(sizes)},
            held={peer: _size_of(text) for peer, text in self._held.items()},
            countersigned=self._held.get(origin, "") if origin is not None else "",
        )
        attach(content, record)
        self._sent[node_id] = current
        return {"checkpoint_size": size, "nonce": nonce}

    def receive(self, node_id: int, content: RecordDict, *, partner: str, accepted: bool, where: dict[str, Any]) -> str | None:
        """Check and record a reply's audit record; return why it fails, or None.

        `accepted` replies (status ok) must cosign the checkpoint their task carried; every
        reply must carry the partner's own checkpoint, extending the last one held.
        """
        try:
            record = read_reply_audit(content)
            if record is None:
                return f"the reply of {partner} carries no audit record (cosignature, checkpoint)"
            verifier = parse_vkey(record.partner, what=f"the key of {partner}")
        except MessageError as exc:
            return str(exc)
        origin = partner_origin(partner)
        if verifier.name != origin:
            return f"{partner} signs its log as {verifier.name!r}, expected {origin!r}"
        series = self.log.store.peer(origin)
        pinned = series.read_key()
        if pinned is None:
            series.write_key(verifier)
        elif not same_key(pinned, verifier):
            return (
                f"the key of {partner} changed: {fingerprint(pinned.public_key)} was pinned on first contact, "
                f"this reply is signed with {fingerprint(verifier.public_key)}"
            )
        try:
            self._take_cosignature(node_id, record.cosignature, verifier, partner=partner, accepted=accepted, where=where)
            checkpoint = open_checkpoint(record.checkpoint, verifier, what=f"the checkpoint of {partner}") if record.checkpoint else None
            if checkpoint is None:
                return f"{partner} sent no checkpoint of its own trail"
            proofs = {record.proof_from: decode_hashes(record.proof, what=f"the proof of {partner}")}
            check_extends(held_checkpoint(series, verifier), checkpoint, proofs, log=f"the trail of {partner}")
        except (AuditRefusal, MessageError) as exc:
            return str(exc)
        line = cosign_and_keep(series, record.checkpoint, self.identity, name=self.origin)
        self._held[origin] = record.checkpoint + line
        self._node_origin[node_id] = origin
        self.trail.append(
            "partner_checkpoint_countersigned", node=str(node_id), partner=partner, origin=origin,
            size=checkpoint.size, root=checkpoint.root.hex(), **where,
        )
        return None

    def _take_cosignature(
        self, node_id: int, line: str, verifier: NoteVerifier, *, partner: str, accepted: bool, where: dict[str, Any]
    ) -> None:
        sent = self._sent.get(node_id)
        if not line:
            if accepted and sent is not None:
                raise AuditRefusal(
                    f"{partner} returned results without cosigning the coordinator's checkpoint of size {sent.checkpoint.size}"
                )
            return
        if sent is None:
            raise AuditRefusal(f"{partner} cosigned a checkpoint although its node {node_id} was sent none")
        self.log.add_cosignature(sent.checkpoint.size, line, verifier)
        self._cosigned[verifier.name] = max(self._cosigned.get(verifier.name, 0), sent.checkpoint.size)
        self.trail.append(
            "cosignature_received", node=str(node_id), partner=partner, origin=verifier.name,
            size=sent.checkpoint.size, key=fingerprint(verifier.public_key), **where,
        )


def _size_of(note: str) -> int:
    return int(note.split("\n", 2)[1])
