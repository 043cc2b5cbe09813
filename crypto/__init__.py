"""Accord's cryptography: Merkle trees, Ed25519 identities, signed checkpoints (and HE, later).

The public names below are the package's API; modules hold the internals. This
package must never import `federated`.
"""

from crypto.errors import (
    CryptoError,
    KeyFileError,
    MerkleTreeError,
    NoteFormatError,
    ProofError,
    SignatureError,
    UnknownSignerError,
)
from crypto.identity import (
    Identity,
    fingerprint,
    load_public_key,
    public_key_bytes,
    public_key_from_bytes,
    save_public_key,
    verify,
)
from crypto.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from crypto.note import (
    Checkpoint,
    NoteVerifier,
    OpenedNote,
    SignatureType,
    cosign_note,
    key_id,
    open_note,
    sign_note,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Checkpoint",
    "CryptoError",
    "Identity",
    "KeyFileError",
    "MerkleTree",
    "MerkleTreeError",
    "NoteFormatError",
    "NoteVerifier",
    "OpenedNote",
    "ProofError",
    "SignatureError",
    "SignatureType",
    "UnknownSignerError",
    "cosign_note",
    "fingerprint",
    "key_id",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "open_note",
    "public_key_bytes",
    "public_key_from_bytes",
    "root_from_leaf_hashes",
    "save_public_key",
    "sign_note",
    "verify",
    "verify_consistency",
    "verify_inclusion",
]
