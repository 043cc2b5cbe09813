"""Witnessing a peer's log: check its new checkpoint against the last one cosigned, then cosign.

A witness keeps every checkpoint of a peer's log that it cosigned (`peers/<origin>/` in its
store). A new checkpoint is cosigned only if it is signed by the peer's pinned key, names
the same origin, and extends the latest checkpoint held: not smaller (the log went
backwards), not a different root at the same size, and proven consistent (RFC 9162) from
the held size to the new one. Both sides of a study run this: partners witness the
coordinator's trail, the coordinator witnesses each partner's.

This module must never cosign a checkpoint it could not check against what it already holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crypto import (
    Checkpoint,
    CryptoError,
    Identity,
    NoteVerifier,
    cosign_note,
    open_note,
    verify_consistency,
)
from federated.audit.errors import AuditRefusal
from federated.audit.store import NoteSeries


def open_checkpoint(text: str, verifier: NoteVerifier, *, what: str) -> Checkpoint:
    """The checkpoint in a signed note, checked against `verifier`; `AuditRefusal` says why not."""
    try:
        opened = open_note(text, verifiers=[verifier])
        checkpoint = Checkpoint.parse_body(opened.body)
    except CryptoError as exc:
        raise AuditRefusal(f"{what}: {exc}") from None
    if checkpoint.origin != verifier.name:
        raise AuditRefusal(f"{what}: it names origin {checkpoint.origin!r}, but is signed as {verifier.name!r}")
    return checkpoint


def held_checkpoint(series: NoteSeries, verifier: NoteVerifier) -> Checkpoint | None:
    """The latest checkpoint of a peer's log that this side cosigned, if any."""
    latest = series.latest()
    if latest is None:
        return None
    return open_checkpoint(latest.text, verifier, what=f"the checkpoint kept in {latest.path}")


def check_extends(
    held: Checkpoint | None, new: Checkpoint, proofs: Mapping[int, Sequence[bytes]], *, log: str
) -> None:
    """Raise `AuditRefusal` unless `new` extends `held` (proofs are keyed by their old size)."""
    if held is None:
        return
    if new.size < held.size:
        raise AuditRefusal(
            f"{log} went backwards: this side cosigned its checkpoint of size {held.size}, "
            f"now it presents size {new.size}"
        )
    if new.size == held.size:
        if new.root != held.root:
            raise AuditRefusal(f"{log} forked: two different roots for size {held.size}")
        return
    proof = proofs.get(held.size)
    if proof is None:
        offered = ", ".join(str(size) for size in sorted(proofs)) or "none"
        raise AuditRefusal(
            f"{log} offers no consistency proof from size {held.size}, the last checkpoint this side "
            f"cosigned (proofs offered from: {offered})"
        )
    try:
        verify_consistency(old_size=held.size, new_size=new.size, proof=proof, old_root=held.root, new_root=new.root)
    except CryptoError as exc:
        raise AuditRefusal(f"{log} forked or was rewritten: {exc}") from None


def cosign_and_keep(series: NoteSeries, text: str, identity: Identity, *, name: str) -> str:
    """Cosign a checked note, keep the cosigned copy, and return the cosignature line alone."""
    cosigned = cosign_note(text, name=name, private_key=identity.private_key)
    latest = series.latest()
    if latest is None or _body(latest.text) != _body(text):
        series.append(cosigned)
    return cosigned[len(text) :]


def _body(text: str) -> str:
    return text[: text.rfind("\n\n")]
