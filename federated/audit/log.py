"""A trail as a Merkle log: its RFC 9162 tree, its signed checkpoints, its consistency proofs.

Leaf i of the tree is entry i's canonical bytes (the trail line without its newline). A
checkpoint (C2SP signed note: origin, size, root) is signed only over a trail that verifies
and that still extends the last checkpoint signed (same root at the old size), so a
rewritten trail can never be laundered by signing a fresh checkpoint over it. Cosignatures
that peers return are appended to the note they sign.

This module must never sign a checkpoint over a trail it has not verified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from crypto import (
    Checkpoint,
    CryptoError,
    Identity,
    MerkleTree,
    NoteVerifier,
    SignatureType,
    fingerprint,
    open_note,
    public_key_bytes,
    sign_note,
)
from federated.audit.errors import AuditError, AuditRefusal, KeyMismatchError
from federated.audit.store import CheckpointStore, StoredNote
from federated.audit.trail import VerifiedTrail, load_verified


def tree_of(trail: VerifiedTrail) -> MerkleTree:
    """The RFC 9162 tree whose leaves are the trail's entries."""
    sha256 = hashlib.sha256
    return MerkleTree.from_leaf_hashes([sha256(b"\x00" + line).digest() for line in trail.lines])


def cosigner(verifier: NoteVerifier) -> NoteVerifier:
    """The same name and key, as the verifier of its tlog-cosignature/v1 lines."""
    return NoteVerifier(verifier.name, verifier.public_key, SignatureType.COSIGNATURE_V1)


def same_key(a: NoteVerifier, b: NoteVerifier) -> bool:
    return public_key_bytes(a.public_key) == public_key_bytes(b.public_key)


def signature_names(note: str) -> list[str]:
    """The key names on a note's signature lines (syntax only; nothing is verified here)."""
    lines = note[note.rfind("\n\n") + 2 :].splitlines()
    return [line[2:].split(" ", 1)[0] for line in lines if line.startswith("\u2014 ")]


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: StoredNote


class TrailLog:
    """One side's own trail, with the checkpoints it signed in `<trail>.checkpoints/log/`."""

    def __init__(self, trail: Path, identity: Identity, *, origin: str) -> None:
        self.trail = Path(trail)
        self.identity = identity
        self.store = CheckpointStore.beside(self.trail)
        self.series = self.store.own
        existing = self.series.read_key()
        self.verifier = NoteVerifier(existing.name if existing else origin, identity.public_key)
        if existing is not None and not same_key(existing, self.verifier):
            raise KeyMismatchError(
                f"{self.trail}: its checkpoints are signed with key {fingerprint(existing.public_key)}, "
                f"but the key given is {identity.fingerprint}; continue with the original key or start a new trail"
            )
        self._tree: MerkleTree | None = None
        self._paths_by_size: dict[int, Path] | None = None  # where each signed size's note is, once read

    @property
    def origin(self) -> str:
        return self.verifier.name

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every checkpoint this side signed, in signing order, each verified under its key."""
        return [SignedCheckpoint(self._open(note), note) for note in self.series.notes()]

    def latest(self) -> SignedCheckpoint | None:
        note = self.series.latest()
        return None if note is None else SignedCheckpoint(self._open(note), note)

    def _open(self, note: StoredNote) -> Checkpoint:
        try:
            opened = open_note(note.text, verifiers=[self.verifier])
            return Checkpoint.parse_body(opened.body)
        except CryptoError as exc:
            raise AuditError(f"{note.path}: {exc}") from None

    def sign(self) -> SignedCheckpoint:
        """Verify the trail, check it extends the last checkpoint, and sign one for its current size."""
        tree = tree_of(load_verified(self.trail))
        latest = self.latest()
        if latest is not None:
            old = latest.checkpoint
            if tree.size < old.size or tree.root(old.size) != old.root:
                raise AuditError(
                    f"{self.trail}: the trail no longer matches checkpoint {latest.note.number} (size {old.size}) "
                    f"signed earlier: refusing to sign over a changed history"
                )
            if tree.size == old.size:
                self._tree = tree
                return latest
        checkpoint = Checkpoint(origin=self.origin, size=tree.size, root=tree.root())
        text = sign_note(checkpoint.to_body(), name=self.origin, private_key=self.identity.private_key)
        if self.series.read_key() is None:
            self.series.write_key(self.verifier)
        stored = self.series.append(text)
        self._tree = tree
        if self._paths_by_size is not None:
            self._paths_by_size[checkpoint.size] = stored.path
        return SignedCheckpoint(checkpoint, stored)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 proof between two sizes of the tree as of the last `sign()`."""
        if self._tree is None:
            raise AuditError("sign a checkpoint before asking for proofs")
        return self._tree.consistency_proof(old_size, new_size)

    def add_cosignature(self, size: int, line: str, by: NoteVerifier) -> bool:
        """Append a peer's cosignature line to the checkpoint of `size`; False if it was already there.

        Raises `AuditRefusal` if the line does not verify as `by`'s cosignature of that checkpoint.
        """
        if self._paths_by_size is None:  # verified once; later replies only read the one note they cosign
            self._paths_by_size = {c.checkpoint.size: c.note.path for c in self.checkpoints()}
        path = self._paths_by_size.get(size)
        target = None if path is None else StoredNote(int(path.stem), path, path.read_text(encoding="utf-8"))
        if target is None:
            raise AuditRefusal(f"{by.name} cosigned a checkpoint of size {size}, which this log never signed")
        line = line if line.endswith("\n") else line + "\n"
        body = target.text[: target.text.rfind("\n\n") + 2]
        try:
            opened = open_note(body + line, verifiers=[cosigner(by)])
        except CryptoError as exc:
            raise AuditRefusal(f"the cosignature by {by.name} of checkpoint size {size} does not verify: {exc}") from None
        if by.name not in opened.cosignature_times:
            raise AuditRefusal(f"the line sent by {by.name} is not its tlog-cosignature of checkpoint size {size}")
        if by.name in signature_names(target.text):
            return False
        self.series.rewrite(target, target.text + line)
        return True
